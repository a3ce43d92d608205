"""Metric scale anchors (docs/NODE.md "Metric scale"), ROS-free: the node and the CLIs call these.

    fit = fit_sparse(pred, sparse_m, relative=False)    # robust scale (scale + shift if relative)
    fit = fit_ground_plane(depth_m, K, camera_height_m)  # RANSAC floor plane -> scale
    fit = fit_motion(depth_m, camera, grey, pose, history)  # odometry: photometric 1-D search
    filt = ScaleFilter(smoothing=0.8); scale = filt.update(fit)

    anchor = ScaleAnchor.resolve(model, 'odometry')  # the source of a run, checked once
    fit = anchor.fit(depth_m, camera, measurement, rgb)  # what the node and the CLIs call

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

SOURCES = ('none', 'sparse_depth', 'ground_plane', 'odometry')
METRIC_ONLY = ('ground_plane', 'odometry')   # scale-only fits: a relative model has a shift
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


# ---------------------------------------------------------------------------- odometry

MOTION_FIT_WIDTH = 320        # the fit's grid: the depth resized to at most this width
MOTION_HIGHPASS_SIGMA = 6.0   # px at MOTION_FIT_WIDTH: grey minus this blur (lighting-free)
MOTION_PIXELS = 16000         # sampled pixels with an above-median gradient
MOTION_TUKEY_C = 0.05         # of the high-passed grey in [0, 1]
MOTION_LOG_RANGE = math.log(16.0)  # search log s in [-ln 16, ln 16] (a model 10x off: measured)
MOTION_COARSE = 41            # grid points over the range (step ln 2 / 5), then a fine grid
MOTION_FINE = 11
MIN_PARALLAX_PX = 1.0         # the motion must move the scene this much at the fitted scale
MAX_PARALLAX_PX = 40.0        # more: the model's shape error dominates (and garbage poses)
WANT_PARALLAX_PX = 4.0        # earlier frames are picked with a parallax near this
MAX_ROTATION_DEG = 10.0
MIN_CONTRAST = 0.08           # (median - min) / median of the cost curve
MIN_DISTINCT = 0.3            # another local minimum within this fraction of (median - min)
DISTINCT_LOG = math.log(1.5)  # ... further than this from the best: an ambiguous fit
MIN_PROMINENCE = 0.1          # ... if a ridge at least this fraction of (median - min) parts them
MOTION_DEPTH_BINS = 8         # the scale: median over depth bins of equal image share ...
MOTION_BIN_WEIGHT = 0.75      # ... weighted this much against the joint fit (0 = joint only)
MOTION_BIN_VALLEY = 0.3       # ... if the joint cost there is within this of (median - min)
MOTION_BIN_PIXELS = 200       # a bin needs this many sampled pixels
MOTION_FRAMES = 2             # earlier frames used per fit
MOTION_HISTORY = 6            # earlier frames kept
MAX_POSE_STEP_M = 5.0         # a larger jump between frames is not motion: history cleared


@dataclass
class MotionFrame:
    grey: np.ndarray     # high-passed grey float32 on the fit grid
    pose: np.ndarray     # 4x4 camera-to-world of the optical frame (metres)
    stamp_ns: int


class MotionHistory:
    """The last few frames with a pose (ordered by stamp) that the odometry fit looks back to."""

    def __init__(self, size: int = MOTION_HISTORY):
        self.size = size
        self.frames = []

    def add(self, grey: np.ndarray, pose: np.ndarray, stamp_ns: int) -> str:
        """Keep this frame; '' or why the history was cleared first (out of order, a jump)."""
        why = ''
        if self.frames:
            last = self.frames[-1]
            if stamp_ns <= last.stamp_ns:
                why = 'stamps went back'
            elif last.grey.shape != grey.shape:
                why = 'image size changed'
            elif np.linalg.norm(pose[:3, 3] - last.pose[:3, 3]) > MAX_POSE_STEP_M:
                why = 'pose jumped'
        if why:
            self.frames = []
        self.frames = (self.frames + [MotionFrame(grey, pose, int(stamp_ns))])[-self.size:]
        return why


def motion_grid_hw(shape_hw: tuple) -> tuple:
    """(h, w) the odometry fit works on for a depth image of `shape_hw`."""
    h, w = shape_hw
    if w <= MOTION_FIT_WIDTH:
        return int(h), int(w)
    return max(8, int(round(h * MOTION_FIT_WIDTH / w))), MOTION_FIT_WIDTH


def motion_grey(rgb: np.ndarray, shape_hw: tuple) -> np.ndarray:
    """High-passed grey float32 of uint8 RGB on a (h, w) grid: grey in [0, 1] minus its blur."""
    import cv2

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (shape_hw[1], shape_hw[0]), interpolation=cv2.INTER_AREA)
    grey = grey.astype(np.float32) / 255.0
    sigma = MOTION_HIGHPASS_SIGMA * shape_hw[1] / MOTION_FIT_WIDTH
    return grey - cv2.GaussianBlur(grey, (0, 0), sigma)


def valid_pose(pose) -> bool:
    """A finite 4x4 rigid transform (rotation orthonormal to 1e-3)."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        return False
    R = pose[:3, :3]
    return bool(np.abs(R @ R.T - np.eye(3)).max() < 1e-3 and np.linalg.det(R) > 0)


def _rotation_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(min(1.0, max(-1.0, (np.trace(R) - 1.0) * 0.5))))


def _tukey_rho(r: np.ndarray, c: float) -> np.ndarray:
    """Tukey's biweight loss, normalised to 1 at and beyond c."""
    u = np.minimum((r / c) ** 2, 1.0)
    return 1.0 - (1.0 - u) ** 3


def _sample_bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple:
    """(values, inside) of float32 `image` at float pixel coordinates (bilinear, OpenCV's remap
    with 1/32 px weights: 6x faster than numpy's gathers, the same fits); outside: inside
    False, its value that of the nearest border pixel."""
    import cv2

    h, w = image.shape
    inside = (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    n = u.size
    rows = -(-n // REMAP_WIDTH)            # remap maps are 2-D, each side < 32767
    maps = np.empty((2, rows * REMAP_WIDTH), np.float32)
    np.clip(u, -1.0, w, out=maps[0, :n], casting='unsafe')
    np.clip(v, -1.0, h, out=maps[1, :n], casting='unsafe')
    np.nan_to_num(maps, copy=False, nan=-1.0)   # NaN (behind the camera): outside
    maps[:, n:] = 0.0
    values = cv2.remap(image, maps[0].reshape(rows, REMAP_WIDTH),
                       maps[1].reshape(rows, REMAP_WIDTH), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    return values.reshape(-1)[:n], inside


REMAP_WIDTH = 1024


class _Warp:
    """Pixels of the current frame seen from an earlier one, as a function of the scale."""

    def __init__(self, rays: np.ndarray, depth: np.ndarray, K: np.ndarray, T: np.ndarray):
        self.K = K
        # R X at scale 1 and the translation, as contiguous x, y, z rows
        self.rot = np.ascontiguousarray(((rays * depth[:, None]) @ T[:3, :3].T).T)
        self.t = T[:3, 3]
        far = np.ascontiguousarray((rays @ T[:3, :3].T).T)   # R ray: the point at infinity
        with np.errstate(divide='ignore', invalid='ignore'):
            self.far_uv = self._project(*far)

    def _project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple:
        K = self.K
        inverse = 1.0 / z
        u = x * inverse
        u *= K[0, 0]
        u += K[0, 2]
        v = y * inverse
        v *= K[1, 1]
        v += K[1, 2]
        return u, v, z

    def at(self, log_s: float) -> tuple:
        """(u, v, in front) in the earlier image at scale exp(log_s)."""
        scale = math.exp(log_s)
        x, y, z = (self.rot[i] * scale + self.t[i] for i in range(3))
        with np.errstate(divide='ignore', invalid='ignore'):
            u, v, z = self._project(x, y, z)
        return u, v, z > 1e-3

    def parallax(self, log_s: float) -> float:
        u, v, front = self.at(log_s)
        fu, fv, fz = self.far_uv
        ok = front & (fz > 1e-3)
        if not ok.any():
            return math.inf
        return float(np.median(np.hypot(u[ok] - fu[ok], v[ok] - fv[ok])))


def _motion_rho(warps: list, greys: list, target: np.ndarray, log_s: float) -> np.ndarray:
    """Each sampled pixel's cost at scale exp(log_s), averaged over the earlier frames."""
    total = None
    for warp, grey in zip(warps, greys):
        u, v, front = warp.at(log_s)
        values, inside = _sample_bilinear(grey, u, v)
        rho = _tukey_rho(values - target, MOTION_TUKEY_C)
        rho[~(inside & front)] = 1.0   # leaving the image (or going behind it): the maximum
        total = rho if total is None else total + rho
    return total / len(warps)


def _motion_cost(warps: list, greys: list, target: np.ndarray, log_s: float) -> float:
    return float(_motion_rho(warps, greys, target, log_s).mean())


def _sample_pixels(grey: np.ndarray, depth: np.ndarray, count: int) -> np.ndarray:
    """Flat indices of up to `count` pixels with valid depth and a gradient above the median
    (a fixed random draw among them: spread over the image and its depths, which follows the
    depth's overall scale better than the strongest edges alone, measured)."""
    import cv2

    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    with np.errstate(invalid='ignore'):
        ok = np.isfinite(depth) & (depth > 0)
    ok[:2], ok[-2:], ok[:, :2], ok[:, -2:] = False, False, False, False
    if not ok.any():
        return np.flatnonzero(ok)
    index = np.flatnonzero(ok & (mag > max(float(np.median(mag[ok])), 1e-3)))
    if index.size > count:
        index = np.random.default_rng(0).choice(index, count, replace=False)
    return np.sort(index)


def _parabola_min(grid: np.ndarray, costs: np.ndarray, k: int) -> float:
    """The minimum of the parabola through costs[k - 1:k + 2] on the evenly spaced `grid`
    (k inside it), kept within one grid step of grid[k]."""
    c0, c1, c2 = costs[k - 1:k + 2]
    curvature = c0 - 2 * c1 + c2
    offset = 0.5 * (c0 - c2) / curvature if curvature > 0 else 0.0
    return float(grid[k] + np.clip(offset, -1.0, 1.0) * (grid[1] - grid[0]))


def _depth_bin_scale(per_pixel: np.ndarray, grid: np.ndarray, sampled_depth: np.ndarray,
                     depth: np.ndarray) -> float | None:
    """Median of the best log scales of MOTION_DEPTH_BINS depth bins that each hold an equal
    share of the image's valid pixels (each bin's own cost curve over `grid`, with a parabola),
    or None when fewer than half the bins have a clear minimum inside the grid.

    The joint cost is ruled by the pixels whose warp moves most with the scale; where the
    model's depth is misshapen their scale is not the image's (measured on the procedural
    trajectories: the joint fit followed one quarter of the depths, the nearest on an indoor
    forward one, and was 18-33 % off the whole image's scale on three of twelve)."""
    with np.errstate(invalid='ignore'):
        valid = depth[np.isfinite(depth) & (depth > 0)]
    edges = np.quantile(valid, np.linspace(0.0, 1.0, MOTION_DEPTH_BINS + 1))
    which = np.clip(np.searchsorted(edges, sampled_depth, side='right') - 1, 0,
                    MOTION_DEPTH_BINS - 1)
    found = []
    for b in range(MOTION_DEPTH_BINS):
        members = which == b
        if members.sum() < MOTION_BIN_PIXELS:
            continue
        curve = per_pixel[:, members].mean(axis=1)
        k = int(np.argmin(curve))
        median = float(np.median(curve))
        if k in (0, len(grid) - 1) or median <= 0 or \
                (median - float(curve[k])) / median < MIN_CONTRAST:
            continue
        found.append(_parabola_min(grid, curve, k))
    if len(found) < max(1, MOTION_DEPTH_BINS // 2):
        return None
    return float(np.median(found))


def _second_minimum(costs: np.ndarray, grid: np.ndarray, k: int, median: float) -> int | None:
    """Index of another valley of the cost curve nearly as deep as the best one (at k), or None.

    A valley counts when it lies more than DISTINCT_LOG from the best, its floor is within
    MIN_DISTINCT of (median - min) above the best, and a ridge of at least MIN_PROMINENCE of
    (median - min) rises between them: a bump on the best valley's shoulder is not a second
    scale (measured on Redwood: such bumps, 3 % of the range, had refused 3 of its 4 fits).
    """
    span = median - float(costs[k])
    found = None
    for i in range(1, len(costs) - 1):
        if abs(grid[i] - grid[k]) <= DISTINCT_LOG or costs[i] > costs[i - 1] \
                or costs[i] > costs[i + 1]:
            continue
        ridge = float(costs[min(i, k):max(i, k) + 1].max())
        deep = costs[i] - costs[k] < MIN_DISTINCT * span
        if deep and ridge - costs[i] >= MIN_PROMINENCE * span \
                and (found is None or costs[i] < costs[found]):
            found = i
    return found


def _rejected(reject: str, reason: str, **fields) -> ScaleFit:
    return ScaleFit(reason=reason, reject=reject, **fields)


def fit_motion(depth: np.ndarray, camera, grey: np.ndarray, pose: np.ndarray,
               history: MotionHistory, prior_scale: float | None = None) -> ScaleFit:
    """Scale of `depth` (metres up to a factor) from the camera's known metric motion.

    `grey` is motion_grey of this frame on the fit grid, `pose` its camera-to-world (optical
    frame, metres), `history` the earlier frames. The earlier image, warped into this one
    through the scaled depth and the motion, matches it best at the right scale: a coarse then
    fine grid over log s with a parabola, Tukey loss on the high-passed grey, pixels leaving
    the image at the maximum cost. Accepted only with enough parallax, a cost curve with
    contrast, and its minimum inside the search range. The scale is then moved toward the
    median of the best scales of depth bins of equal image share (MOTION_DEPTH_BINS), inside
    the joint cost's valley, so that no one range of depths sets the whole image's scale.
    `prior_scale` (the last good scale) picks the earlier frames; the caller adds this frame
    to `history` afterwards.
    """
    from .geometry import as_camera, pixel_rays

    if not valid_pose(pose):
        return _rejected('pose', 'the pose is not a finite rigid transform')
    usable = [f for f in history.frames if f.grey.shape == grey.shape]
    if not usable:
        return _rejected('no_history', 'no earlier frame with a pose yet')
    import cv2

    h, w = grey.shape
    if depth.shape != (h, w):
        depth = cv2.resize(depth, (w, h), interpolation=cv2.INTER_NEAREST)
    cam = as_camera(camera, *depth.shape)
    K = cam.K
    index = _sample_pixels(grey, depth, MOTION_PIXELS)
    if index.size < 100 * MIN_POINTS:
        return _rejected('texture', f'{index.size} textured pixels with depth (too few)',
                         points=int(index.size))
    rx, ry = pixel_rays(K, h, w, dtype=np.float64)
    rays = np.stack([rx.ravel()[index], ry.ravel()[index], np.ones(index.size)], axis=1)
    d = depth.ravel()[index].astype(np.float64)
    target = grey.ravel()[index]
    log_prior = math.log(prior_scale) if prior_scale and prior_scale > 0 else 0.0

    # 1. The earlier frames: rotation small, parallax (at the last good scale) nearest the aim
    candidates, worst_rotation = [], 0.0
    for frame in usable:
        T = np.linalg.inv(frame.pose) @ pose       # this camera -> the earlier one
        rotation = _rotation_deg(T[:3, :3])
        if rotation > MAX_ROTATION_DEG:
            worst_rotation = max(worst_rotation, rotation)
            continue
        warp = _Warp(rays, d, K, T)
        parallax = warp.parallax(log_prior)
        if math.isfinite(parallax):
            candidates.append((abs(math.log(max(parallax, 1e-6) / WANT_PARALLAX_PX)),
                               parallax, warp, frame.grey))
    if not candidates:
        return _rejected('rotation', f'every earlier frame is rotated more than '
                         f'{MAX_ROTATION_DEG:g} deg (up to {worst_rotation:.1f})')
    candidates.sort(key=lambda c: c[0])
    chosen = candidates[:MOTION_FRAMES]
    warps, greys = [c[2] for c in chosen], [c[3] for c in chosen]
    best_parallax = max(c[1] for c in chosen)
    if best_parallax < 0.5 * MIN_PARALLAX_PX:   # no motion to speak of: do not even search
        return _rejected('parallax', f'parallax {best_parallax:.2f} px < {MIN_PARALLAX_PX:g} '
                         'px (the camera did not move enough)', parallax_px=best_parallax)

    # 2. The cost over log s: coarse grid, fine grid, parabola
    coarse = np.linspace(-MOTION_LOG_RANGE, MOTION_LOG_RANGE, MOTION_COARSE)
    per_pixel = np.stack([_motion_rho(warps, greys, target, x) for x in coarse])
    costs = per_pixel.mean(axis=1)
    k = int(np.argmin(costs))
    median = float(np.median(costs))
    contrast = (median - float(costs[k])) / median if median > 0 else 0.0
    step = coarse[1] - coarse[0]
    fine = np.linspace(coarse[k] - step, coarse[k] + step, MOTION_FINE)
    fine_costs = np.array([_motion_cost(warps, greys, target, x) for x in fine])
    j = int(np.clip(np.argmin(fine_costs), 1, MOTION_FINE - 2))
    log_s = _parabola_min(fine, fine_costs, j)
    parallax = float(np.median([warp.parallax(log_s) for warp in warps]))
    fields = dict(points=int(index.size), residual=float(fine_costs.min()),
                  parallax_px=parallax, contrast=contrast)

    # 3. The gates
    if k in (0, MOTION_COARSE - 1):
        return _rejected('edge', f'the cost minimum is at the edge of the search (scale '
                         f'{math.exp(coarse[k]):.3g})', **fields)
    second = _second_minimum(costs, coarse, k, median)
    if second is not None:
        return _rejected('ambiguous', f'a second cost minimum at scale '
                         f'{math.exp(coarse[second]):.3g}', **fields)
    if contrast < MIN_CONTRAST:
        return _rejected('contrast', f'flat cost curve (contrast {contrast:.2f} < '
                         f'{MIN_CONTRAST:g})', **fields)
    if not MIN_PARALLAX_PX <= parallax <= MAX_PARALLAX_PX:
        return _rejected('parallax', f'parallax {parallax:.2f} px outside [{MIN_PARALLAX_PX:g}, '
                         f'{MAX_PARALLAX_PX:g}] px', **fields)
    if MOTION_DEPTH_BINS:   # every depth range of the image gets its say in the scale
        binned = _depth_bin_scale(per_pixel, coarse, d, depth)
        # ... within the joint cost's valley only: a scale the image as a whole refuses (bins
        # fooled by repeated texture, measured) is not taken
        if binned is not None and float(np.interp(binned, coarse, costs)) - float(costs[k]) \
                <= MOTION_BIN_VALLEY * (median - float(costs[k])):
            log_s = MOTION_BIN_WEIGHT * binned + (1.0 - MOTION_BIN_WEIGHT) * log_s
    scale = math.exp(log_s)
    if not math.isfinite(scale):
        return _rejected('pose', f'fit gave scale {scale}', **fields)
    return ScaleFit(scale=scale, ok=True, **fields)


# ---------------------------------------------------------------------------- the anchor

class AnchorError(ValueError):
    """A scale source that cannot work with this model or these settings (message says why)."""


def camera_height_problem(height) -> str:
    """'' or what is wrong with a camera height for the ground_plane source."""
    try:
        value = float(height)
    except (TypeError, ValueError):
        return f'the camera height must be metres, got {height!r}'
    if not 0.0 < value < 1000.0:
        return f'the camera height must be in (0, 1000) m, got {value:g}'
    return ''


RELATIVE_UNANCHORED = ('the checkpoint is affine-invariant (relative depth) and the scale source '
                       'is none: its output is unitless relative depth, not metres (the '
                       'sparse_depth source anchors it)')


@dataclass(frozen=True)
class ScaleAnchor:
    """The scale source of a run, resolved against the model once: the node and each CLI only
    build it (`resolve`), and every frame goes through `fit` (estimate_metric_depth).

    `problem` is why the source cannot anchor this run ('' when it can): a relative model with
    a scale-only source, or ground_plane without a camera height. Then no fit is made and the
    output is the model's own (relative stays relative); `note` is what to tell the user.
    """

    source: str = 'none'
    relative_model: bool = False
    camera_height_m: float | None = None
    ground_max_tilt_deg: float = 15.0
    smoothing: float = 0.0
    problem: str = ''

    @classmethod
    def resolve(cls, model, source: str = 'none', *, camera_height_m: float | None = None,
                ground_max_tilt_deg: float = 15.0, smoothing: float = 0.0,
                strict: bool = True) -> 'ScaleAnchor':
        """The anchor of `source` for `model` (anything with `is_relative`, or a bool).

        strict: raise AnchorError when the source cannot work (the CLIs); else keep the
        reason in `problem` (the node, whose parameters may change at run time)."""
        if source not in SOURCES:
            raise AnchorError(f'unknown scale source {source!r}; one of {", ".join(SOURCES)}')
        if not 0.0 <= smoothing < 1.0:
            raise AnchorError(f'the scale smoothing must be in [0, 1), got {smoothing:g}')
        relative = model if isinstance(model, bool) else bool(getattr(model, 'is_relative',
                                                                      False))
        problem = ''
        if source in METRIC_ONLY and relative:
            problem = (f'the {source} scale source needs a metric model; this checkpoint is '
                       'affine-invariant (relative depth): use sparse_depth')
        elif source == 'ground_plane':
            problem = camera_height_problem(camera_height_m)
            if problem:
                problem = f'the ground_plane scale source needs a camera height: {problem}'
        if problem and strict:
            raise AnchorError(problem)
        return cls(source, relative, None if camera_height_m is None else
                   float(camera_height_m), float(ground_max_tilt_deg), float(smoothing), problem)

    @property
    def active(self) -> bool:
        """True when frames are fitted (a source that works with this model)."""
        return self.source != 'none' and not self.problem

    @property
    def note(self) -> str:
        """'' or why the output is not anchored metres (a problem, or an unanchored relative
        model)."""
        if self.problem:
            return self.problem
        return RELATIVE_UNANCHORED if self.relative_model and self.source == 'none' else ''

    def new_filter(self) -> 'ScaleFilter | None':
        return ScaleFilter(self.smoothing) if self.active else None

    def waiting(self, scale_filter: 'ScaleFilter | None', relative: bool = False) -> bool:
        """True while a frame's metric depth is still at the model's own scale although a
        source is set: no good fit in `scale_filter` yet (a source that cannot work here has no
        filter and never fits). wait_for_scale holds such frames back; `relative` output
        (unitless, on its own topic) is never held."""
        return self.source != 'none' and not relative and (
            scale_filter is None or scale_filter.scale is None)

    def fit(self, depth: np.ndarray, camera, measurement=None, rgb=None,
            prior_scale: float | None = None) -> ScaleFit | None:
        """This frame's fit of `depth` (camera: the depth image's CameraModel), or None when
        there is nothing to fit (inactive, or no measurement this frame).

        measurement: sparse_depth: sparse metres (any grid); odometry: a Motion (pose and
        history; `rgb` is the frame's image)."""
        if not self.active:
            return None
        if self.source == 'sparse_depth':
            if measurement is None:
                return None
            return fit_sparse(depth, np.asarray(measurement, np.float32),
                              relative=self.relative_model)
        if self.source == 'ground_plane':
            return fit_ground_plane(depth, camera.K, self.camera_height_m,
                                    self.ground_max_tilt_deg)
        if measurement is None:
            return None
        return measurement.fit(depth, camera, rgb, prior_scale)


class Motion:
    """The odometry measurement of one frame: its camera pose and the stream's history.

        motion = Motion(pose_4x4, stamp_ns, history)   # pose None: no odometry for this frame
        fit = anchor.fit(depth, camera, motion, rgb)    # fits, then adds the frame to history
    """

    def __init__(self, pose, stamp_ns: int, history: MotionHistory):
        self.pose = None if pose is None else np.asarray(pose, dtype=np.float64)
        self.stamp_ns = int(stamp_ns)
        self.history = history
        self.fit_ms = 0.0

    def fit(self, depth: np.ndarray, camera, rgb: np.ndarray,
            prior_scale: float | None = None) -> ScaleFit:
        import time

        start = time.perf_counter()
        if self.pose is None or not valid_pose(self.pose):
            fit = _rejected('pose', 'no valid odometry pose for this frame')
        else:
            grey = motion_grey(rgb, motion_grid_hw(depth.shape))
            last = self.history.frames[-1] if self.history.frames else None
            if last is not None and self.stamp_ns <= last.stamp_ns:
                fit = _rejected('order', 'the frame is older than the previous one')
            else:
                fit = fit_motion(depth, camera, grey, self.pose, self.history, prior_scale)
            self.history.add(grey, self.pose, self.stamp_ns)
        self.fit_ms = (time.perf_counter() - start) * 1e3
        return fit
