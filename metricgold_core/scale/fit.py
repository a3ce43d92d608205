"""Robust per-frame scale fits of sparse metres, and the filter that carries the scale across
frames.

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

from .sparse import register_to, valid_sparse

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
    reject: str = ''           # short key of `reason` (diagnostics count rejections by it)
    parallax_px: float = math.nan   # odometry: median parallax of the motion at the fitted scale
    contrast: float = math.nan      # odometry: (median - min) / median of the cost curve
    method: str = ''                # odometry: 'points' (triangulated) or 'photometric'


def _mad(x: np.ndarray) -> float:
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _tukey(r: np.ndarray, sigma: float) -> np.ndarray:
    u = r / (TUKEY_C * max(sigma, 1e-6))
    w = (1.0 - u * u) ** 2
    w[np.abs(u) >= 1.0] = 0.0
    return w


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
