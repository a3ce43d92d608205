"""sensor_msgs/CameraInfo <-> the pinhole model of the image actually sent, and back.

`CameraModel` is what the node, the offline bag writer and the clouds need of a camera; the
rules for binning, ROI and the depth image's CameraInfo follow the sensor_msgs/CameraInfo docs
and image_proc's resize.
"""
from __future__ import annotations

import numpy as np

from . import BadInput
from ..camera.geometry import CameraModel, intrinsics_from_hfov


def check_camera_size(camera: CameraModel, height: int, width: int) -> None:
    """BadInput `camera_info_size` unless `camera` describes a (height, width) image."""
    if (camera.height, camera.width) != (height, width):
        raise BadInput('camera_info_size', f'camera_info describes a {camera.width}x'
                       f'{camera.height} image, the image is {width}x{height}')


def camera_model_from_info(info, matrix: str = 'p') -> CameraModel:
    """CameraInfo -> CameraModel of the published image, from P (or K when P is unset).

    `matrix='k'` reads K instead. Binning and ROI are applied (sensor_msgs/CameraInfo docs):
    the model describes the image that is actually sent.
    """
    width, height = int(info.width), int(info.height)
    binning_x, binning_y = max(1, int(info.binning_x)), max(1, int(info.binning_y))
    roi = info.roi
    has_roi = bool(roi.width and roi.height)
    if has_roi:
        width, height = int(roi.width), int(roi.height)
    width, height = width // binning_x, height // binning_y
    if width <= 0 or height <= 0:
        raise BadInput('camera_info', f'camera_info has image size {info.width}x{info.height}')
    P = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if matrix == 'p' and P[0, 0] > 0 and P[1, 1] > 0:
        fx, fy, cx, cy = P[0, 0], P[1, 1], P[0, 2], P[1, 2]
    else:
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    values = np.array([fx, fy, cx, cy])
    if not (np.isfinite(values).all() and fx > 0 and fy > 0):
        raise BadInput('camera_info', f'camera_info has no usable focal length (P and K give '
                       f'fx={fx}, fy={fy})')
    if has_roi:
        cx, cy = cx - roi.x_offset, cy - roi.y_offset
    return CameraModel(width, height, fx / binning_x, fy / binning_y,
                       (cx + 0.5) / binning_x - 0.5, (cy + 0.5) / binning_y - 0.5)


def depth_camera_info_fields(source, camera: CameraModel) -> dict:
    """CameraInfo fields of a depth image of `camera`'s size made from the input's `source`.

    Like image_proc's resize: distortion and R are kept (they act on normalised coordinates),
    K and P are scaled; binning and ROI are for the caller to clear, because the depth image is a
    full frame. Without a source (fallback intrinsics) the fields describe an undistorted
    pinhole. Returns width, height, distortion_model, d, r, k (9) and p (12) as plain lists.
    """
    if source is None:
        distortion_model, d = 'plumb_bob', [0.0] * 5
        r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        tx = ty = 0.0
        k_camera = camera
    else:
        distortion_model, d, r = source.distortion_model, list(source.d), list(source.r)
        source_camera = camera_model_from_info(source)
        sx, sy = camera.width / source_camera.width, camera.height / source_camera.height
        tx, ty = float(source.p[3]) * sx, float(source.p[7]) * sy
        # K describes the unrectified camera when P is the rectified one: scale each alone.
        try:
            k_camera = camera_model_from_info(source, 'k').scaled(camera.height, camera.width)
        except BadInput:
            k_camera = camera
    return {'width': int(camera.width), 'height': int(camera.height),
            'distortion_model': distortion_model, 'd': [float(v) for v in d],
            'r': [float(v) for v in r],
            'k': [k_camera.fx, 0.0, k_camera.cx, 0.0, k_camera.fy, k_camera.cy, 0.0, 0.0, 1.0],
            'p': [camera.fx, 0.0, camera.cx, tx, 0.0, camera.fy, camera.cy, ty,
                  0.0, 0.0, 1.0, 0.0]}


def fallback_camera_model(height: int, width: int, hfov_deg: float) -> CameraModel:
    """A centred pinhole with square pixels and the given horizontal field of view."""
    return CameraModel.from_K(intrinsics_from_hfov(width, height, hfov_deg), height, width)
