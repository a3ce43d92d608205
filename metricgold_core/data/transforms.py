"""Crops of training and evaluation samples (dicts of rgb, depth, valid, K) that keep K exact.

Arrays of the input are not modified. Training resizes, flips and turns labels canonical in
training/data.py; its photometric changes are data/photometric.py.
"""
from __future__ import annotations

import numpy as np

from ..camera.geometry import crop_intrinsics

GEOMETRIC_KEYS = ('rgb', 'depth', 'valid')


def crop(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    """The window [top:top+height, left:left+width] of every image array, K moved with it."""
    h, w = sample['depth'].shape
    if not (0 <= top and 0 <= left and top + height <= h and left + width <= w):
        raise ValueError(f'crop {height}x{width} at ({top}, {left}) does not fit a {h}x{w} image.')
    out = dict(sample)
    for key in GEOMETRIC_KEYS:
        out[key] = np.ascontiguousarray(sample[key][top:top + height, left:left + width])
    if sample.get('K') is not None:
        out['K'] = crop_intrinsics(sample['K'], top, left)
    return out


KITTI_BENCHMARK_HW = (352, 1216)


def kitti_benchmark_crop(sample: dict) -> dict:
    """The KITTI benchmark crop: the bottom 352 rows and centre 1216 columns (as Marigold trains
    and evaluates on KITTI-like data); a smaller image keeps its size on that side."""
    h, w = sample['depth'].shape
    height, width = min(KITTI_BENCHMARK_HW[0], h), min(KITTI_BENCHMARK_HW[1], w)
    return crop(sample, h - height, (w - width) // 2, height, width)
