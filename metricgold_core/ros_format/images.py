"""sensor_msgs/Image and CompressedImage -> numpy: every input encoding, sparse depth images.

Messages are read by field name (rclpy and `rosbags` messages alike). Each function checks the
message against the encoding rules (sensor_msgs/image_encodings.hpp, REP 118) and raises
`BadInput` with the diagnostics counter it belongs to.
"""
from __future__ import annotations

import io

import numpy as np

from . import BadInput
from ..io_utils import intensity_to_u8
from ..scale import valid_sparse

# Refuse anything larger: a corrupt header claiming 100k x 100k must not allocate 30 GB.
MAX_SIDE_PX = 16384
MIN_SIDE_PX = 8   # the pipeline needs at least 8x8

# encoding -> (channels, numpy dtype, layout): 'rgb' / 'bgr' colour, None mono, 'bayer_XXXX' a
# colour filter mosaic (one sample per pixel), 'uyvy' / 'yuyv' YUV 4:2:2 (two bytes per pixel),
# 'nv21' YUV 4:2:0 semi-planar (height x 3/2 rows of `width` bytes). Names as in
# sensor_msgs/image_encodings.hpp; the Bayer, YUV and 16-bit colour ones are decoded with OpenCV.
ENCODINGS = {
    'rgb8': (3, np.uint8, 'rgb'),
    'bgr8': (3, np.uint8, 'bgr'),
    'rgba8': (4, np.uint8, 'rgb'),
    'bgra8': (4, np.uint8, 'bgr'),
    'rgb16': (3, np.uint16, 'rgb'),
    'bgr16': (3, np.uint16, 'bgr'),
    'rgba16': (4, np.uint16, 'rgb'),
    'bgra16': (4, np.uint16, 'bgr'),
    'mono8': (1, np.uint8, None),
    'mono16': (1, np.uint16, None),
    # OpenCV-style aliases: 8UC3/8UC4 are BGR(A) by OpenCV convention, as cv_bridge reads them.
    '8UC1': (1, np.uint8, None),
    '8UC3': (3, np.uint8, 'bgr'),
    '8UC4': (4, np.uint8, 'bgr'),
    '16UC1': (1, np.uint16, None),
    '32FC1': (1, np.float32, None),
    'bayer_rggb8': (1, np.uint8, 'bayer_rggb'),
    'bayer_bggr8': (1, np.uint8, 'bayer_bggr'),
    'bayer_gbrg8': (1, np.uint8, 'bayer_gbrg'),
    'bayer_grbg8': (1, np.uint8, 'bayer_grbg'),
    'bayer_rggb16': (1, np.uint16, 'bayer_rggb'),
    'bayer_bggr16': (1, np.uint16, 'bayer_bggr'),
    'bayer_gbrg16': (1, np.uint16, 'bayer_gbrg'),
    'bayer_grbg16': (1, np.uint16, 'bayer_grbg'),
    'yuv422': (2, np.uint8, 'uyvy'),         # UYVY (ROS' historical name)
    'uyvy': (2, np.uint8, 'uyvy'),
    'yuv422_yuy2': (2, np.uint8, 'yuyv'),    # YUYV / YUY2 (usb_cam, v4l2 webcams)
    'yuyv': (2, np.uint8, 'yuyv'),
    'nv21': (1, np.uint8, 'nv21'),
}
INPUT_ENCODINGS = tuple(ENCODINGS)
# nv24 (4:4:4 semi-planar) is not listed: OpenCV has no conversion for it.

# ROS Bayer pattern (the colours of the top-left 2x2 block, row by row) -> OpenCV conversion.
# OpenCV >= 5 names the pattern the same way (COLOR_BayerRGGB2RGB); OpenCV 4 only has the
# legacy names, which are shifted by one pixel (ROS rggb = legacy BG), as cv_bridge maps them.
# Checked against a mosaic sampled from a real image in test/test_encodings.py.
_BAYER_CV = {'bayer_rggb': ('BayerRGGB2RGB', 'BayerBG2RGB'),
             'bayer_bggr': ('BayerBGGR2RGB', 'BayerRG2RGB'),
             'bayer_gbrg': ('BayerGBRG2RGB', 'BayerGR2RGB'),
             'bayer_grbg': ('BayerGRBG2RGB', 'BayerGB2RGB')}
_YUV_CV = {'uyvy': 'YUV2RGB_UYVY', 'yuyv': 'YUV2RGB_YUY2', 'nv21': 'YUV2RGB_NV21'}


def _cv2():
    try:
        import cv2
    except ImportError as exc:   # a declared dependency: only a broken install gets here
        raise BadInput('encoding', f'decoding this encoding needs OpenCV (pip install '
                       f'opencv-python-headless): {exc}')
    return cv2


def _cv_code(layout: str) -> int:
    cv2 = _cv2()
    if layout in _BAYER_CV:
        new, legacy = _BAYER_CV[layout]
        return getattr(cv2, 'COLOR_' + new, None) or getattr(cv2, 'COLOR_' + legacy)
    return getattr(cv2, 'COLOR_' + _YUV_CV[layout])


SPARSE_DEPTH_ENCODINGS = ('32FC1', '16UC1', 'mono16')


def sparse_to_metres(array: np.ndarray, encoding: str = '32FC1') -> np.ndarray:
    """float32 metres (NaN = none) from a depth image in 32FC1 metres (NaN/0 = none) or 16UC1
    millimetres (0 = none), the units REP 118 gives them."""
    array = np.asarray(array)
    if encoding in ('16UC1', 'mono16') or array.dtype == np.uint16:
        out = array.astype(np.float32) / 1000.0
    else:
        out = array.astype(np.float32, copy=True)
    out[~valid_sparse(out)] = np.nan
    return out


def sparse_depth_to_metres(msg) -> np.ndarray:
    """A sparse depth Image (32FC1 metres with NaN/0 = none, or 16UC1 millimetres with 0 = none)
    -> float32 metres, NaN where there is no measurement. BadInput `sparse_depth_encoding` for
    another encoding, `sparse_depth` for a malformed message."""
    if msg.encoding not in SPARSE_DEPTH_ENCODINGS:
        raise BadInput('sparse_depth_encoding', f'sparse_depth must be 32FC1 (m) or 16UC1 (mm), '
                       f'got {msg.encoding!r}')
    try:
        return sparse_to_metres(image_to_array(msg)[..., 0], msg.encoding)
    except Exception as exc:   # malformed message (step, size)
        raise BadInput('sparse_depth', f'unreadable sparse_depth image: {exc}') from exc


def image_to_array(msg) -> np.ndarray:
    """Image -> (H, W, C) array in the encoding's dtype, native byte order; may be a view.

    YUV 4:2:2 gives (H, W, 2) bytes as sent; nv21 gives its (H * 3/2, W, 1) planes.
    """
    encoding = msg.encoding
    if encoding not in ENCODINGS:
        raise BadInput('encoding', f'unsupported image encoding {encoding!r}; expected one of '
                       f'{", ".join(INPUT_ENCODINGS)}')
    channels, dtype, layout = ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if not (MIN_SIDE_PX <= height <= MAX_SIDE_PX and MIN_SIDE_PX <= width <= MAX_SIDE_PX):
        raise BadInput('size', f'image size {width}x{height} is outside '
                       f'[{MIN_SIDE_PX}, {MAX_SIDE_PX}] pixels per side')
    if layout in ('uyvy', 'yuyv', 'nv21') and width % 2:
        raise BadInput('size', f'{encoding} shares chroma between pixel pairs: the width must '
                       f'be even, got {width}')
    if layout == 'nv21' and height % 2:
        raise BadInput('size', f'{encoding} (4:2:0) needs an even height, got {height}')
    rows_count = height * 3 // 2 if layout == 'nv21' else height
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise BadInput('size', f'step {step} is smaller than width x pixel size = {row_bytes} '
                       f'for {width} px of {encoding}')
    if step % itemsize:
        raise BadInput('size', f'step {step} is not a multiple of the {itemsize}-byte sample')
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < rows_count * step:
        what = 'height x 3/2 x step' if layout == 'nv21' else 'height x step'
        raise BadInput('data', f'data has {data.size} bytes, {what} needs '
                       f'{rows_count * step}')
    # Rows are `step` bytes apart; the strided view skips the padding without copying.
    rows = data[:rows_count * step].reshape(rows_count, step)[:, :row_bytes]
    byteorder = '>' if msg.is_bigendian else '<'
    wire = np.dtype(dtype).newbyteorder(byteorder) if itemsize > 1 else np.dtype(dtype)
    if itemsize > 1:
        rows = np.ascontiguousarray(rows)   # multi-byte views need aligned rows
    out = rows.view(wire).reshape(rows_count, width, channels)
    if itemsize > 1 and not wire.isnative:
        out = out.astype(wire.newbyteorder('='))
    return out


def _to_u8(values: np.ndarray) -> np.ndarray:
    """16-bit colour samples -> 8 bits (the top byte: 65535 -> 255, v * 257 -> v)."""
    return values if values.dtype == np.uint8 else (values >> 8).astype(np.uint8)


def _mono_to_u8(mono: np.ndarray) -> np.ndarray:
    """16-bit or float intensity (IR cameras) -> uint8 by its own min..max (io_utils rule)."""
    if mono.dtype != np.uint8 and not np.isfinite(mono).all():
        bad = int(mono.size - np.count_nonzero(np.isfinite(mono)))
        raise BadInput('nonfinite', f'intensity image has {bad} NaN/inf pixels')
    return intensity_to_u8(mono)


def image_to_rgb8(msg) -> np.ndarray:
    """Image -> uint8 RGB (H, W, 3); a strided view of the message for rgb8/bgr8.

    Bayer mosaics are demosaiced (OpenCV's bilinear), YUV converted with OpenCV's BT.601
    video-range formulas, 16-bit colour reduced to its top byte.
    """
    pixels = image_to_array(msg)
    _, _, layout = ENCODINGS[msg.encoding]
    if layout is None:
        gray = _mono_to_u8(pixels[..., 0])
        return np.repeat(gray[..., None], 3, axis=2)
    if layout in ('rgb', 'bgr'):
        rgb = _to_u8(pixels)[..., :3]   # shift the whole (contiguous) array: ~10x faster
        return rgb[..., ::-1] if layout == 'bgr' else rgb
    cv2 = _cv2()
    if layout.startswith('bayer_'):
        mosaic = np.ascontiguousarray(_to_u8(pixels[..., 0]))
        return cv2.cvtColor(mosaic, _cv_code(layout))
    planes = np.ascontiguousarray(pixels if layout != 'nv21' else pixels[..., 0])
    return cv2.cvtColor(planes, _cv_code(layout))


def compressed_to_rgb8(msg) -> np.ndarray:
    """CompressedImage (jpeg/png, as image_transport's compressed plugin sends) -> RGB uint8."""
    from PIL import Image as PILImage   # Pillow is only needed for compressed input

    fmt = (msg.format or '').lower()
    if fmt and not any(name in fmt for name in ('jpeg', 'jpg', 'png')):
        raise BadInput('encoding', f'unsupported compressed format {msg.format!r}; expected '
                       'jpeg or png')
    data = bytes(msg.data)
    try:
        # Pillow reads the header only (size check before any pixel is decoded); OpenCV
        # decodes the common 8-bit RGB / grey / RGBA images: measured at 640x480, JPEG 1.21 ->
        # 0.98 ms, PNG 8.29 -> 6.97 ms, identical pixels. Other modes stay with Pillow.
        with PILImage.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_SIDE_PX * MAX_SIDE_PX or \
                    max(img.width, img.height) > MAX_SIDE_PX:
                raise BadInput('size', f'compressed image of {img.width}x{img.height} is '
                               'too large')
            rgb = None
            if img.mode in ('RGB', 'L', 'RGBA'):
                cv2 = _cv2()
                bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                if bgr is not None and bgr.shape[:2] == (img.height, img.width):
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            if rgb is None:   # other modes, or data OpenCV refuses: Pillow decodes (or raises)
                rgb = np.asarray(img.convert('RGB'))
    except BadInput:
        raise
    except Exception as exc:   # Pillow raises many types for corrupt data
        raise BadInput('decode', f'cannot decode compressed image ({msg.format}): {exc}')
    if min(rgb.shape[:2]) < MIN_SIDE_PX:
        raise BadInput('size', f'image size {rgb.shape[1]}x{rgb.shape[0]} is below '
                       f'{MIN_SIDE_PX} px per side')
    return rgb
