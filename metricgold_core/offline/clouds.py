"""Point clouds from depth: organized x y z + rgb float32 (ROS layout) and binary PLY files.

The rgb field is a float32 whose bits are 0x00RRGGBB, the PCL / depth_image_proc convention
that RViz' RGB8 colour transformer reads; invalid depth stays NaN so clouds stay organized.
"""
from __future__ import annotations

import numpy as np

from .. import ply
from ..ply import pack_rgb_float, unpack_rgb_float


def organized_points(depth_m: np.ndarray, K: np.ndarray, rgb: np.ndarray | None = None
                     ) -> np.ndarray:
    """Z-depth (H, W) metres through pinhole K -> float32 (H, W, 4): x, y, z, rgb bits.

    NaN depth gives NaN x y z. `rgb` is uint8 (H, W, 3) of the same size, or None (rgb 0).
    """
    height, width = depth_m.shape
    if rgb is not None and rgb.shape[:2] != (height, width):
        raise ValueError(f'`rgb` must match the depth size {height}x{width}, got '
                         f'{rgb.shape[0]}x{rgb.shape[1]}.')
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # Rays per column and per row broadcast: two small vectors instead of two full images.
    rx = ((np.arange(width, dtype=np.float64) - cx) / fx).astype(np.float32)[None, :]
    ry = ((np.arange(height, dtype=np.float64) - cy) / fy).astype(np.float32)[:, None]
    points = np.empty((height, width, 4), np.float32)
    z = depth_m.astype(np.float32, copy=False)
    np.multiply(z, rx, out=points[..., 0])
    np.multiply(z, ry, out=points[..., 1])
    points[..., 2] = z
    points[..., 3] = 0.0 if rgb is None else pack_rgb_float(rgb)
    return points


def write_ply(path, points: np.ndarray) -> int:
    """Finite points of an (H, W, 4) organized cloud -> binary little-endian PLY, atomically.

    Returns the number of vertices written (x y z float32, red green blue uint8).
    """
    flat = points.reshape(-1, 4)
    return ply.write_ply(path, flat[:, :3], unpack_rgb_float(flat[:, 3]))
