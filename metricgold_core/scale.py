"""Metric scale anchors (README "Metric scale"), ROS-free: the node and the CLIs call these.

    fit = fit_sparse(pred, sparse_m, relative=False)    # robust scale (scale + shift if relative)
    fit = fit_ground_plane(depth_m, K, camera_height_m)  # RANSAC floor plane -> scale
    filt = ScaleFilter(smoothing=0.8); scale = filt.update(fit)

Metric models are fitted with a scale only, in log space (log ref - log pred), so the fit is
the same whether the error is near or far. Relative (affine-invariant) models are fitted with a
scale and shift in their own output space (ref = s * pred + t), the Marigold protocol. Both use
iteratively reweighted least squares with Tukey weights on residuals normalised by their MAD;
a fit with too few points, a non-finite or non-positive result, or a large residual is `ok =
False`, and the caller keeps its last good scale.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from .geometry import backproject, crop_intrinsics, nearest_indices

SOURCES = ('none', 'sparse_depth', 'ground_plane')
MIN_POINTS = 8              # fewer valid sparse pixels than this: no fit
MAX_LOG_RESIDUAL = 1.0      # robust spread of log(ref / (s pred)) above this: a bad fit
MAX_SPARSE_DEPTH_M = 1000.0  # sparse values above this (or <= 0, NaN) are not measurements
TUKEY_C = 4.685
IRLS_ITERATIONS = 10


@dataclass
class ScaleFit:
    """One frame's anchor: depth_m = scale * pred + shift."""

    scale: float = 1.0
    shift: float = 0.0
    points: int = 0            # measurements used (sparse pixels; ground-plane inliers)
    residual: float = math.nan  # robust relative residual (MAD of log ratio, or of rel. error)
    ok: bool = False
    reason: str = ''


def _mad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _tukey(r: np.ndarray, sigma: float) -> np.ndarray:
    u = r / (TUKEY_C * max(sigma, 1e-6))
    w = (1.0 - u * u) ** 2
    w[np.abs(u) >= 1.0] = 0.0
    return w


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


def fit_sparse(pred: np.ndarray, sparse_m: np.ndarray, relative: bool = False,
               min_points: int = MIN_POINTS) -> ScaleFit:
    """Robust fit of sparse metres (same grid as pred, NaN = none) to the prediction."""
    if sparse_m.shape != pred.shape:
        sparse_m = register_to(sparse_m, pred.shape)
    with np.errstate(invalid='ignore'):
        mask = valid_sparse(sparse_m) & np.isfinite(pred)
        mask &= (pred >= 0) if relative else (pred > 0)
    n = int(mask.sum())
    if n < min_points:
        return ScaleFit(points=n, reason=f'{n} valid sparse points (< {min_points})')
    p = pred[mask].astype(np.float64)
    r = sparse_m[mask].astype(np.float64)
    fit = _fit_affine(p, r) if relative else _fit_log_scale(p, r)
    fit.points = n
    return _checked(fit)


def _fit_log_scale(p: np.ndarray, r: np.ndarray) -> ScaleFit:
    x = np.log(r) - np.log(p)
    mu = float(np.median(x))
    sigma = _mad(x)
    for _ in range(IRLS_ITERATIONS):
        w = _tukey(x - mu, sigma)
        if w.sum() <= 0:
            break
        mu = float(np.sum(w * x) / np.sum(w))
    inliers = np.abs(x - mu) < TUKEY_C * max(sigma, 1e-6)
    residual = _mad(x[inliers]) if inliers.sum() >= 2 else math.inf
    return ScaleFit(scale=math.exp(mu) if math.isfinite(mu) and abs(mu) < 50 else math.nan,
                    residual=residual, ok=True)


def _ransac_affine(p: np.ndarray, r: np.ndarray, iterations: int = 64,
                   tol: float = 0.1) -> np.ndarray:
    """IRLS start weights: inliers (relative error < tol) of the best 2-point line."""
    rng = np.random.default_rng(0)
    best, best_count = np.ones_like(p), -1
    for _ in range(iterations):
        i, j = rng.choice(p.size, 2, replace=False)
        if abs(p[i] - p[j]) < 1e-9:
            continue
        s = (r[i] - r[j]) / (p[i] - p[j])
        if s <= 0:
            continue
        t = r[i] - s * p[i]
        inl = np.abs(s * p + t - r) < tol * r
        count = int(inl.sum())
        if count > best_count:
            best, best_count = inl.astype(np.float64), count
    return best if best_count >= 2 else np.ones_like(p)


def _fit_affine(p: np.ndarray, r: np.ndarray) -> ScaleFit:
    w = _ransac_affine(p, r)
    s, t = 1.0, 0.0
    for _ in range(IRLS_ITERATIONS + 1):
        A = np.stack([p * w, w], axis=1)
        try:
            (s, t), *_ = np.linalg.lstsq(A, r * w, rcond=None)
        except np.linalg.LinAlgError:
            return ScaleFit(reason='singular affine fit')
        e = (s * p + t - r) / r   # relative error
        w = np.sqrt(_tukey(e - np.median(e), _mad(e)))
        if w.sum() < 2:
            break
    e = (s * p + t - r) / r
    residual = _mad(e) if e.size >= 2 else math.inf
    return ScaleFit(scale=float(s), shift=float(t), residual=residual, ok=True)


def _checked(fit: ScaleFit) -> ScaleFit:
    if not (math.isfinite(fit.scale) and fit.scale > 0 and math.isfinite(fit.shift)):
        fit.ok, fit.reason = False, f'fit gave scale {fit.scale}, shift {fit.shift}'
    elif not (math.isfinite(fit.residual) and fit.residual <= MAX_LOG_RESIDUAL):
        fit.ok, fit.reason = False, f'residual {fit.residual:.3g} > {MAX_LOG_RESIDUAL}'
    return fit


def fit_ground_plane(depth: np.ndarray, K: np.ndarray, camera_height_m: float,
                     max_tilt_deg: float = 15.0, lower_fraction: float = 0.5,
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


class ScaleFilter:
    """Scale across frames, filtered in log space; one outlier frame cannot make it jump.

    smoothing in [0, 1): 0 = each good fit is used as is; else log s <- smoothing * log s +
    (1 - smoothing) * log s_new. A fit whose log scale is more than `reject_log` from the
    filtered one is rejected (counted) unless `reset_after` rejections come in a row (the scene
    really changed: start again from the new scale).
    """

    def __init__(self, smoothing: float = 0.0, reject_log: float = 0.3, reset_after: int = 2):
        self.smoothing = float(smoothing)
        self.reject_log = reject_log
        self.reset_after = reset_after
        self.log_scale = None
        self.shift = 0.0
        self.rejected = 0          # fits not used (bad or outlier), total
        self._run = 0

    @property
    def scale(self) -> float | None:
        return None if self.log_scale is None else math.exp(self.log_scale)

    def update(self, fit: ScaleFit) -> float | None:
        """The scale to use for this frame (None until a first good fit)."""
        if not fit.ok:
            self.rejected += 1
            return self.scale
        x = math.log(fit.scale)
        if self.log_scale is None or self.smoothing <= 0:
            self.log_scale, self.shift, self._run = x, fit.shift, 0
            return self.scale
        if abs(x - self.log_scale) > self.reject_log:
            self._run += 1
            if self._run < self.reset_after:
                self.rejected += 1
                return self.scale
            self.log_scale, self.shift, self._run = x, fit.shift, 0
            return self.scale
        self._run = 0
        a = self.smoothing
        self.log_scale = a * self.log_scale + (1 - a) * x
        self.shift = a * self.shift + (1 - a) * fit.shift
        return self.scale
