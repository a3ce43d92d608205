"""Rectification of raw (distorted) camera images, as image_proc's rectify does it. No ROS.

A camera_info's K, D, R and P describe how the raw image maps onto the rectified one (REP 104,
sensor_msgs/CameraInfo): for every rectified pixel, un-project through P, rotate by R^-1,
distort with D and project through K. OpenCV builds that lookup once per camera_info
(`initUndistortRectifyMap`, `fisheye.initUndistortRectifyMap` for `equidistant`) and `remap`
applies it per frame. The rectified image is a pinhole image of P with no distortion, so
everything computed from it (depth, its camera_info, the cloud) lives in that geometry:
`rectified_info` gives the camera_info that says so (K = P's 3x3, d all zeros, R identity).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

RECTIFY_MODES = ('auto', 'on', 'off')
PINHOLE_MODELS = ('plumb_bob', 'rational_polynomial')   # cv2.initUndistortRectifyMap
FISHEYE_MODELS = ('equidistant',)                        # cv2.fisheye (k1..k4)
SUPPORTED_MODELS = PINHOLE_MODELS + FISHEYE_MODELS
IDENTITY9 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

# Outcomes of Rectifier.apply (the node counts the last three in its diagnostics).
RECTIFIED, NOT_NEEDED, OFF = 'rectified', 'not_needed', 'off'
UNKNOWN_MODEL, UNSUPPORTED = 'unknown_model', 'unsupported'


def is_distorted(info) -> bool:
    """True when camera_info has a non-zero distortion coefficient or a non-identity R."""
    d = np.asarray(info.d, dtype=np.float64)
    r = np.asarray(info.r, dtype=np.float64)
    if d.size and np.any(d != 0.0):
        return True
    # An all-zero R is an unset one (uncalibrated drivers), not a rotation.
    return r.size == 9 and np.any(r != 0.0) and not np.allclose(r, IDENTITY9, atol=1e-12)


def _matrices(info):
    """(K 3x3, D, R 3x3, new camera matrix 3x3, P 3x4) of a camera_info, float64."""
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    D = np.asarray(info.d, dtype=np.float64).ravel()
    R = np.asarray(info.r, dtype=np.float64).reshape(3, 3)
    if not np.any(R):
        R = np.eye(3)
    P = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    if not (P[0, 0] > 0 and P[1, 1] > 0):   # P unset: rectify onto K, as if P = [K | 0]
        P = np.hstack([K, np.zeros((3, 1))])
    return K, D, R, P[:, :3].copy(), P


def rectified_info(info):
    """The camera_info of the rectified image: P kept, K = P's 3x3, d zeros, R identity.

    A plain object with CameraInfo's field names (what ros_format.camera_info's
    camera_model_from_info and depth_camera_info_fields read), so the node and offline code can
    use it like a message.
    """
    _, _, _, newK, P = _matrices(info)
    roi = SimpleNamespace(x_offset=0, y_offset=0, width=0, height=0, do_rectify=False)
    return SimpleNamespace(header=getattr(info, 'header', None), width=int(info.width),
                           height=int(info.height), distortion_model='plumb_bob',
                           d=[0.0] * 5, r=list(IDENTITY9), k=[float(v) for v in newK.ravel()],
                           p=[float(v) for v in P.ravel()], binning_x=0, binning_y=0, roi=roi)


@dataclass
class RectifyResult:
    image: np.ndarray     # the rectified image, or the input unchanged
    info: object          # the camera_info describing `image` (rectified_info or the input)
    status: str           # RECTIFIED, NOT_NEEDED, OFF, UNKNOWN_MODEL or UNSUPPORTED
    detail: str = ''      # why, for UNKNOWN_MODEL / UNSUPPORTED (a log line)


class Rectifier:
    """Rectification maps cached per camera_info (recomputed when K, D, R, P or size change).

    `map_type` '16SC2' (fixed-point maps, OpenCV's fast path) or '32FC1' (float maps);
    scripts/bench_node.py measures both.
    """

    CACHE_SIZE = 4   # a few cameras / resolutions on one node

    def __init__(self, map_type: str = '16SC2', interpolation: str = 'linear'):
        import cv2   # declared dependency (opencv-python-headless / python3-opencv)

        self._cv2 = cv2
        self.m1type = {'16SC2': cv2.CV_16SC2, '32FC1': cv2.CV_32FC1}[map_type]
        self.interpolation = {'linear': cv2.INTER_LINEAR, 'nearest': cv2.INTER_NEAREST}[
            interpolation]
        self._maps = OrderedDict()   # key -> (map1, map2, rectified_info)
        self.maps_computed = 0

    @staticmethod
    def _key(info) -> tuple:
        roi = info.roi
        return (int(info.width), int(info.height), str(info.distortion_model),
                tuple(map(float, info.d)), tuple(map(float, info.k)),
                tuple(map(float, info.r)), tuple(map(float, info.p)),
                int(info.binning_x), int(info.binning_y),
                (int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)))

    def maps(self, info):
        """(map1, map2, rectified camera_info) for this camera_info, from the cache."""
        key = self._key(info)
        entry = self._maps.get(key)
        if entry is None:
            entry = self._compute(info)
            self._maps[key] = entry
            while len(self._maps) > self.CACHE_SIZE:
                self._maps.popitem(last=False)
        else:
            self._maps.move_to_end(key)
        return entry

    def _compute(self, info):
        cv2 = self._cv2
        K, D, R, newK, _ = _matrices(info)
        size = (int(info.width), int(info.height))
        if info.distortion_model in FISHEYE_MODELS:
            D4 = np.zeros(4)
            D4[:min(4, D.size)] = D[:4]
            map1, map2 = cv2.fisheye.initUndistortRectifyMap(K, D4, R, newK, size, self.m1type)
        else:
            if D.size == 0:
                D = np.zeros(5)
            map1, map2 = cv2.initUndistortRectifyMap(K, D, R, newK, size, self.m1type)
        self.maps_computed += 1
        return map1, map2, rectified_info(info)

    def apply(self, image: np.ndarray, info, mode: str = 'auto') -> RectifyResult:
        """Rectify `image` (H, W, C) described by camera_info `info` per `mode`."""
        if mode not in RECTIFY_MODES:
            raise ValueError(f'rectify mode must be one of {RECTIFY_MODES}, got {mode!r}')
        if mode == 'off' or info is None:
            return RectifyResult(image, info, OFF)
        if mode == 'auto' and not is_distorted(info):
            return RectifyResult(image, info, NOT_NEEDED)
        model = info.distortion_model
        if model not in SUPPORTED_MODELS:
            return RectifyResult(image, info, UNKNOWN_MODEL,
                                 f'distortion model {model!r} is not one of '
                                 f'{", ".join(SUPPORTED_MODELS)}: image not rectified')
        roi = info.roi
        if max(int(info.binning_x), int(info.binning_y)) > 1 or (roi.width and roi.height):
            return RectifyResult(image, info, UNSUPPORTED,
                                 'camera_info with binning or ROI: rectification of such '
                                 'images is not implemented, image not rectified')
        if image.shape[:2] != (int(info.height), int(info.width)):
            return RectifyResult(image, info, UNSUPPORTED,
                                 f'image is {image.shape[1]}x{image.shape[0]}, camera_info '
                                 f'{info.width}x{info.height}: image not rectified')
        try:
            map1, map2, rect_info = self.maps(info)
        except self._cv2.error as exc:   # e.g. a D of a length OpenCV does not take
            return RectifyResult(image, info, UNSUPPORTED,
                                 f'OpenCV cannot build maps for this camera_info ({exc}): '
                                 'image not rectified')
        out = self._cv2.remap(np.ascontiguousarray(image), map1, map2, self.interpolation,
                              borderMode=self._cv2.BORDER_CONSTANT, borderValue=0)
        if out.ndim == 2:
            out = out[..., None]
        return RectifyResult(out, rect_info, RECTIFIED)
