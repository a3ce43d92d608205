"""The scale source of a run, resolved against the model once (ScaleAnchor)."""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from .fit import fit_sparse, ScaleFilter, ScaleFit
from .ground import fit_ground_plane, GROUND_MAX_TILT_DEG

SOURCES = ('none', 'sparse_depth', 'ground_plane', 'odometry')
METRIC_ONLY = ('ground_plane',)   # a scale-only fit: a relative model has a shift too
MIN_MOTION_POINTS = 30      # triangulated points a frame needs for a fit from them
MIN_RELATIVE_SPAN = math.log(1.5)  # ... and, for a relative model's shift, this log-depth span


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
    ground_max_tilt_deg: float = GROUND_MAX_TILT_DEG
    smoothing: float = 0.0
    problem: str = ''

    @classmethod
    def resolve(cls, model, source: str = 'none', *, camera_height_m: float | None = None,
                ground_max_tilt_deg: float = GROUND_MAX_TILT_DEG, smoothing: float = 0.0,
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

    def waiting(self, scale: float | None, relative: bool = False) -> bool:
        """True while a frame's metric depth is still at the model's own scale although a
        source is set: no good fit has given a `scale` yet (a source that cannot work here
        never fits). wait_for_scale holds such frames back; `relative` output (unitless, on its
        own topic) is never held."""
        return self.source != 'none' and not relative and scale is None

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
        return self._fit_motion(depth, camera, measurement, rgb, prior_scale)

    def _fit_motion(self, depth, camera, motion, rgb, prior_scale) -> ScaleFit:
        """odometry: a metric model's scale from the photometric fit, or, where it fails, from
        the points triangulated with the poses; a relative model's scale and shift from the
        points only, when they pass the gates (enough of them over a range of depths), else no
        fit (no metres, and why). The points also feed the local correction (ScaleSession)."""
        if not self.relative_model:
            fit = motion.fit(depth, camera, rgb, prior_scale)
            fit.method = 'photometric'
            if fit.ok:
                return fit
            points_fit, _ = self._fit_points(depth, motion.points)
            return fit if points_fit is None else points_fit
        motion.record(depth.shape, rgb)
        points_fit, why = self._fit_points(depth, motion.points)
        if points_fit is not None:
            return points_fit
        points = motion.points
        return ScaleFit(points=0 if points is None else int(np.isfinite(points).sum()),
                        reason=why, reject='points', method='points')

    def _fit_points(self, depth, points) -> tuple:
        """(the fit of the triangulated points or None, why not)."""
        if points is None:
            return None, 'no points triangulated from the motion yet'
        z = points[np.isfinite(points)]
        span = float(np.log(z.max() / z.min())) if z.size and z.min() > 0 else 0.0
        if z.size < MIN_MOTION_POINTS:
            return None, f'{z.size} points triangulated from the motion (< {MIN_MOTION_POINTS})'
        if self.relative_model and span < MIN_RELATIVE_SPAN:
            return None, (f'the triangulated points span depths of x{math.exp(span):.2f} only '
                          f'(< x{math.exp(MIN_RELATIVE_SPAN):.1f}): no shift from them')
        fit = fit_sparse(depth, points, relative=self.relative_model,
                         min_points=MIN_MOTION_POINTS)
        fit.method = 'points'
        if not fit.ok:
            return None, f'the fit of the triangulated points failed: {fit.reason}'
        return fit, ''
