"""Scale from the camera's own motion (odometry): the one scale at which earlier images,
warped through the scaled depth with the known poses, match the current one."""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from .fit import MIN_POINTS, ScaleFit
from ..camera.poses import valid_pose

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
    from ..camera.geometry import as_camera, pixel_rays

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
        self.points = None         # sparse metres triangulated for this frame (ScaleSession)
        self.points_sigma = None   # ... and their own 1-sigma of log depth
        self.point_stats = {}      # the tracker's counts for this frame

    def record(self, depth_shape: tuple, rgb: np.ndarray) -> None:
        """Add this frame to the history without a photometric fit (another fit was used)."""
        if self.pose is None or not valid_pose(self.pose):
            return
        last = self.history.frames[-1] if self.history.frames else None
        if last is None or self.stamp_ns > last.stamp_ns:
            self.history.add(motion_grey(rgb, motion_grid_hw(depth_shape)), self.pose,
                             self.stamp_ns)

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
