"""Sparse metric depth: which pixels hold a measurement, sparse images moved to another grid,
simulated sparse sensors. (Points projected into a sparse image: lidar.project_cloud.)"""
from __future__ import annotations

import numpy as np

from ..camera.geometry import nearest_indices

MAX_SPARSE_DEPTH_M = 1000.0  # sparse values above this (or <= 0, NaN) are not measurements


def valid_sparse(sparse: np.ndarray) -> np.ndarray:
    """Mask of the pixels of a sparse metric depth image that hold a measurement."""
    with np.errstate(invalid='ignore'):
        return np.isfinite(sparse) & (sparse > 0) & (sparse < MAX_SPARSE_DEPTH_M)


def register_to(sparse: np.ndarray, shape_hw: tuple) -> np.ndarray:
    """A sparse image on another pixel grid, scaled to (h, w) by nearest neighbour.

    Each target pixel takes the source pixel whose area covers its centre; when the source is
    larger, measurements that no target centre hits are dropped (sparse data stays sparse and
    unblended)."""
    h, w = shape_hw
    sh, sw = sparse.shape[:2]
    if (sh, sw) == (h, w):
        return sparse
    if sh > h or sw > w:   # downscale: keep every measurement, each at its nearest target pixel
        out = np.full((h, w), np.nan, np.float32)
        v, u = np.nonzero(valid_sparse(sparse))
        rows = np.minimum(((v + 0.5) * h / sh).astype(np.intp), h - 1)
        cols = np.minimum(((u + 0.5) * w / sw).astype(np.intp), w - 1)
        out[rows, cols] = sparse[v, u]
        return out
    rows, cols = nearest_indices((sh, sw), (h, w))
    return sparse[rows, cols]


def sparse_sample(depth: np.ndarray, mask, count: int, seed: int) -> np.ndarray:
    """A simulated sparse sensor: float32 (H, W) with `count` valid ground-truth pixels (inside
    `mask` when given) drawn with `seed`, NaN elsewhere (the depth-completion protocol)."""
    with np.errstate(invalid='ignore'):
        valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= mask
    index = np.flatnonzero(valid)
    rng = np.random.default_rng(seed)
    pick = rng.choice(index, min(count, index.size), replace=False) if index.size else index
    out = np.full(depth.shape, np.nan, np.float32)
    out.flat[pick] = depth.flat[pick]
    return out
