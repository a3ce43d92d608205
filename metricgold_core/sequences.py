"""Depth over time: temporal alignment error (TAE) and scale stability along a posed sequence.

Poses are camera -> world 4x4 (T_wc, metres), camera frame optical (x right, y down,
z forward), as metricgold_core.data.trajectory and the real sequence readers give them.

TAE follows Video Depth Anything: frame t's depth is warped into frame t+1 with the true relative
pose and K, its AbsRel against frame t+1's depth is taken on the pixels both cover, the same is
done from t+1 back to t, and the mean over all pairs and both directions is the score. Here it
is scored on the depth as given (metric, no per-sequence alignment: a mapping stack fuses the
metres the node publishes), a forward warp keeps the nearest point per pixel (z-buffer), and
only pixels with ground truth in both frames count (sky has no depth to agree on). It is a
fraction like AbsRel (Video Depth Anything prints it x 100).
"""
from __future__ import annotations

import numpy as np

from .geometry import backproject


def relative_pose(pose_from: np.ndarray, pose_to: np.ndarray) -> np.ndarray:
    """T (4, 4) taking points of camera `pose_from` into camera `pose_to` (both T_wc)."""
    return np.linalg.inv(np.asarray(pose_to, np.float64)) @ np.asarray(pose_from, np.float64)


def warp_depth(depth: np.ndarray, K: np.ndarray, pose_from: np.ndarray, pose_to: np.ndarray,
               mask: np.ndarray | None = None) -> np.ndarray:
    """Depth (H, W) of camera `pose_from` seen from camera `pose_to` (same K and size).

    Every valid pixel (finite, > 0, and `mask`) is back-projected, moved into the other camera
    and splatted to its nearest pixel; where several land, the nearest wins. NaN where none did.
    """
    depth = np.asarray(depth, np.float64)
    h, w = depth.shape
    with np.errstate(invalid='ignore'):
        keep = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        keep &= mask
    T = relative_pose(pose_from, pose_to)
    pts = backproject(depth, K)[keep] @ T[:3, :3].T + T[:3, 3]
    out = np.full((h, w), np.nan)
    z = pts[:, 2]
    front = z > 1e-6
    pts, z = pts[front], z[front]
    u = np.round(K[0, 0] * pts[:, 0] / z + K[0, 2]).astype(np.int64)
    v = np.round(K[1, 1] * pts[:, 1] / z + K[1, 2]).astype(np.int64)
    inside = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z = u[inside], v[inside], z[inside]
    order = np.argsort(-z, kind='stable')  # far first: the nearest point is written last
    out[v[order], u[order]] = z[order]
    return out


def _abs_rel(warped: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple:
    with np.errstate(invalid='ignore'):
        keep = mask & np.isfinite(warped) & np.isfinite(target) & (target > 0)
    if not keep.any():
        return float('nan'), 0
    err = np.abs(warped[keep] - target[keep]) / target[keep]
    return float(err.mean()), int(keep.sum())


def temporal_alignment_error(depths, poses, K: np.ndarray, valid=None) -> dict:
    """TAE of a depth sequence (N, H, W) along its true poses (N, 4, 4) (see the module doc).

    `valid` (N, H, W) bool: where ground truth exists (None: everywhere). Returns `tae` (mean of
    the 2 (N - 1) directional AbsRels that had pixels; NaN when none had) and `pairs` (list of
    per-pair means).
    """
    depths = np.asarray(depths)
    if len(depths) != len(poses):
        raise ValueError(f'{len(depths)} depth maps but {len(poses)} poses.')
    if valid is None:
        valid = np.ones(depths.shape, bool)
    scores = []
    for t in range(len(depths) - 1):
        pair = []
        for a, b in ((t, t + 1), (t + 1, t)):
            warped = warp_depth(depths[a], K, poses[a], poses[b], mask=valid[a])
            err, n = _abs_rel(warped, depths[b], valid[b])
            if n:
                pair.append(err)
        scores.append(float(np.mean(pair)) if pair else float('nan'))
    finite = [s for s in scores if np.isfinite(s)]
    return {'tae': float(np.mean(finite)) if finite else float('nan'), 'pairs': scores}


def frame_scales(preds, gts, valid=None) -> np.ndarray:
    """median(gt / pred) per frame (N,) over pixels with finite, positive gt and pred; NaN for
    a frame with none. 1.0 is a metrically right frame; its spread over time is what a mapping
    stack sees as scale drift."""
    out = []
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        with np.errstate(invalid='ignore', divide='ignore'):
            keep = np.isfinite(pred) & np.isfinite(gt) & (pred > 0) & (gt > 0)
            if valid is not None:
                keep &= valid[i]
            out.append(float(np.median(gt[keep] / pred[keep])) if keep.any() else float('nan'))
    return np.asarray(out)


def scale_stability(preds, gts, valid=None) -> dict:
    """Scale coefficient of variation over a sequence: std / mean of frame_scales. Also
    `scale_mean`, `scale_min`, `scale_max` and `scale_max_step` (largest ratio between
    consecutive frames' scales, >= 1)."""
    s = frame_scales(preds, gts, valid)
    s = s[np.isfinite(s)]
    if not len(s):
        nan = float('nan')
        return {'scale_cv': nan, 'scale_mean': nan, 'scale_min': nan, 'scale_max': nan,
                'scale_max_step': nan}
    steps = np.maximum(s[1:] / s[:-1], s[:-1] / s[1:]) if len(s) > 1 else np.ones(1)
    return {'scale_cv': float(s.std() / s.mean()), 'scale_mean': float(s.mean()),
            'scale_min': float(s.min()), 'scale_max': float(s.max()),
            'scale_max_step': float(steps.max())}
