"""One call from an RGB image and its camera intrinsics to depth in metres.

    out = estimate_metric_depth(estimator, rgb, fx, steps=1, seed=0)
    out.depth          # float32 metres (NaN = invalid), the focal rescale applied once
    out.focal_factor   # fx' / canonical_focal_px (1.0 for checkpoints without a canonical focal)

Checkpoints trained on canonical-focal labels (`canonical_focal_px` in metricgold.json) predict
depth for that focal at the resolution the network sees; the camera's focal at that resolution
gives the metres (geometry.processing_focal_factor). The node, `metricgold infer`, `evaluate`,
`process` and the demo all come through here, so the factor is applied in exactly one place.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from .geometry import intrinsics_from_hfov, processing_focal_factor

# Horizontal field of view assumed when a caller knows nothing about the camera (the node's
# `fallback_hfov_deg` default, `metricgold infer` without --intrinsics / --hfov).
DEFAULT_FALLBACK_HFOV_DEG = 60.0


@dataclass
class MetricDepth:
    """Depth of one image after the focal rescale."""

    depth: np.ndarray                  # float32 metres (H, W), NaN where invalid
    uncertainty: np.ndarray | None     # float32 metres, or None
    prediction: object                 # the estimator's DepthPrediction (normalized, timings)
    focal_factor: float = 1.0

    @property
    def timings(self) -> dict:
        return self.prediction.timings

    @property
    def processing_hw(self) -> tuple:
        return self.prediction.processing_hw

    @property
    def steps(self) -> int:
        return self.prediction.steps


def focal_px(camera) -> float:
    """fx in pixels from a number, a 3x3 K, or an object with `.fx` (CameraModel)."""
    if hasattr(camera, 'fx'):
        return float(camera.fx)
    arr = np.asarray(camera, dtype=np.float64)
    if arr.shape == (3, 3):
        return float(abs(arr[0, 0]))
    if arr.ndim == 0:
        return float(arr)
    raise ValueError(f'expected fx (px), a 3x3 K or a camera model, got shape {arr.shape}.')


def fallback_K(height: int, width: int, hfov_deg: float = DEFAULT_FALLBACK_HFOV_DEG):
    """K of a centred pinhole with the given horizontal FOV (no intrinsics known)."""
    return intrinsics_from_hfov(width, height, hfov_deg)


def estimate_metric_depth(estimator, rgb: np.ndarray, camera, *, steps: int = 1,
                          processing_resolution: int | None = None, seed: int | None = None,
                          output_uncertainty: bool = False,
                          match_input_resolution: bool = True) -> MetricDepth:
    """Run `estimator` on uint8 RGB (H, W, 3) and return metres for the camera `camera`.

    `camera` is the focal length fx (px) of `rgb` at its own size, a 3x3 K, or a CameraModel.
    The factor is fx at the processing width / the checkpoint's canonical focal (1.0 when the
    checkpoint has none).
    """
    height, width = rgb.shape[:2]
    fx = focal_px(camera)
    if not (math.isfinite(fx) and fx > 0):
        raise ValueError(f'fx must be a finite focal length > 0 px, got {fx}.')
    pred = estimator(rgb, steps=steps, processing_resolution=processing_resolution, seed=seed,
                     output_uncertainty=output_uncertainty,
                     match_input_resolution=match_input_resolution)
    factor = processing_focal_factor(fx, width, pred.processing_hw[1],
                                     estimator.model.canonical_focal_px)
    depth, uncertainty = pred.depth, pred.uncertainty
    if factor != 1.0:
        depth = (depth * np.float32(factor)).astype(np.float32)
        if uncertainty is not None:
            uncertainty = (uncertainty * np.float32(factor)).astype(np.float32)
    return MetricDepth(depth=depth, uncertainty=uncertainty, prediction=pred,
                       focal_factor=float(factor))
