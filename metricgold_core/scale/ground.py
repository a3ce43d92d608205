"""Scale from a known camera height over a floor / ground plane (RANSAC plane fit)."""
from __future__ import annotations

import math

import numpy as np

from .fit import _checked, MIN_POINTS, ScaleFit
from ..camera.geometry import backproject, crop_intrinsics

GROUND_MAX_TILT_DEG = 15.0   # the floor's normal within this of the camera's down direction


def fit_ground_plane(depth: np.ndarray, K: np.ndarray, camera_height_m: float,
                     max_tilt_deg: float = GROUND_MAX_TILT_DEG, lower_fraction: float = 0.5,
                     iterations: int = 200, max_points: int = 4000,
                     seed: int = 0) -> ScaleFit:
    """Scale from a known camera height: RANSAC plane on the back-projected lower image part.

    The plane's normal must lie within `max_tilt_deg` of the camera's down direction (+y in
    the optical frame); scale = camera_height_m / the camera's distance to the fitted plane.
    """
    if not (camera_height_m and camera_height_m > 0 and math.isfinite(camera_height_m)):
        return ScaleFit(reason=f'camera_height_m must be > 0, got {camera_height_m}')
    h = depth.shape[0]
    top = int(h * (1.0 - lower_fraction))
    d = depth[top:].astype(np.float64)
    with np.errstate(invalid='ignore'):
        mask = np.isfinite(d) & (d > 0)
    if mask.sum() < 3 * MIN_POINTS:
        return ScaleFit(points=int(mask.sum()), reason='too few valid pixels in the lower image')
    pts = backproject(d, crop_intrinsics(K, top, 0))[mask]
    rng = np.random.default_rng(seed)
    if len(pts) > max_points:
        pts = pts[rng.choice(len(pts), max_points, replace=False)]
    cos_tilt = math.cos(math.radians(max_tilt_deg))
    thresh = 0.02 * float(np.median(pts[:, 2]))
    best, best_count = None, 0
    for _ in range(iterations):
        a, b, c = pts[rng.choice(len(pts), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n /= norm
        if n[1] < 0:
            n = -n
        if n[1] < cos_tilt:
            continue
        dist = n @ a   # plane n.x = dist; dist > 0: the floor is below the camera
        if dist <= 0:
            continue
        count = int((np.abs(pts @ n - dist) < thresh).sum())
        if count > best_count:
            best, best_count = (n, dist), count
    if best is None or best_count < 3 * MIN_POINTS:
        return ScaleFit(points=best_count, reason='no floor plane within the tilt bound')
    n, dist = best
    inl = pts[np.abs(pts @ n - dist) < thresh]
    centre = inl.mean(axis=0)
    _, _, vt = np.linalg.svd(inl - centre, full_matrices=False)
    n2 = vt[-1] if vt[-1][1] >= 0 else -vt[-1]
    if n2[1] >= cos_tilt and n2 @ centre > 0:
        n, dist = n2, float(n2 @ centre)
    rel = np.abs(inl @ n - dist) / np.maximum(inl[:, 2], 1e-9)
    fit = ScaleFit(scale=camera_height_m / dist, points=int(len(inl)),
                   residual=float(np.median(rel)) * 1.4826, ok=True)
    return _checked(fit)
