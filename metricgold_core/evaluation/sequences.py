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

from .metrics import masked_abs_rel
from ..camera.geometry import backproject

SAMPLE_PER_VOXEL = 0.375   # map scoring samples surfaces every 3/8 voxel (1.5 cm indoors)


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
            err, n = masked_abs_rel(warped, depths[b], valid[b])
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


def score_sequence(preds, gts, valid, poses, K: np.ndarray, kind: str = 'indoor',
                   maps: bool = True, picture: bool = True, label: str = 'predicted') -> dict:
    """Everything a mapping stack would notice about one posed sequence of predicted depth.

    preds, gts (N, H, W) metres (NaN = none), valid (N, H, W) bool: the ground truth that
    counts (inside the evaluation caps). Returns `row` (frames; `tae` of the prediction and
    `tae_gt` of the ground truth, the protocol's floor; scale_stability keys; with `maps`, the
    mapping.map_metrics of the prediction's fused map prefixed `map_` and of the ground truth's
    prefixed `gt_map_`), and with `maps` also `map_points` / `gt_map_points` (M, 3) and, with
    `picture`, `picture` (uint8 RGB, mapping.map_picture of both maps).

    The prediction is fused wherever it has depth (as a mapping stack fuses what the node
    publishes: sky given a depth builds walls), the ground truth where `valid`; both up to the
    kind's MAP_SETTINGS depth. The true surface is the ground truth back-projected, not fused.
    """
    preds, gts, valid = np.asarray(preds), np.asarray(gts), np.asarray(valid, bool)
    poses = np.asarray(poses, np.float64)
    row = {'frames': int(len(preds)),
           'tae': temporal_alignment_error(preds, poses, K, valid)['tae'],
           'tae_gt': temporal_alignment_error(gts, poses, K, valid)['tae']}
    row.update(scale_stability(preds, gts, valid))
    out = {'row': row}
    if not maps:
        return out
    from . import mapping
    settings = mapping.MAP_SETTINGS[kind]
    voxel, depth_max = settings['voxel_m'], settings['depth_max_m']
    spacing = voxel * SAMPLE_PER_VOXEL
    true = mapping.surface_points(gts, poses, K, depth_max, masks=valid, spacing_m=spacing)
    fused = {}
    for prefix, depth, masks in (('map_', preds, None), ('gt_map_', gts, valid)):
        pts = mapping.fuse_tsdf(depth, poses, K, voxel, depth_max, settings['trunc_voxels'],
                                masks=masks, sample_m=spacing)
        fused[prefix] = pts
        for key, value in mapping.map_metrics(pts, true, spacing).items():
            row[prefix + key] = value
    out['map_points'], out['gt_map_points'] = fused['map_'], fused['gt_map_']
    if picture:
        out['picture'] = mapping.map_picture(
            {label: fused['map_'], 'ground truth': fused['gt_map_']}, poses,
            cut_above_m=mapping.PICTURE_CUT_M[kind])
    return out
