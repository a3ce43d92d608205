"""Metric points from motion: image features tracked over the last frames and triangulated
with the camera's odometry poses.

    tracker = FeatureTracks(frames=6)
    pts = tracker.update(grey, pose, K, stamp_ns)    # each frame, in stamp order
    pts.uv, pts.depth_m, pts.sigma_log               # points of the current frame
    sparse = sparse_depth_image(pts, depth.shape, grey.shape)

Corners (Shi-Tomasi) are tracked frame to frame with pyramidal Lucas-Kanade, started where
their triangulated point projects with the new pose (or, before it has one, where the camera's
rotation alone would move them) and kept only when tracking back lands where they came from.
Each track keeps its last `frames` observations; a track seen from camera centres far enough
apart is triangulated (midpoint of all its rays, refined by Gauss-Newton on the
reprojection error) and kept where it passes the gates: parallax (no depth from a camera that
only turned), reprojection error, positive depth in every view and the depth's own
uncertainty. Its uncertainty `sigma_log` (1 sigma of log depth) is propagated from the pixel
noise through the triangulation, so it grows with distance and shrinks with baseline; an error
in the odometry's scale is not in it (it scales every point alike).

Poses are 4x4 camera -> world transforms of the optical frame (x right, y down, z forward) in
metres, as scale.MotionFrame.pose; K is the 3x3 of the image given (pixel centres at integer
coordinates). Pure numpy + OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
import time

import numpy as np

from .motion import MAX_POSE_STEP_M
from .multiview import (log_depth_sigma, midpoint, parallax_deg, predict_pixels, refine_points,
                        to_cameras, world_rays)
from ..camera.geometry import scale_intrinsics
from ..camera.poses import valid_pose

REJECTIONS = ('fb-check', 'parallax', 'cheirality', 'reprojection', 'uncertainty')


@dataclass
class MotionPoints:
    """Triangulated points of one frame: `uv` float32 (N, 2) pixels of the current image,
    `depth_m` float32 (N,) z-depth in the current camera, `sigma_log` float32 (N,) 1-sigma of
    log depth; `stats` what the tracker did (see FeatureTracks.update)."""
    uv: np.ndarray
    depth_m: np.ndarray
    sigma_log: np.ndarray
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.depth_m)


def as_grey_uint8(grey) -> np.ndarray:
    """uint8 (H, W) of a grey image of any dtype: (H, W) or (H, W, 1); (H, W, 3) is taken as
    RGB. Integers scale by their full range (uint16 / 257), floats with a maximum <= 1 by 255,
    other floats are clipped to [0, 255]; NaN is 0."""
    import cv2

    grey = np.asarray(grey)
    if grey.ndim == 3 and grey.shape[2] in (1, 3):
        grey = grey[..., 0] if grey.shape[2] == 1 else cv2.cvtColor(
            as_grey_uint8_channels(grey), cv2.COLOR_RGB2GRAY)
    if grey.ndim != 2 or min(grey.shape) < 8:
        raise ValueError('`grey` must be an (H, W) image of at least 8x8 pixels, got shape '
                         f'{grey.shape}.')
    return as_grey_uint8_channels(grey)


def as_grey_uint8_channels(image: np.ndarray) -> np.ndarray:
    """uint8 of an image of any dtype, channel by channel alike (see as_grey_uint8)."""
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        scaled = (image.astype(np.float32) - max(info.min, 0)) * (255.0 / info.max)
        return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f'`grey` must be a numeric image, got dtype {image.dtype}.')
    image = np.nan_to_num(image.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    if image.size and image.max() <= 1.0:
        image = image * 255.0
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _check_K(K) -> np.ndarray:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError('`K` must be a finite 3x3 intrinsics matrix with positive focal '
                         f'lengths, got {np.asarray(K).tolist()}.')
    return K


def _empty(stats: dict) -> MotionPoints:
    return MotionPoints(np.zeros((0, 2), np.float32), np.zeros(0, np.float32),
                        np.zeros(0, np.float32), stats)


class FeatureTracks:
    """Features tracked over the last `frames` frames, triangulated with their poses.

    `max_features` corners are kept alive (replenished where tracks are lost, at least
    `min_distance_px` from every tracked one; None: 1/64 of the image width, at least 5 px);
    `fb_max_px` the forward-backward tracking error allowed; a point needs `min_parallax_deg`
    between its rays, at most `max_reprojection_px` reprojection error in every view, at least
    `min_depth_m` in every view and at most `max_sigma_log` uncertainty, seen in `min_views`
    frames or more; `pixel_sigma_px` is the tracking noise the uncertainty assumes (the measured
    residual when larger). New corners need `min_isotropy` (lambda_min / lambda_max of their
    structure tensor: no straight edges) and are searched on the image shrunk to at most
    `detect_width`; Lucas-Kanade runs with a `window_px` window over `levels` pyramid levels,
    on the image shrunk to at most `track_width` (points are returned in the input's pixels).
    A step over `max_pose_step_m` between frames restarts the tracks (None: the odometry fit's
    scale.MAX_POSE_STEP_M).
    """

    def __init__(self, frames: int = 6, max_features: int = 500,
                 min_distance_px: float | None = None, quality: float = 0.01,
                 fb_max_px: float = 0.5, min_parallax_deg: float = 1.0,
                 max_reprojection_px: float = 1.0, min_depth_m: float = 0.05,
                 max_sigma_log: float = 0.2, pixel_sigma_px: float = 0.6,
                 min_views: int = 3, min_isotropy: float = 0.1,
                 window_px: int = 11, levels: int = 4, detect_width: int = 320,
                 track_width: int = 640,
                 max_pose_step_m: float | None = None):
        if max_pose_step_m is None:   # the odometry fit's own bound
            max_pose_step_m = MAX_POSE_STEP_M
        if int(frames) < 2:
            raise ValueError(f'`frames` must be >= 2 (a point needs two views), got {frames}.')
        if int(max_features) < 1:
            raise ValueError(f'`max_features` must be >= 1, got {max_features}.')
        for name, value in (('fb_max_px', fb_max_px), ('min_parallax_deg', min_parallax_deg),
                            ('max_reprojection_px', max_reprojection_px),
                            ('max_sigma_log', max_sigma_log),
                            ('pixel_sigma_px', pixel_sigma_px), ('quality', quality),
                            ('max_pose_step_m', max_pose_step_m)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f'`{name}` must be a positive number, got {value}.')
        self.frames, self.max_features = int(frames), int(max_features)
        self.min_distance_px, self.quality = min_distance_px, float(quality)
        self.fb_max_px, self.min_parallax_deg = float(fb_max_px), float(min_parallax_deg)
        self.max_reprojection_px, self.min_depth_m = float(max_reprojection_px), min_depth_m
        self.max_sigma_log, self.pixel_sigma_px = float(max_sigma_log), float(pixel_sigma_px)
        self.window_px, self.levels = int(window_px), int(levels)
        self.min_views = min(max(2, int(min_views)), self.frames)
        self.min_isotropy = float(min_isotropy)
        self.detect_width = max(16, int(detect_width))
        self.track_width = max(16, int(track_width))
        self.max_pose_step_m = float(max_pose_step_m)
        self.reset()

    def reset(self) -> None:
        """Forget every track and frame: the next update starts afresh."""
        F = self.frames
        self._prev_grey = None
        self._shape = None
        self._stamp_ns = None
        self._poses = np.tile(np.eye(4), (F, 1, 1))  # the window's frames, oldest first
        self._Ks = np.tile(np.eye(3), (F, 1, 1))
        self._obs = np.zeros((0, F, 2), np.float32)  # per track and frame: uv, NaN = unseen
        self._X = np.zeros((0, 3))                   # per track: its last point (world), NaN

    def update(self, grey, pose, K, stamp_ns: int) -> MotionPoints:
        """Track into this frame and return its triangulated points.

        `grey` (H, W) image (uint8 expected, any dtype converted); `pose` 4x4 camera -> world of
        this frame's optical frame (metres); `K` 3x3 intrinsics of `grey`; `stamp_ns` its time.
        The tracks restart (no points this frame) on the first frame, an invalid pose, a pose
        jump over `max_pose_step_m`, a stamp not after the last one or a new image size.
        `stats`: tracked (tracks carried into this frame), new (corners added), triangulated
        (points returned), rejected (per gate: fb-check, parallax, cheirality, reprojection,
        uncertainty), reset ('' or why the tracks restarted), ms (time spent).
        """

        start = time.perf_counter()
        grey = as_grey_uint8(grey)
        K = _check_K(K)
        stamp_ns = int(stamp_ns)
        stats = {'tracked': 0, 'new': 0, 'triangulated': 0,
                 'rejected': dict.fromkeys(REJECTIONS, 0), 'reset': '', 'ms': 0.0}
        pose_ok = valid_pose(pose)
        pose = np.asarray(pose, dtype=np.float64) if pose_ok else None
        if self._shape is not None:
            if not pose_ok:
                stats['reset'] = 'invalid pose'
            elif stamp_ns <= self._stamp_ns:
                stats['reset'] = 'stamps went back'
            elif grey.shape != self._shape:
                stats['reset'] = 'image size changed'
            elif np.linalg.norm(pose[:3, 3] - self._poses[-1, :3, 3]) > self.max_pose_step_m:
                stats['reset'] = 'pose jumped'
            if stats['reset']:
                self.reset()
        if not pose_ok:
            stats['reset'] = stats['reset'] or 'invalid pose'
            stats['ms'] = (time.perf_counter() - start) * 1e3
            return _empty(stats)

        shape = grey.shape
        grey, K, to_input = self._working_image(grey, K)
        if self._prev_grey is not None and len(self._obs):
            self._track(grey, pose, K, stats)
        # slide the window: the oldest frame leaves, this one comes in
        self._poses = np.concatenate([self._poses[1:], pose[None]])
        self._Ks = np.concatenate([self._Ks[1:], K[None]])
        points = self._triangulate(stats)
        points.uv = ((points.uv + 0.5) * to_input - 0.5).astype(np.float32)
        self._replenish(grey, stats)
        self._prev_grey, self._shape, self._stamp_ns = grey, shape, stamp_ns
        stats['ms'] = (time.perf_counter() - start) * 1e3
        points.stats = stats
        return points

    def _working_image(self, grey, K) -> tuple:
        """The image tracked (at most `track_width` wide), its K and the factor (x, y) that
        takes its pixels back to the input's (pixel centres at integer coordinates)."""
        import cv2

        h, w = grey.shape
        if w <= self.track_width:
            return grey, K, np.ones(2, np.float32)
        size = (self.track_width, max(8, int(round(h * self.track_width / w))))
        small = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        K = scale_intrinsics(K, (h, w), (size[1], size[0]))
        return small, K, np.array([w / size[0], h / size[1]], np.float32)

    def _track(self, grey, pose, K, stats) -> None:
        """LK from the last frame into this one with a forward-backward check; the tracks'
        window slides by one frame (lost tracks are dropped)."""
        import cv2

        prev = self._obs[:, -1].astype(np.float64)                        # [N, 2]
        guess = predict_pixels(prev, self._X, self._poses[-1], self._Ks[-1], pose, K)
        prev = np.ascontiguousarray(prev.reshape(-1, 1, 2), dtype=np.float32)
        guess = np.ascontiguousarray(guess.reshape(-1, 1, 2), dtype=np.float32)
        win = (self.window_px, self.window_px)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03)
        flags = cv2.OPTFLOW_USE_INITIAL_FLOW
        # (with an initial flow OpenCV writes the result into the guess: give it a copy)
        cur, ok, _ = cv2.calcOpticalFlowPyrLK(self._prev_grey, grey, prev, guess.copy(),
                                              winSize=win, maxLevel=self.levels,
                                              criteria=criteria, flags=flags)
        # back from where it went, started as far off the truth as the way there was
        back_guess = np.ascontiguousarray(prev - (cur - guess), dtype=np.float32)
        back, ok_back, _ = cv2.calcOpticalFlowPyrLK(grey, self._prev_grey, cur, back_guess,
                                                    winSize=win, maxLevel=self.levels,
                                                    criteria=criteria, flags=flags)
        cur, back = cur.reshape(-1, 2), back.reshape(-1, 2)
        fb = np.linalg.norm(back - prev.reshape(-1, 2), axis=1)
        h, w = grey.shape
        inside = ((cur[:, 0] >= 0) & (cur[:, 0] <= w - 1) & (cur[:, 1] >= 0)
                  & (cur[:, 1] <= h - 1))
        keep = ok.ravel().astype(bool) & ok_back.ravel().astype(bool) & inside
        keep &= np.isfinite(fb) & (fb <= self.fb_max_px)
        stats['rejected']['fb-check'] = int((~keep).sum())
        self._obs = np.concatenate([self._obs[keep, 1:], cur[keep, None]], axis=1)
        self._X = self._X[keep]
        stats['tracked'] = int(keep.sum())

    def _triangulate(self, stats) -> MotionPoints:
        """Points of the tracks seen in `min_views` frames or more that pass the gates; tracks
        that fail the reprojection gate are dropped (their slot goes to a new corner)."""
        obs = self._obs
        if not len(obs):
            return _empty({})
        seen = np.isfinite(obs[..., 0])                                   # [N, F]
        multi = seen.sum(axis=1) >= self.min_views
        rays = world_rays(obs, self._poses, self._Ks)                     # [N, F, 3]
        wide = multi & (parallax_deg(rays, seen) >= self.min_parallax_deg)
        stats['rejected']['parallax'] = int((multi & ~wide).sum())
        idx = np.flatnonzero(wide)
        if not len(idx):
            return _empty({})
        w = seen[idx].astype(np.float64)                                  # [M, F]
        X = midpoint(rays[idx], w, self._poses[:, :3, 3])                 # [M, 3]
        X, H, residual = refine_points(X, obs[idx], w, self._poses, self._Ks)
        solved = np.isfinite(X).all(axis=1)   # (near-parallel rays left no single point)
        X = np.where(solved[:, None], X, 0.0)
        # depth in every view (cheirality) and reprojection error
        local = to_cameras(X, self._poses)                                # [M, F, 3]
        in_front = solved & np.where(w > 0, local[..., 2] > self.min_depth_m, True).all(axis=1)
        residual = np.where((w > 0) & solved[:, None], residual, 0.0)
        fits = np.sqrt(residual.max(axis=1)) <= self.max_reprojection_px
        # pixel noise: the assumed tracking noise, or the residual's where it is larger
        dof = np.maximum(2 * w.sum(axis=1) - 3, 1)
        noise = np.maximum(self.pixel_sigma_px ** 2, residual.sum(axis=1) / dof)
        H = np.where(solved[:, None, None], H, np.eye(3))
        z = local[:, -1, 2]
        sigma_log = log_depth_sigma(H, noise, z, self._poses[-1])
        certain = np.isfinite(sigma_log) & (sigma_log <= self.max_sigma_log)
        rejected = stats['rejected']
        rejected['cheirality'] = int((~in_front).sum())
        rejected['reprojection'] = int((in_front & ~fits).sum())
        rejected['uncertainty'] = int((in_front & fits & ~certain).sum())
        good = in_front & fits & certain
        # a track whose rays do not meet is not one point (an occlusion edge, a mismatch)
        drop = np.zeros(len(obs), bool)
        drop[idx[in_front & ~fits]] = True
        self._X = np.full((len(obs), 3), np.nan)
        self._X[idx[in_front & fits]] = X[in_front & fits]
        self._obs, self._X = obs[~drop], self._X[~drop]
        stats['triangulated'] = int(good.sum())
        return MotionPoints(obs[idx[good], -1].astype(np.float32), z[good].astype(np.float32),
                            sigma_log[good].astype(np.float32))

    def _replenish(self, grey, stats) -> None:
        """New corners where the tracks thinned out, away from the tracked ones."""
        import cv2

        missing = self.max_features - len(self._obs)
        if missing < max(1, self.max_features // 10) and len(self._obs):
            return
        h, w = grey.shape
        min_dist = (self.min_distance_px if self.min_distance_px is not None
                    else max(5.0, w / 64.0))
        # corners are found on an image at most `detect_width` wide (the cost of the search
        # grows with the pixels; the tracker refines each corner at full resolution)
        step = max(1, int(w // self.detect_width))
        small = grey if step == 1 else cv2.resize(grey, (w // step, h // step),
                                                  interpolation=cv2.INTER_AREA)
        mask = np.full(small.shape, 255, np.uint8)
        radius = max(1, int(round(min_dist / step)))
        centres = np.rint((self._obs[:, -1] + 0.5) / step - 0.5).astype(int).tolist()
        for u, v in centres:
            cv2.circle(mask, (u, v), radius, 0, -1)
        corners = cv2.goodFeaturesToTrack(small, 2 * missing, self.quality, min_dist / step,
                                          mask=mask, blockSize=3)
        if corners is None or not len(corners):
            return
        corners = corners.reshape(-1, 2)
        # a point on a straight edge slides along it: where the edge runs along the direction
        # of the parallax its depth is wrong and every view agrees with it. Keep corners whose
        # gradients turn in both directions over the tracking window.
        window = max(3, self.window_px // step) | 1
        corners = corners[corner_isotropy(small, corners, window) >= self.min_isotropy]
        corners = ((corners[:missing] + 0.5) * step - 0.5).astype(np.float32)
        if not len(corners):
            return
        fresh = np.full((len(corners), self.frames, 2), np.nan, np.float32)
        fresh[:, -1] = corners
        self._obs = np.concatenate([self._obs, fresh])
        self._X = np.concatenate([self._X, np.full((len(fresh), 3), np.nan)])
        stats['new'] = len(corners)


def corner_isotropy(grey: np.ndarray, uv: np.ndarray, window: int) -> np.ndarray:
    """lambda_min / lambda_max of the structure tensor over a `window` square around each
    pixel uv [N, 2] of `grey`: 1 for a corner, near 0 on a straight edge. [N] float64."""
    import cv2

    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    h, w = grey.shape
    col = np.clip(np.rint(uv[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.rint(uv[:, 1]).astype(int), 0, h - 1)
    size = (window, window)
    a = cv2.boxFilter(gx * gx, -1, size)[row, col].astype(np.float64)
    b = cv2.boxFilter(gx * gy, -1, size)[row, col].astype(np.float64)
    c = cv2.boxFilter(gy * gy, -1, size)[row, col].astype(np.float64)
    mean, root = 0.5 * (a + c), np.sqrt(0.25 * (a - c) ** 2 + b * b)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.nan_to_num((mean - root) / (mean + root))


def sparse_depth_image(points: MotionPoints, shape_hw: tuple, image_hw: tuple | None = None,
                       values: str = 'depth_m') -> np.ndarray:
    """float32 (H, W) of `shape_hw` with each point's `values` ('depth_m' or 'sigma_log') at its
    pixel, NaN elsewhere; where points share a pixel the nearest wins.

    `image_hw` is the size of the image the points were tracked in (default `shape_hw`): their
    pixels are scaled to `shape_hw` (pixel centres at integer coordinates).
    """
    if values not in ('depth_m', 'sigma_log'):
        raise ValueError(f"`values` must be 'depth_m' or 'sigma_log', got {values!r}.")
    h, w = (int(s) for s in shape_hw)
    src_h, src_w = (int(s) for s in (image_hw if image_hw is not None else (h, w)))
    out = np.full((h, w), np.nan, np.float32)
    if not len(points.depth_m):
        return out
    u = (points.uv[:, 0].astype(np.float64) + 0.5) * (w / src_w) - 0.5
    v = (points.uv[:, 1].astype(np.float64) + 0.5) * (h / src_h) - 0.5
    col, row = np.floor(u + 0.5).astype(np.int64), np.floor(v + 0.5).astype(np.int64)
    depth = points.depth_m
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h) & np.isfinite(depth)
    order = np.argsort(-depth[inside], kind='stable')  # far first: the nearest is written last
    row, col = row[inside][order], col[inside][order]
    out[row, col] = getattr(points, values)[inside][order]
    return out


def tracking_benchmark(height: int = 480, width: int = 640, frames: int = 24, seed: int = 1000,
                       kind: str = 'indoor', motion: str = 'sideways') -> dict:
    """Cost of FeatureTracks.update on a procedural trajectory (render_trajectory) of
    height x width frames at 10 Hz: `ms_median`, `ms_p90` (wall), `cpu_ms_median` (this
    process's CPU time) over the frames after the first, `points_per_frame`, and
    `baseline_klt_ms_median`: plain KLT on the same frames in the same run (a corner search and
    one forward Lucas-Kanade of as many corners with the same window), the cost any KLT
    tracker pays. OpenCV's
    thread count is left as the caller set it (the node leaves OpenCV's default)."""
    import cv2

    from ..data.trajectory import render_trajectory

    seq = render_trajectory(seed, height, width, kind=kind, frames=frames, motion=motion)
    greys = [cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) for rgb in seq['rgb']]
    tracker = FeatureTracks()
    ms, cpu_ms, counts, baseline_ms = [], [], [], []
    corners = None
    for i, grey in enumerate(greys):
        start = time.process_time()
        pts = tracker.update(grey, seq['poses'][i], seq['K'], round(seq['timestamps'][i] * 1e9))
        cpu_ms.append((time.process_time() - start) * 1e3)
        ms.append(pts.stats['ms'])
        counts.append(len(pts))
        # the baseline, on the same frames: plain KLT (one corner search, one forward flow)
        start = time.perf_counter()
        if corners is not None and len(corners):
            window = (tracker.window_px, tracker.window_px)
            cv2.calcOpticalFlowPyrLK(greys[i - 1], grey, corners, None, winSize=window,
                                     maxLevel=tracker.levels)
        corners = cv2.goodFeaturesToTrack(grey, tracker.max_features, 0.01, width / 64.0)
        baseline_ms.append((time.perf_counter() - start) * 1e3)
    return {'size': f'{width}x{height}', 'frames': frames, 'cv2_threads': cv2.getNumThreads(),
            'ms_median': float(np.median(ms[1:])), 'ms_p90': float(np.percentile(ms[1:], 90)),
            'cpu_ms_median': float(np.median(cpu_ms[1:])),
            'baseline_klt_ms_median': float(np.median(baseline_ms[1:])),
            'points_per_frame': float(np.mean(counts[1:]))}
