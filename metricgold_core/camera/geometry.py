"""Pinhole camera geometry: intrinsics, scaling, rays and back-projection.

Conventions: K is a 3x3 float64 matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels with the
pixel centre of (u, v) at integer coordinates (the ROS / OpenCV convention). Depth is z-depth in
metres along the optical axis.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

# Horizontal field of view assumed when nothing is known about the camera: the node's
# `fallback_hfov_deg` default and `infer` / `process` without intrinsics.
DEFAULT_FALLBACK_HFOV_DEG = 60.0


def make_K(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """3x3 intrinsics matrix from focal lengths and principal point (pixels)."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def intrinsics_from_hfov(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """K for a centred pinhole camera with square pixels and the given horizontal FOV."""
    if not 0.0 < hfov_deg < 180.0:
        raise ValueError(f'`hfov_deg` must be in (0, 180), got {hfov_deg}.')
    fx = 0.5 * width / math.tan(math.radians(hfov_deg) * 0.5)
    return make_K(fx, fx, (width - 1) * 0.5, (height - 1) * 0.5)


def scale_intrinsics(K: np.ndarray, src_hw: tuple[int, int],
                     dst_hw: tuple[int, int]) -> np.ndarray:
    """K of an image of size src_hw resized to dst_hw (pixel-centre convention)."""
    sy = dst_hw[0] / src_hw[0]
    sx = dst_hw[1] / src_hw[1]
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 0] *= sx
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1] *= sy
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def crop_intrinsics(K: np.ndarray, top: int, left: int) -> np.ndarray:
    """K of a crop whose top-left corner is at (top, left) in the source image."""
    K = np.array(K, dtype=np.float64, copy=True)
    K[0, 2] -= left
    K[1, 2] -= top
    return K


@dataclass(frozen=True)
class CameraModel:
    """The one camera type: image size and the pinhole parameters (P, or K) of that image.

    The node, the CLIs and the core call all describe a camera with it; `as_camera` turns an
    fx, a 3x3 K or a CameraModel into one for an image of a given size."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_K(cls, K, height: int, width: int) -> 'CameraModel':
        """The model of a (height, width) image with 3x3 intrinsics K."""
        return cls(int(width), int(height), float(K[0][0]), float(K[1][1]), float(K[0][2]),
                   float(K[1][2]))

    @property
    def K(self) -> np.ndarray:
        return make_K(self.fx, self.fy, self.cx, self.cy)

    def scaled(self, height: int, width: int) -> 'CameraModel':
        """The model of this image resized to (height, width), pixel centres at integers."""
        K = scale_intrinsics(self.K, (self.height, self.width), (height, width))
        return CameraModel.from_K(K, height, width)


def as_camera(camera, height: int, width: int) -> CameraModel:
    """The CameraModel of a (height, width) image from a CameraModel (resized to the image when
    it describes another size), a 3x3 K, or a focal length fx in px (principal point centred).
    """
    if isinstance(camera, CameraModel):
        if (camera.height, camera.width) != (height, width):
            return camera.scaled(height, width)
        return camera
    arr = np.asarray(camera, dtype=np.float64)
    if arr.shape == (3, 3):
        return CameraModel.from_K(arr, height, width)
    if arr.ndim == 0:
        fx = float(arr)
        return CameraModel(int(width), int(height), fx, fx, (width - 1) * 0.5, (height - 1) * 0.5)
    raise ValueError(f'expected fx (px), a 3x3 K or a CameraModel, got shape {arr.shape}.')


def nearest_indices(src_hw: tuple, dst_hw: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(rows (h, 1), cols (1, w)) that take an image of size src_hw to dst_hw by nearest
    neighbour: each target pixel takes the source pixel whose area covers its centre.

    `image[rows, cols]` is the resized image (no blending: colours and sparse measurements stay
    as measured).
    """
    (sh, sw), (h, w) = src_hw, dst_hw
    rows = np.minimum(((np.arange(h) + 0.5) * sh / h).astype(np.intp), sh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * sw / w).astype(np.intp), sw - 1)
    return rows[:, None], cols[None, :]


def pixel_rays(K: np.ndarray, height: int, width: int, dtype=np.float32, step: int = 1
               ) -> tuple:
    """Per-pixel ray factors (x/z, y/z), so that X = d * rx, Y = d * ry, Z = d.

    Each is a C-contiguous (h, w) array over every `step`-th row and column from pixel (0, 0)
    (full planes, not broadcast rows: measured faster in the per-frame multiplies).
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if fx == 0 or fy == 0:
        raise ValueError(f'focal lengths must be non-zero, got fx={fx}, fy={fy}.')
    if step < 1:
        raise ValueError(f'`step` must be >= 1, got {step}.')
    u = (np.arange(0, width, step, dtype=np.float64) - cx) / fx
    v = (np.arange(0, height, step, dtype=np.float64) - cy) / fy
    rx = np.broadcast_to(u[None, :].astype(dtype), (v.size, u.size)).copy()
    ry = np.broadcast_to(v[:, None].astype(dtype), (v.size, u.size)).copy()
    return rx, ry


def backproject(depth_m: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Z-depth (H, W) metres -> points (H, W, 3) in the camera frame; NaN depth gives NaN."""
    rx, ry = pixel_rays(K, depth_m.shape[0], depth_m.shape[1], dtype=np.float64)
    d = depth_m.astype(np.float64)
    return np.stack([d * rx, d * ry, d], axis=-1)


def focal_rescale_factor(fx_px: float, canonical_focal_px: float | None) -> float:
    """Factor that maps depth predicted at a canonical focal length to a camera with focal fx.

    A model trained on labels d * f_canonical / f predicts canonical depth; the camera's metric
    depth is that prediction * f / f_canonical. Returns 1.0 when no canonical focal is set.
    """
    if canonical_focal_px is None:
        return 1.0
    if not (fx_px > 0 and canonical_focal_px > 0):
        raise ValueError(f'focal lengths must be > 0 px, got fx={fx_px}, '
                         f'canonical={canonical_focal_px}.')
    return float(fx_px) / float(canonical_focal_px)


def processing_focal_factor(fx_px: float, image_width: int, processing_width: int,
                            canonical_focal_px: float | None) -> float:
    """focal_rescale_factor for a prediction made at `processing_width` (0: the image's own).

    A model trained on canonical-focal labels predicts depth for that focal at the resolution
    it processes; the camera's focal at that resolution gives the metric scale.
    """
    if canonical_focal_px is None:
        return 1.0
    scale = (processing_width or image_width) / image_width
    return focal_rescale_factor(fx_px * scale, canonical_focal_px)
