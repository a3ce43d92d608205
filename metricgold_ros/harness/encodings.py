"""The harness's own camera-driver encoders: rgb8 pixels as the bytes of Bayer, YUV 4:2:2,
NV21 and 16-bit colour images, and the raw image a distorting lens records.

Written from the formats' definitions (mosaic by slicing, YUV by the BT.601 formulas, the lens
models' equations inverted in numpy), not with the decoders under test, so a test can check
that decoding gives the original back.
"""
from __future__ import annotations

import numpy as np

from metricgold_ros.harness.messages import image_msg

CHANNEL = {'r': 0, 'g': 1, 'b': 2}
# Distortion coefficients of a strong wide-angle lens in each model (640x480 camera).
PLUMB_BOB = [-0.28, 0.07, 0.001, -0.0005, 0.0]
EQUIDISTANT = [-0.02, 0.01, -0.004, 0.001]


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """A Bayer mosaic: pattern names the colours of the top-left 2x2 block, row by row."""
    out = np.empty(rgb.shape[:2], rgb.dtype)
    for colour, (dy, dx) in zip(pattern, [(0, 0), (0, 1), (1, 0), (1, 1)]):
        out[dy::2, dx::2] = rgb[dy::2, dx::2, CHANNEL[colour]]
    return out


def rgb_to_yuv601(rgb: np.ndarray):
    """BT.601 video range (Y 16..235, U/V 16..240), float planes."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return y, u, v


def _u8(x):
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """(H, W, 2) bytes of YUYV or UYVY (`order` 'yuyv' / 'uyvy'): chroma averaged over
    horizontal pixel pairs."""
    y, u, v = rgb_to_yuv601(rgb)
    u2, v2 = (u[:, 0::2] + u[:, 1::2]) / 2, (v[:, 0::2] + v[:, 1::2]) / 2
    chroma = np.empty(y.shape)
    chroma[:, 0::2], chroma[:, 1::2] = u2, v2
    planes = [y, chroma] if order == 'yuyv' else [chroma, y]
    return _u8(np.stack(planes, axis=-1))


def nv21(rgb: np.ndarray) -> np.ndarray:
    """(H * 3/2, W) bytes: the Y plane, then V U interleaved at half resolution (2x2 means)."""
    y, u, v = rgb_to_yuv601(rgb)
    h, w = y.shape

    def half(c):
        return c.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    vu = np.stack([half(v), half(u)], axis=-1).reshape(h // 2, w)
    return _u8(np.concatenate([y, vu], axis=0))


def with_alpha(pixels: np.ndarray, value) -> np.ndarray:
    return np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), value, pixels.dtype)], 2)


def to16(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.uint16) * 257   # full scale: 255 -> 65535


ENCODERS = {   # driver encoding -> its pixels from rgb8
    **{f'bayer_{p}8': (lambda rgb, p=p: mosaic(rgb, p)) for p in ('rggb', 'bggr', 'gbrg', 'grbg')},
    **{f'bayer_{p}16': (lambda rgb, p=p: mosaic(to16(rgb), p))
       for p in ('rggb', 'bggr', 'gbrg', 'grbg')},
    'yuv422': lambda rgb: yuv422(rgb, 'uyvy'),
    'uyvy': lambda rgb: yuv422(rgb, 'uyvy'),
    'yuv422_yuy2': lambda rgb: yuv422(rgb, 'yuyv'),
    'yuyv': lambda rgb: yuv422(rgb, 'yuyv'),
    'nv21': nv21,
    'rgb16': to16,
    'bgr16': lambda rgb: to16(rgb[..., ::-1]),
    'rgba16': lambda rgb: with_alpha(to16(rgb), 65535),
    'bgra16': lambda rgb: with_alpha(to16(rgb[..., ::-1]), 0),
}


def encoded_image_msg(rgb: np.ndarray, encoding: str, stamp_ns: int = 0, **kw):
    """image_msg of rgb8 pixels re-encoded as driver `encoding` (a key of ENCODERS); `kw` as
    image_msg's (pad, bigendian, frame_id)."""
    msg = image_msg(ENCODERS[encoding](rgb), encoding, stamp_ns, **kw)
    msg.height = rgb.shape[0]   # nv21: the image's height, not its planes' row count
    return msg


def undistorted_coords(xd, yd, model: str, D):
    """Undistorted normalised coordinates of distorted ones: the model's equations inverted
    by fixed-point (plumb_bob) or Newton (equidistant) iteration."""
    if model == 'plumb_bob':
        k1, k2, p1, p2, k3 = D
        x, y = xd.copy(), yd.copy()
        for _ in range(40):
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3
            dx = 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
            dy = p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
            x, y = (xd - dx) / radial, (yd - dy) / radial
        return x, y
    k1, k2, k3, k4 = D
    theta_d = np.hypot(xd, yd)
    theta = theta_d.copy()
    for _ in range(20):
        t2 = theta * theta
        f = theta * (1 + k1 * t2 + k2 * t2 ** 2 + k3 * t2 ** 3 + k4 * t2 ** 4) - theta_d
        df = 1 + 3 * k1 * t2 + 5 * k2 * t2 ** 2 + 7 * k3 * t2 ** 3 + 9 * k4 * t2 ** 4
        theta = theta - f / df
    scale = np.where(theta_d > 1e-12, np.tan(theta) / np.maximum(theta_d, 1e-12), 1.0)
    return xd * scale, yd * scale


def distort(rgb: np.ndarray, K: np.ndarray, model: str, D) -> np.ndarray:
    """The raw image a lens with this model would record of the pinhole image `rgb` (K)."""
    import cv2

    h, w = rgb.shape[:2]
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    xd, yd = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    x, y = undistorted_coords(xd, yd, model, D)
    map_x = (x * K[0, 0] + K[0, 2]).astype(np.float32)
    map_y = (y * K[1, 1] + K[1, 2]).astype(np.float32)
    return cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
