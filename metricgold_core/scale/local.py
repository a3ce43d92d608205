"""Local correction: sparse metric points bend the model's depth to the truth where they are.

    out = correct_locally(depth_m, sparse_m)      # depth already at the frame's global scale
    out.depth        # float32 metres, corrected (NaN where depth was NaN)
    out.uncertainty  # float32 metres, 1 sigma: small at the points, the global spread away
    out.ok, out.reason, out.points, out.outliers, out.ms

Each point's residual r = log(z_point / z_model) is first explained by one robust line in log
depth (the model's depth-dependent error: near surfaces too far, far ones too near); what the line
leaves is spread over the image by normalised convolution on a bilateral grid over (v, u, log
z_model + the image's brightness): a near object and the wall behind it are far apart on the
grid's third axis and do not share a correction, nor do two surfaces an image edge parts, while a
surface and its neighbours of similar depth do. The kernel's width follows the points' mean
spacing (it grows as they thin out); a prior weight pulls the spread to zero (the global fit and
the line) away from every point. Outlier points (a residual that the leave-one-out correction of
their neighbours misses by far) are dropped first. Too few points, or points bunched in one
corner, keep the global fit (`ok` False, `reason` says why).

Accuracy and cost: docs/MAPPING.md "Local correction" (most of the cost is the grid's slicing at
every pixel, computed at WORK_WIDTH and upsampled).
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import time

import numpy as np

from .fit import _tukey
from .sparse import valid_sparse

MIN_LOCAL_POINTS = 12       # fewer points: the global fit only
MIN_SPREAD = 0.12           # points' spatial spread (std / image size, geometric mean): below it
MAX_ABS_RESIDUAL = math.log(8.0)   # a point further than this from the global fit: an outlier
SPACING_FACTOR = 0.4        # the kernel's sigma = this x the points' mean spacing (px)
MIN_SIGMA_FRACTION = 0.02   # ... at least this fraction of the image diagonal
SIGMA_LOG = 0.12            # the kernel's width on the log-depth axis
CELL = 1.0                  # the grid's cell, in kernel widths (spatially and in log depth)
PRIOR_WEIGHT = 0.002        # the global fit's weight, in units of one point at its own pixel
JUDGE_FACTOR = 1.5          # outliers: judged by neighbours within this x the spacing (px)
OUTLIER_LOG = 0.7           # a leave-one-out miss above this ...
OUTLIER_MAD = 4.0           # ... and above this many robust spreads of all misses: an outlier
MIN_SUPPORT = 0.3           # leave-one-out weight a point needs before it can be judged
MIN_SIGMA_LOG = 0.02        # floor of the per-pixel uncertainty (log depth)
GUIDE_WEIGHT = 1.0          # brightness's share of the grid's depth axis (log depth units)
MIN_TREND_LOG = 0.3         # the points span at least this much log depth for a trend
MAX_TREND_SLOPE = 0.8       # |d r / d log z| at most this
TREND_FADE_LOG = 0.3        # beyond the points' depths the line fades over this log depth
POINT_SIGMA_LOG = 0.05      # a point with this own uncertainty weighs half (sigma_log given)
WORK_WIDTH = 320            # the correction is computed on every n-th pixel down to this width


@dataclass
class LocalCorrection:
    """One frame's local correction (depth and uncertainty in metres)."""

    depth: np.ndarray
    uncertainty: np.ndarray | None
    ok: bool = False
    reason: str = ''
    points: int = 0            # points used
    outliers: int = 0          # points dropped as outliers
    ms: float = 0.0
    stats: dict = field(default_factory=dict)


def _points(depth: np.ndarray, sparse_m: np.ndarray) -> tuple:
    """(v, u, residual) of the sparse pixels where depth is valid."""
    with np.errstate(invalid='ignore'):
        mask = valid_sparse(sparse_m) & np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(mask)
    r = np.log(sparse_m[v, u].astype(np.float64)) - np.log(depth[v, u].astype(np.float64))
    return v, u, r


def _spread(v: np.ndarray, u: np.ndarray, shape_hw: tuple) -> float:
    """How far the points reach over the image: sqrt(std_v / H * std_u / W) (uniform ~0.29)."""
    return float(math.sqrt(np.std(v) / shape_hw[0] * np.std(u) / shape_hw[1]))


def _pairwise(v, u, g, sigma_px: float, sigma_log: float) -> np.ndarray:
    """(N, N) Gaussian kernel over (v, u, g) between the points, zero on the diagonal (leave
    one out)."""
    v, u, g = (np.asarray(x, np.float32) for x in (v, u, g))
    q = ((v[:, None] - v[None]) ** 2 + (u[:, None] - u[None]) ** 2) * np.float32(
        -0.5 / (sigma_px * sigma_px)) - (g[:, None] - g[None]) ** 2 * np.float32(
        0.5 / (sigma_log * sigma_log))
    k = np.exp(q)
    np.fill_diagonal(k, 0.0)
    return k.astype(np.float64)


def _reject_outliers(k: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Mask of the points kept (k: the pairwise kernel): a point whose residual its neighbours'
    leave-one-out correction misses by much (and by much more than the others' misses) is
    dropped."""
    keep = np.ones(r.shape, bool)
    if r.size < 3:
        return keep
    for _ in range(2):
        kk = k[:, keep]
        support = kk.sum(axis=1)
        loo = kk @ r[keep] / np.maximum(support, 1e-12)
        miss = np.abs(r - loo)
        judged = support >= MIN_SUPPORT
        if judged.sum() < 3:
            break
        spread = 1.4826 * float(np.median(miss[judged & keep]))
        bad = judged & (miss > max(OUTLIER_LOG, OUTLIER_MAD * spread))
        new_keep = keep & ~bad
        if new_keep.sum() == keep.sum() or new_keep.sum() < MIN_LOCAL_POINTS:
            break
        keep = new_keep
    return keep


def _blur(grid: np.ndarray, sigma_cells: float, sigma_bins: float) -> np.ndarray:
    """Gaussian blur (peak 1, zero outside) of a (Gh, Gw, D, C) grid: spatially, then in depth."""
    import cv2

    def taps(sigma: float) -> np.ndarray:
        radius = max(1, int(math.ceil(3.0 * sigma)))
        x = np.arange(-radius, radius + 1, dtype=np.float32)
        return np.exp(-0.5 * (x / sigma) ** 2).astype(np.float32)

    gh, gw, d, c = grid.shape
    one = np.ones(1, np.float32)
    ts = taps(sigma_cells)
    flat = grid.reshape(gh, gw, d * c)
    chunks = range(0, d * c, 128)    # OpenCV filters take at most 128 channels
    flat = np.concatenate([cv2.sepFilter2D(flat[..., i:i + 128], -1, ts, ts,
                                           borderType=cv2.BORDER_CONSTANT).reshape(gh, gw, -1)
                           for i in chunks], axis=2).reshape(gh * gw, d, c)
    return cv2.sepFilter2D(flat, -1, taps(sigma_bins), one,
                           borderType=cv2.BORDER_CONSTANT).reshape(gh, gw, d, c)


def _slice(grid: np.ndarray, gv: np.ndarray, gu: np.ndarray, gg: np.ndarray) -> np.ndarray:
    """Trilinear read of `grid` (Gh, Gw, D, C) at grid coordinates (H, W) each -> (H, W, C).

    The depth slices lie side by side in one image, read with OpenCV's bilinear remap at the
    two slices around each pixel's depth, then blended."""
    import cv2

    gh, gw, d, c = grid.shape
    atlas = np.ascontiguousarray(grid.transpose(0, 2, 1, 3)).reshape(gh, d * gw, c)
    zi = np.clip(np.floor(gg), 0, d - 2)
    fz = (gg - zi)[..., None]
    map_x = zi * np.float32(gw) + gu
    lower = cv2.remap(atlas, map_x, gv, cv2.INTER_LINEAR)
    upper = cv2.remap(atlas, map_x + np.float32(gw), gv, cv2.INTER_LINEAR)
    return lower + fz * (upper - lower)


def _trend(log_z: np.ndarray, r: np.ndarray) -> tuple:
    """(a, b, lo, hi): the robust line r = a + b (log z - lo) over the points' log depths, the
    model's depth-dependent error (near too far, far too near), or (median r, 0) when the
    points span too little depth to tell."""
    lo, hi = float(np.min(log_z)), float(np.max(log_z))
    if hi - lo < MIN_TREND_LOG:
        return float(np.median(r)), 0.0, lo, hi
    x = log_z - lo
    w = np.ones_like(r)
    a, b = float(np.median(r)), 0.0
    for _ in range(5):
        sw = np.sqrt(w)
        A = np.stack([sw, sw * x], axis=1)
        (a, b), *_ = np.linalg.lstsq(A, sw * r, rcond=None)
        e = r - a - b * x
        w = _tukey(e, max(1.4826 * float(np.median(np.abs(e))), 1e-3))
    b = float(np.clip(b, -MAX_TREND_SLOPE, MAX_TREND_SLOPE))
    return float(a), b, lo, hi


def _grey(image, shape_hw: tuple):
    """The image's grey levels on the depth grid (uint8 or float), or None; brightness in [0, 1]
    is grey * the returned factor."""
    import cv2

    if image is None or GUIDE_WEIGHT <= 0:
        return None, 0.0
    image = np.asarray(image)
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if grey.shape != shape_hw:
        grey = cv2.resize(grey, (shape_hw[1], shape_hw[0]), interpolation=cv2.INTER_AREA)
    scale = 1.0 / 255.0 if grey.dtype == np.uint8 else 1.0 / max(float(np.max(grey)), 1e-6)
    return grey, scale


def correct_locally(depth: np.ndarray, sparse_m: np.ndarray, image=None, *,
                    prior_sigma_log: float | None = None,
                    sigma_log: np.ndarray | None = None) -> LocalCorrection:
    """The locally corrected depth of `depth` (float32 metres at the frame's global scale,
    NaN = none) from `sparse_m` (float32 metres on the same grid, NaN / 0 = no point).

    prior_sigma_log: the global fit's spread (log depth) that the uncertainty falls back to away
    from the points (None: the spread of the points' residuals). sigma_log: each point's own
    1-sigma of log depth on the same grid (e.g. triangulated points), None: all alike; a point
    then weighs 1 / (1 + (sigma / POINT_SIGMA_LOG)^2) in the spread."""
    import cv2

    start = time.perf_counter()
    depth = np.asarray(depth, dtype=np.float32)
    sparse_m = np.asarray(sparse_m, dtype=np.float32)
    if sparse_m.shape != depth.shape:
        raise ValueError(f'`sparse_m` must be on the depth grid {depth.shape}, got '
                         f'{sparse_m.shape}.')
    h, w = depth.shape
    v, u, r = _points(depth, sparse_m)
    weights = np.ones(r.size)
    if sigma_log is not None:
        sig = np.nan_to_num(np.asarray(sigma_log, np.float64)[v, u], nan=0.0)
        weights = 1.0 / (1.0 + (np.maximum(sig, 0.0) / POINT_SIGMA_LOG) ** 2)
    out = LocalCorrection(depth=depth, uncertainty=None, points=int(r.size))

    def done(reason: str = '') -> LocalCorrection:
        out.reason, out.ok = reason, not reason
        out.ms = (time.perf_counter() - start) * 1e3
        return out

    if r.size < MIN_LOCAL_POINTS:
        return done(f'{r.size} points (< {MIN_LOCAL_POINTS})')
    spread = _spread(v, u, (h, w))
    out.stats['spread'] = round(spread, 3)
    if spread < MIN_SPREAD:
        return done(f'the points are bunched (spread {spread:.2f} < {MIN_SPREAD})')

    # The grid's third coordinate: log depth, plus the image's brightness times GUIDE_WEIGHT
    # when an image is given (an image edge then parts the correction where the model's depth
    # runs smoothly across it).
    grey, to_unit = _grey(image, (h, w))
    log_points = np.log(depth[v, u].astype(np.float64))
    g_points = log_points.copy()
    if grey is not None:
        g_points += (GUIDE_WEIGHT * to_unit) * grey[v, u]
    spacing = math.sqrt(h * w / r.size)
    sigma_px = max(SPACING_FACTOR * spacing, MIN_SIGMA_FRACTION * math.hypot(h, w))
    v, u = v.astype(np.float64), u.astype(np.float64)
    # The model's depth-dependent error first, as one robust line in log depth; the grid
    # spreads what it leaves.
    a, b, t_lo, t_hi = _trend(log_points, r)
    detrended = r - (a + b * (log_points - t_lo))
    # Outliers are judged against a wider neighbourhood than the spread uses, so that every
    # point has neighbours to be judged by.
    pairs = _pairwise(v, u, g_points, max(JUDGE_FACTOR * spacing, sigma_px), SIGMA_LOG)
    pairs *= weights[None]       # a neighbour counts by its own weight
    keep = (np.abs(r) <= MAX_ABS_RESIDUAL) & _reject_outliers(pairs, detrended)
    out.outliers = int((~keep).sum())
    v, u, r, g_points, weights = v[keep], u[keep], detrended[keep], g_points[keep], weights[keep]
    pairs = pairs[np.ix_(keep, keep)]
    out.points = int(r.size)
    if r.size < MIN_LOCAL_POINTS:
        return done(f'{r.size} points left after {out.outliers} outliers (< {MIN_LOCAL_POINTS})')
    # The working grid: every `step`-th pixel (the correction is smooth except across depth
    # edges, which a bilinear upsampling moves by under a full-resolution pixel).
    step = max(1, int(round(w / WORK_WIDTH)))
    small = depth[::step, ::step]
    valid = np.isfinite(small) & (small > 0)
    log_model = cv2.log(np.where(valid, small, np.float32(1.0)))
    log_small = log_model
    if grey is not None:
        log_small = log_model + grey[::step, ::step].astype(np.float32) * np.float32(
            GUIDE_WEIGHT * to_unit)
    g_lo = float(min(np.min(log_small[valid]), g_points.min()))
    g_hi = float(max(np.max(log_small[valid]), g_points.max()))
    # The bilateral grid: cells of CELL kernel widths spatially and in log depth.
    cell_px, cell_log = sigma_px * CELL, SIGMA_LOG * CELL
    gh = max(int(math.ceil((h - 1) / cell_px)) + 1, 2)
    gw = max(int(math.ceil((w - 1) / cell_px)) + 1, 2)
    gd = max(int(math.ceil((g_hi - g_lo) / cell_log)) + 1, 2)
    # Splat (trilinear) each point's weight and weighted residual into the grid.
    coords = (v / cell_px, u / cell_px, (g_points - g_lo) / cell_log)
    base = [np.clip(np.floor(c).astype(np.int64), 0, n - 2)
            for c, n in zip(coords, (gh, gw, gd))]
    frac = [np.clip(c - b, 0.0, 1.0) for c, b in zip(coords, base)]
    splat = np.zeros((gh, gw, gd, 2), np.float32)
    for corner in range(8):
        bits = [(corner >> k) & 1 for k in range(3)]
        wt = np.prod([f if b else 1.0 - f for f, b in zip(frac, bits)], axis=0) * weights
        index = tuple(b + bit for b, bit in zip(base, bits))
        np.add.at(splat[..., 0], index, wt)
        np.add.at(splat[..., 1], index, wt * r)
    # The kernel: a blurred splat peaks at 1, so PRIOR_WEIGHT is in units of one point at its
    # own pixel.
    grid = _blur(splat, 1.0 / CELL, 1.0 / CELL)
    # Slice at every working pixel: (v, u, log z) -> grid coordinates.
    sh, sw = log_small.shape
    to_cell = np.float32(step / cell_px)
    gv = np.ascontiguousarray(np.broadcast_to(
        np.arange(sh, dtype=np.float32)[:, None] * to_cell, (sh, sw)))
    gu = np.ascontiguousarray(np.broadcast_to(
        np.arange(sw, dtype=np.float32)[None] * to_cell, (sh, sw)))
    gg = (log_small - np.float32(g_lo)) * np.float32(1.0 / cell_log)
    sliced = _slice(grid, gv, gu, gg)
    weight = np.maximum(sliced[..., 0], np.float32(0.0)) + np.float32(PRIOR_WEIGHT)
    correction = sliced[..., 1] / weight
    # The line holds over the points' depths; beyond them it fades to its value at the points'
    # median depth (the frame's overall offset), so a line fitted on far points does not bend
    # the near road that no point reached.
    t_mid = np.float32(float(np.median(log_points)))
    offset = np.float32(a) + np.float32(b) * (t_mid - np.float32(t_lo))
    outside = np.maximum(np.maximum(np.float32(t_lo) - log_model, log_model - np.float32(t_hi)),
                         np.float32(0.0))
    fade = cv2.exp(outside * outside * np.float32(-0.5 / TREND_FADE_LOG ** 2))
    line = np.float32(a) + np.float32(b) * (np.clip(log_model, t_lo, t_hi) - np.float32(t_lo))
    correction += offset + fade * (line - offset)
    share = np.float32(PRIOR_WEIGHT) / weight          # 1 far from points, ~0 at them

    # Uncertainty: the global spread where there is no support, the local misses at the points
    # (each point's leave-one-out miss among its neighbours).
    support = pairs.sum(axis=1)
    loo = pairs @ r / np.maximum(support, 1e-12)
    local_sigma = max(1.4826 * float(np.median(np.abs(r - loo))), MIN_SIGMA_LOG)
    if prior_sigma_log is None or not math.isfinite(prior_sigma_log):
        prior_sigma_log = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    prior_sigma_log = max(prior_sigma_log, local_sigma)
    sigma_log = cv2.sqrt(share * np.float32(prior_sigma_log ** 2 - local_sigma ** 2)
                         + np.float32(local_sigma ** 2))
    if step > 1:
        correction = cv2.resize(correction, (w, h), interpolation=cv2.INTER_LINEAR)
        sigma_log = cv2.resize(sigma_log, (w, h), interpolation=cv2.INTER_LINEAR)
    out.depth = depth * cv2.exp(correction)            # NaN stays NaN
    out.uncertainty = out.depth * sigma_log
    out.stats.update(sigma_px=round(sigma_px, 1), grid=(gh, gw, gd), step=step,
                     local_sigma_log=round(local_sigma, 4))
    return done()
