"""A run's scale state in one object: the node and every CLI build one and pass it each frame.

    session = ScaleSession(anchor, correction='local', wait_for_scale=True)
    motion = session.motion(pose_4x4, stamp_ns)             # odometry: this frame's measurement
    scaled = session.apply(depth_m, camera, measurement, rgb)   # fit, filter, local correction
    scaled.depth, scaled.uncertainty, scaled.fit, scaled.local, scaled.scale, scaled.shift
    session.holding(scaled.relative)                        # wait_for_scale: hold this frame back

The anchor (which source, whether the model allows it) is resolved once; the session adds what
carries from frame to frame: the scale filter, the odometry history, and the wait rule. The
correction level is `global` (one scale, or scale + shift, per frame, filtered over time) or
`local` (on top of the global fit, the metric points of the frame bend the depth where they are:
scale.local). Local falls back to global when a frame has too few points (`scaled.local.reason`).
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from .anchor import ScaleAnchor
from .local import correct_locally, LocalCorrection
from .motion import Motion, MotionHistory
from .sparse import register_to

CORRECTIONS = ('global', 'local')
# Sources that give metric points for a local correction (ground_plane gives a plane only).
POINT_SOURCES = ('sparse_depth', 'odometry')


@dataclass
class Scaled:
    """One frame's depth after its scale anchor."""

    depth: np.ndarray                  # float32 metres (or relative while unanchored)
    uncertainty: np.ndarray | None     # float32 metres, 1 sigma, or None
    relative: bool                     # True: still unitless relative depth
    fit: object = None                 # this frame's ScaleFit (None: nothing to fit)
    scale: float = 1.0
    shift: float = 0.0
    local: LocalCorrection | None = None   # the local correction tried on this frame


class ScaleSession:
    """The scale state of one stream of frames (a node, one `process` or `infer` run)."""

    def __init__(self, anchor: ScaleAnchor, correction: str = 'global',
                 wait_for_scale: bool = False, carry: bool = True, triangulate: bool = True):
        """carry: keep the scale from frame to frame (a filter); False fits every frame on its
        own (independent images). triangulate: odometry tracks and triangulates points (False:
        the photometric fit alone, as before points from motion existed)."""
        if correction not in CORRECTIONS:
            raise ValueError(f'`correction` must be one of {", ".join(CORRECTIONS)}, got '
                             f'{correction!r}.')
        self.anchor = anchor
        self.correction = correction
        self.wait_for_scale = bool(wait_for_scale)
        self.filter = anchor.new_filter() if carry else None
        self.history = MotionHistory()
        self.triangulate = bool(triangulate)
        self.tracks = None             # odometry: triangulation.FeatureTracks, made on first use
        self.held = 0                  # frames holding() kept back
        self._last_scale = None        # without a filter: this frame's good scale, or None

    @property
    def note(self) -> str:
        """'' or why the output is not anchored metres, or why local correction cannot apply."""
        if self.anchor.note:
            return self.anchor.note
        if self.correction == 'local' and self.anchor.source not in POINT_SOURCES + ('none',):
            return (f'local correction needs metric points; the {self.anchor.source} source '
                    'gives none: global scale only')
        return ''

    def motion(self, pose, stamp_ns: int) -> Motion:
        """The odometry measurement of a frame with this camera pose (None: none known)."""
        return Motion(pose, stamp_ns, self.history)

    def waiting(self, relative: bool = False) -> bool:
        """True while no good fit has anchored the stream although a source is set."""
        scale = self._last_scale if self.filter is None else self.filter.scale
        return self.anchor.waiting(scale, relative)

    def holding(self, relative: bool = False) -> bool:
        """True when this frame must be held back (wait_for_scale and still waiting); counted."""
        hold = self.wait_for_scale and self.waiting(relative)
        self.held += int(hold)
        return hold

    def apply(self, depth: np.ndarray, camera, measurement=None, rgb=None,
              uncertainty: np.ndarray | None = None, relative: bool = False) -> Scaled:
        """This frame's anchored depth. `depth`: the model's (metres at its own scale, or
        relative); `measurement`: sparse metres on any grid (sparse_depth) or a Motion
        (odometry); `uncertainty`: the model's own (metres), scaled along."""
        if isinstance(measurement, Motion) and self.anchor.active and self.triangulate:
            self._triangulate(measurement, rgb, camera, depth.shape)
        prior = None if self.filter is None else self.filter.scale
        fit = self.anchor.fit(depth, camera, measurement, rgb, prior)
        accepted = fit is not None and fit.ok
        if self.filter is not None:
            rejected = self.filter.rejected
            s = self.filter.update(fit) if fit is not None else self.filter.scale
            t = self.filter.shift
            accepted = accepted and self.filter.rejected == rejected
        else:
            s, t = (fit.scale, fit.shift) if fit is not None and fit.ok else (None, 0.0)
            self._last_scale = s
        out = Scaled(depth=depth, uncertainty=uncertainty, relative=relative, fit=fit)
        if s is None:     # no good fit yet: the model's own scale (relative stays relative)
            return out
        out.scale, out.shift, out.relative = float(s), float(t), False
        out.depth = (depth * np.float32(s) + np.float32(t)).astype(np.float32)
        if uncertainty is not None:
            out.uncertainty = (uncertainty * np.float32(s)).astype(np.float32)
        if self.correction == 'local':
            # A frame whose own fit the filter turned down (an outlier frame) does not bend the
            # depth either: its points are what the filter distrusts.
            points = self._points(measurement, out.depth.shape) if accepted else None
            if points is not None:
                prior_sigma = fit.residual if fit is not None and fit.ok else None
                out.local = correct_locally(out.depth, points, rgb,
                                            prior_sigma_log=_finite_or_none(prior_sigma),
                                            sigma_log=getattr(measurement, 'points_sigma', None))
                if out.local.ok:
                    out.depth = out.local.depth
                    out.uncertainty = _combined(out.local.uncertainty, out.uncertainty)
        return out

    def _triangulate(self, motion: Motion, rgb, camera, shape_hw: tuple) -> None:
        """motion.points: this frame's points triangulated from the features tracked over the
        last frames with the odometry poses (sparse metres on the depth grid), or None."""
        if rgb is None or camera is None:
            return
        from .triangulation import FeatureTracks, sparse_depth_image

        if self.tracks is None:
            self.tracks = FeatureTracks()
        if motion.pose is None:       # no pose for this frame: the tracks cannot go on
            self.tracks.reset()
            motion.point_stats = {'reset': 'no pose'}
            return
        import cv2

        rgb = np.asarray(rgb)
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if rgb.ndim == 3 else rgb
        image_hw = grey.shape[:2]
        K = camera.K if tuple(shape_hw) == tuple(image_hw) else camera.scaled(*image_hw).K
        points = self.tracks.update(grey, motion.pose, K, motion.stamp_ns)
        motion.point_stats = points.stats
        motion.points = sparse_depth_image(points, shape_hw, image_hw) if len(points) else None
        motion.points_sigma = None if motion.points is None else sparse_depth_image(
            points, shape_hw, image_hw, values='sigma_log')

    def _points(self, measurement, shape_hw: tuple):
        """The frame's metric points as a sparse image on the depth grid, or None."""
        if measurement is None:
            return None
        if self.anchor.source == 'sparse_depth':
            return register_to(np.asarray(measurement, np.float32), shape_hw)
        return getattr(measurement, 'points', None)    # odometry: triangulated points


def _finite_or_none(x):
    return x if x is not None and math.isfinite(x) else None


def _combined(local: np.ndarray, model: np.ndarray | None) -> np.ndarray:
    """The local correction's uncertainty with the model's own (independent: in quadrature)."""
    if model is None or model.shape != local.shape:
        return local
    return np.sqrt(local * local + model * model).astype(np.float32)
