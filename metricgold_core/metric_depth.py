"""One call from an RGB image and its camera intrinsics to depth in metres.

    out = estimate_metric_depth(estimator, rgb, camera, steps=1, seed=0, anchor=anchor)
    out.depth          # float32 metres (NaN = invalid), the focal rescale applied once
    out.camera         # CameraModel of the depth image (its size may differ from the input's)
    out.focal_factor   # fx' / canonical_focal_px (1.0 for checkpoints without a canonical focal)

Checkpoints trained on canonical-focal labels (`canonical_focal_px` in metricgold.json) predict
depth for that focal at the resolution the network sees; the camera's focal at that resolution
gives the metres (geometry.processing_focal_factor). The node, `metricgold infer`, `evaluate`,
`process` and the demo all come through here, so the factor is applied in exactly one place.
"""
from __future__ import annotations

from dataclasses import dataclass
import logging
import math

import numpy as np

from .geometry import as_camera, processing_focal_factor

LOG = logging.getLogger(__name__)


@dataclass
class MetricDepth:
    """Depth of one image after the focal rescale."""

    depth: np.ndarray                  # float32 metres (H, W), NaN where invalid
    uncertainty: np.ndarray | None     # float32 metres, or None
    prediction: object                 # the estimator's DepthPrediction (normalized, timings)
    focal_factor: float = 1.0
    relative: bool = False             # True: `depth` is unitless relative depth, not metres
    fit: object = None                 # this frame's scale.ScaleFit (None: no scale source)
    scale: float = 1.0                 # depth = scale * model output (+ shift)
    shift: float = 0.0
    camera: object = None              # geometry.CameraModel of the depth image

    @property
    def timings(self) -> dict:
        return self.prediction.timings

    @property
    def processing_hw(self) -> tuple:
        return self.prediction.processing_hw

    @property
    def steps(self) -> int:
        return self.prediction.steps


def load_estimator(checkpoint=None, device: str = 'auto', dtype: str = 'auto',
                   mode: str = 'exact', **options):
    """The one way from a checkpoint to a ready DepthEstimator: the checkpoint directory (None
    or '' = the packaged default model), loaded, with one warning when its weights are untrained.

    `options`: DepthEstimator's other keywords (compile_mode, channels_last, ...).

    Raises CheckpointError / OSError / ValueError with a message a user can act on.
    """
    from .model import load_default_or
    from .pipeline import DepthEstimator

    model = load_default_or(checkpoint or None)
    if model.meta.get('untrained'):
        LOG.warning(
            'this checkpoint is UNTRAINED (random weights): its depth is meaningless; it only '
            'exercises the pipeline.')
    return DepthEstimator(model, device=device, dtype=dtype, mode=mode, **options)


def anchor_frame(anchor, depth: np.ndarray, camera, measurement, rgb: np.ndarray,
                 scale_filter=None) -> tuple:
    """(fit, scale, shift) of one frame's depth from `anchor` and its `measurement`, through
    `scale_filter` when given: fit None without a measurement (a late or lost sparse image),
    when the filter's last good scale is kept; scale None until there is a good fit (the
    model's own scale stays). Step 4 of estimate_metric_depth, also for callers that apply
    several anchors to one prediction (scripts/odometry_scale_bench.py)."""
    fit = anchor.fit(depth, camera, measurement, rgb,
                     None if scale_filter is None else scale_filter.scale)
    if fit is None:
        if scale_filter is None:
            return None, None, 0.0
        return None, scale_filter.scale, scale_filter.shift
    if scale_filter is not None:
        s = scale_filter.update(fit)
        return fit, s, scale_filter.shift
    return (fit, fit.scale, fit.shift) if fit.ok else (fit, None, 0.0)


def estimate_metric_depth(estimator, rgb: np.ndarray, camera, *, steps: int = 1,
                          processing_resolution: int | None = None, seed: int | None = None,
                          output_uncertainty: bool = False,
                          match_input_resolution: bool = True, anchor=None, measurement=None,
                          sparse_m: np.ndarray | None = None,
                          camera_height_m: float | None = None, ground_max_tilt_deg: float = 15.0,
                          scale_filter=None) -> MetricDepth:
    """Run `estimator` on uint8 RGB (H, W, 3) and return metres for the camera `camera`.

    `camera` is a CameraModel of `rgb` (or its 3x3 K, or its focal length fx in px); the
    result's `camera` is the depth image's. The focal factor is fx at the processing width /
    the checkpoint's canonical focal (1.0 when the checkpoint has none).

    Scale: `anchor` (a scale.ScaleAnchor, resolved against this model) with this frame's
    `measurement` (sparse_depth: sparse metres on any grid; odometry: a scale.Motion). The
    shorthands `sparse_m` / `camera_height_m` build the anchor here. `scale_filter` (a
    scale.ScaleFilter) carries the scale across frames; without a good fit the last good scale
    is kept. Affine-invariant checkpoints give their linear [0, 1] output (near = 0) and
    `relative=True` until a sparse fit anchors them.
    """
    from .scale import ScaleAnchor

    # 1. Check the inputs
    height, width = rgb.shape[:2]
    camera = as_camera(camera, height, width)
    fx = camera.fx
    if not (math.isfinite(fx) and fx > 0):
        raise ValueError(f'fx must be a finite focal length > 0 px, got {fx}.')
    relative = estimator.model.is_relative
    if anchor is None:
        if sparse_m is not None and camera_height_m is not None:
            raise ValueError('give one scale anchor: sparse_m or camera_height_m, not both.')
        source = 'sparse_depth' if sparse_m is not None else \
            'ground_plane' if camera_height_m is not None else 'none'
        anchor = ScaleAnchor.resolve(estimator.model, source, camera_height_m=camera_height_m,
                                     ground_max_tilt_deg=ground_max_tilt_deg)
        measurement = sparse_m
    elif sparse_m is not None or camera_height_m is not None:
        raise ValueError('give the scale anchor once: `anchor` or sparse_m / camera_height_m.')

    # 2. The network's depth (metres at the canonical focal, or relative [0, 1])
    pred = estimator(rgb, steps=steps, processing_resolution=processing_resolution, seed=seed,
                     output_uncertainty=output_uncertainty,
                     match_input_resolution=match_input_resolution)
    # 3. The camera's metres: the focal rescale, here and nowhere else
    if relative:
        factor = 1.0
        depth = np.asarray(pred.normalized, dtype=np.float32)
        uncertainty = None
    else:
        factor = processing_focal_factor(fx, width, pred.processing_hw[1],
                                         estimator.model.canonical_focal_px)
        depth, uncertainty = pred.depth, pred.uncertainty
        if factor != 1.0:
            depth = (depth * np.float32(factor)).astype(np.float32)
            if uncertainty is not None:
                uncertainty = (uncertainty * np.float32(factor)).astype(np.float32)
    depth_camera = as_camera(camera, *depth.shape)
    out = MetricDepth(depth=depth, uncertainty=uncertainty, prediction=pred,
                      focal_factor=float(factor), relative=relative, camera=depth_camera)

    # 4. The scale anchor of this frame (or the filter's last good scale)
    fit, s, t = anchor_frame(anchor, depth, depth_camera, measurement, rgb, scale_filter)
    if fit is not None:
        out.fit = fit
    if s is None:   # no good fit yet: the model's own scale (relative stays relative)
        return out
    out.scale, out.shift, out.relative = float(s), float(t), False
    out.depth = (depth * np.float32(s) + np.float32(t)).astype(np.float32)
    if uncertainty is not None:
        out.uncertainty = (uncertainty * np.float32(s)).astype(np.float32)
    return out
