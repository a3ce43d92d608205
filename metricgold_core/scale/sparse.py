"""Sparse metric depth: which pixels hold a measurement, points projected into an image,
sparse images moved to another grid, simulated sparse sensors."""
from __future__ import annotations

import numpy as np

from ..geometry import nearest_indices

MAX_SPARSE_DEPTH_M = 1000.0  # sparse values above this (or <= 0, NaN) are not measurements


def valid_sparse(sparse: np.ndarray) -> np.ndarray:
    """Mask of the pixels of a sparse metric depth image that hold a measurement."""
    with np.errstate(invalid='ignore'):
        return np.isfinite(sparse) & (sparse > 0) & (sparse < MAX_SPARSE_DEPTH_M)


def project_points(points_cam: np.ndarray, K: np.ndarray, shape_hw: tuple) -> np.ndarray:
    """A sparse depth image (float32 metres, NaN = none) from 3-D points in the camera's optical
    frame (x right, y down, z forward; e.g. a lidar scan transformed with TF), projected with
    the pinhole K (P's 3x3 for a rectified image). Where several points land in one pixel the
    nearest wins; points behind the camera or outside the image are dropped."""
    h, w = shape_hw
    pts = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    with np.errstate(invalid='ignore'):
        pts = pts[np.isfinite(pts).all(axis=1) & (pts[:, 2] > 1e-6)]
    u = np.floor(K[0, 0] * pts[:, 0] / pts[:, 2] + K[0, 1] * pts[:, 1] / pts[:, 2] + K[0, 2]
                 + 0.5).astype(np.int64)
    v = np.floor(K[1, 1] * pts[:, 1] / pts[:, 2] + K[1, 2] + 0.5).astype(np.int64)
    keep = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z = u[keep], v[keep], pts[keep, 2].astype(np.float32)
    out = np.full((h, w), np.inf, np.float32)
    np.minimum.at(out, (v, u), z)
    out[~np.isfinite(out)] = np.nan
    return out


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
