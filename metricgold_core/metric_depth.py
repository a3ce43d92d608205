"""One call from an RGB image and its camera intrinsics to depth in metres.

    out = estimate_metric_depth(estimator, rgb, camera, steps=1, seed=0, session=session)
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

from .camera.geometry import as_camera, processing_focal_factor

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
    local: object = None               # scale.local.LocalCorrection tried on this frame, or None
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
    from .model.network import load_default_or
    from .model.pipeline import DepthEstimator

    model = load_default_or(checkpoint or None)
    if model.meta.get('untrained'):
        LOG.warning(
            'this checkpoint is UNTRAINED (random weights): its depth is meaningless; it only '
            'exercises the pipeline.')
    return DepthEstimator(model, device=device, dtype=dtype, mode=mode, **options)


def estimate_metric_depth(estimator, rgb: np.ndarray, camera, *, steps: int = 1,
                          processing_resolution: int | None = None, seed: int | None = None,
                          output_uncertainty: bool = False,
                          match_input_resolution: bool = True, session=None, measurement=None,
                          sparse_m: np.ndarray | None = None,
                          camera_height_m: float | None = None,
                          ground_max_tilt_deg: float | None = None) -> MetricDepth:
    """Run `estimator` on uint8 RGB (H, W, 3) and return metres for the camera `camera`.

    `camera` is a CameraModel of `rgb` (or its 3x3 K, or its focal length fx in px); the
    result's `camera` is the depth image's. The focal factor is fx at the processing width /
    the checkpoint's canonical focal (1.0 when the checkpoint has none).

    Scale: `session` (a scale.ScaleSession: the run's anchor, filter and correction level)
    with this frame's `measurement` (sparse_depth: sparse metres on any grid; odometry:
    session.motion(pose, stamp)). The shorthands `sparse_m` / `camera_height_m` build a
    one-frame session here. Without a good fit the session's last good scale is kept.
    Affine-invariant checkpoints give their linear [0, 1] output (near = 0) and `relative=True`
    until a sparse fit anchors them.
    """
    from .scale import GROUND_MAX_TILT_DEG, ScaleAnchor, ScaleSession

    # 1. Check the inputs
    height, width = rgb.shape[:2]
    camera = as_camera(camera, height, width)
    fx = camera.fx
    if not (math.isfinite(fx) and fx > 0):
        raise ValueError(f'fx must be a finite focal length > 0 px, got {fx}.')
    relative = estimator.model.is_relative
    if session is None:
        if sparse_m is not None and camera_height_m is not None:
            raise ValueError('give one scale anchor: sparse_m or camera_height_m, not both.')
        source = 'sparse_depth' if sparse_m is not None else \
            'ground_plane' if camera_height_m is not None else 'none'
        anchor = ScaleAnchor.resolve(
            estimator.model, source, camera_height_m=camera_height_m,
            ground_max_tilt_deg=GROUND_MAX_TILT_DEG if ground_max_tilt_deg is None
            else ground_max_tilt_deg)
        session = ScaleSession(anchor, carry=False)
        measurement = sparse_m
    elif sparse_m is not None or camera_height_m is not None:
        raise ValueError('give the scale anchor once: `session` or sparse_m / camera_height_m.')

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

    # 4. The scale anchor of this frame (or the session's last good scale)
    scaled = session.apply(depth, depth_camera, measurement, rgb, uncertainty, relative)
    out.fit, out.local = scaled.fit, scaled.local
    out.depth, out.uncertainty, out.relative = scaled.depth, scaled.uncertainty, scaled.relative
    out.scale, out.shift = scaled.scale, scaled.shift
    return out
