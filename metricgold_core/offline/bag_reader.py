"""rosbag2 input (sqlite3 or MCAP) via `rosbags`: topic choice, camera_info pairing, decoding.

Message classes come from the `rosbags` typestore (Image, CompressedImage and CameraInfo are the
same in humble and jazzy). Decoding follows the sensor_msgs encoding rules, like the node's
conversions, but without ROS: this package must run where no ROS is installed.
"""
from __future__ import annotations

import bisect
import io
from pathlib import Path
from typing import Iterator

import numpy as np

from .sources import Frame

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'
DISTROS = ('humble', 'jazzy')

# encoding -> (channels, dtype, colour order; None = mono)
ENCODINGS = {
    'rgb8': (3, np.uint8, 'rgb'), 'bgr8': (3, np.uint8, 'bgr'),
    'rgba8': (4, np.uint8, 'rgb'), 'bgra8': (4, np.uint8, 'bgr'),
    'mono8': (1, np.uint8, None), 'mono16': (1, np.uint16, None),
    # OpenCV aliases: 8UC3/8UC4 are BGR(A) as cv_bridge reads them.
    '8UC1': (1, np.uint8, None), '8UC3': (3, np.uint8, 'bgr'), '8UC4': (4, np.uint8, 'bgr'),
    '16UC1': (1, np.uint16, None),
}


def typestore_for(distro: str):
    """The `rosbags` typestore of a ROS 2 distribution ('humble' or 'jazzy')."""
    from rosbags.typesys import get_typestore, Stores

    stores = {'humble': Stores.ROS2_HUMBLE, 'jazzy': Stores.ROS2_JAZZY}
    if distro not in stores:
        raise ValueError(f'`--ros-distro` must be one of {DISTROS}, got {distro!r}.')
    return get_typestore(stores[distro])


def bag_storage(path: Path) -> str:
    """'mcap' or 'sqlite3': the storage format of a bag folder or file."""
    if path.is_file():
        return 'mcap' if path.suffix.lower() == '.mcap' else 'sqlite3'
    return 'mcap' if any(path.glob('*.mcap')) else 'sqlite3'


def image_namespace(image_topic: str) -> str:
    """'/cam/color/image_raw' and '/cam/color/image_raw/compressed' -> '/cam/color'."""
    topic = image_topic.rstrip('/')
    if topic.endswith('/compressed'):
        topic = topic[:-len('/compressed')]
    return topic.rsplit('/', 1)[0]


def choose_topics(connections, image_topic: str | None, info_topic: str | None):
    """(image topic, its msgtype, camera_info topic or None) among the bag's connections."""
    types = {c.topic: c.msgtype for c in connections}
    listing = ', '.join(f'{t} ({m})' for t, m in sorted(types.items())) or 'no topics'
    if image_topic is not None:
        if types.get(image_topic) not in (IMAGE, COMPRESSED):
            raise ValueError(f'--image-topic {image_topic} is not an Image or CompressedImage '
                             f'topic in this bag; it has {listing}.')
    else:
        # Depth images are images too; never feed them to a depth model by accident.
        candidates = [t for t, m in types.items() if m in (IMAGE, COMPRESSED)
                      and 'depth' not in t.split('/')]
        raw = [t for t in candidates if types[t] == IMAGE]
        picks = raw if raw else candidates
        if len(picks) != 1:
            what = 'no colour image topic' if not picks else \
                f'several image topics ({", ".join(sorted(picks))})'
            raise ValueError(f'the bag has {what}; choose one with --image-topic. It has '
                             f'{listing}.')
        image_topic = picks[0]
    if info_topic is not None:
        if types.get(info_topic) != CAMERA_INFO:
            raise ValueError(f'--camera-info-topic {info_topic} is not a CameraInfo topic in '
                             f'this bag; it has {listing}.')
    else:
        infos = sorted(t for t, m in types.items() if m == CAMERA_INFO)
        beside = image_namespace(image_topic) + '/camera_info'
        if beside in infos:
            info_topic = beside
        elif len(infos) == 1:
            info_topic = infos[0]
        elif infos:
            raise ValueError(f'the bag has several camera_info topics ({", ".join(infos)}) and '
                             f'none is {beside}; choose one with --camera-info-topic.')
    return image_topic, types[image_topic], info_topic


def stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def image_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image -> uint8 RGB (H, W, 3); ValueError naming what is wrong."""
    if msg.encoding not in ENCODINGS:
        raise ValueError(f'unsupported image encoding {msg.encoding!r}; expected one of '
                         f'{", ".join(ENCODINGS)}')
    channels, dtype, order = ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if min(height, width) < 8 or step < row_bytes:
        raise ValueError(f'image of {width}x{height} px with step {step} is unusable (at least '
                         f'8x8 px and step >= {row_bytes} needed)')
    data = np.asarray(msg.data, dtype=np.uint8)
    if data.size < height * step:
        raise ValueError(f'image data has {data.size} bytes, {width}x{height} {msg.encoding} '
                         f'with step {step} needs {height * step}')
    rows = data[:height * step].reshape(height, step)[:, :row_bytes]
    wire = np.dtype(dtype).newbyteorder('>' if msg.is_bigendian else '<')
    pixels = np.ascontiguousarray(rows).view(wire).reshape(height, width, channels)
    if order is None:
        gray = pixels[..., 0]
        if gray.dtype.itemsize > 1:
            # 16-bit intensity (IR cameras): stretch its own range to 8 bits.
            gray = gray.astype(np.float32)
            lo, hi = float(gray.min()), float(gray.max())
            gray = (gray - lo) * (255.0 / (hi - lo)) + 0.5 if hi > lo else gray * 0
            gray = gray.astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    rgb = pixels[..., :3] if order == 'rgb' else pixels[..., 2::-1]
    return np.array(rgb, order='C')   # writable: the message buffer may be read-only


def compressed_msg_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> uint8 RGB (H, W, 3)."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(np.asarray(msg.data, np.uint8).tobytes())) as image:
            rgb = np.array(image.convert('RGB'), dtype=np.uint8)   # writable copy
    except Exception as exc:   # Pillow raises many types for corrupt data
        raise ValueError(f'cannot decode compressed image ({msg.format!r}): {exc}') from exc
    if min(rgb.shape[:2]) < 8:
        raise ValueError(f'image of {rgb.shape[1]}x{rgb.shape[0]} px is below 8x8 px')
    return rgb


def camera_matrix(info, matrix: str = 'p') -> tuple[np.ndarray, tuple[int, int]]:
    """CameraInfo -> (3x3 pinhole of the image actually sent, its (height, width)).

    Reads P (the projection ROS consumers such as depth_image_proc use), or K when P is unset or
    `matrix='k'`; binning and ROI are applied as the sensor_msgs/CameraInfo docs define them.
    """
    bx, by = max(1, int(info.binning_x)), max(1, int(info.binning_y))
    roi = info.roi
    has_roi = bool(roi.width and roi.height)
    width, height = (int(roi.width), int(roi.height)) if has_roi else \
        (int(info.width), int(info.height))
    P = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    source = P if matrix == 'p' and P[0, 0] > 0 and P[1, 1] > 0 else K
    fx, fy, cx, cy = source[0, 0], source[1, 1], source[0, 2], source[1, 2]
    if not (np.isfinite([fx, fy, cx, cy]).all() and fx > 0 and fy > 0):
        raise ValueError(f'camera_info has no usable focal length (fx={fx}, fy={fy})')
    if has_roi:
        cx, cy = cx - roi.x_offset, cy - roi.y_offset
    out = np.array([[fx / bx, 0.0, (cx + 0.5) / bx - 0.5],
                    [0.0, fy / by, (cy + 0.5) / by - 0.5], [0.0, 0.0, 1.0]])
    return out, (height // by, width // bx)


class BagInput:
    """Frames of one image topic of a bag, each paired with its camera_info."""

    def __init__(self, path: Path, typestore, image_topic: str | None = None,
                 info_topic: str | None = None):
        from rosbags.rosbag2 import Reader

        self.path = path
        self.typestore = typestore
        self.storage = bag_storage(path)
        self.reader = Reader(path)
        self.reader.open()
        try:
            self.image_topic, self.image_type, self.info_topic = choose_topics(
                self.reader.connections, image_topic, info_topic)
            self._image_conns = [c for c in self.reader.connections
                                 if c.topic == self.image_topic]
            self.total = sum(c.msgcount for c in self._image_conns)
            self._infos = self._read_infos()
        except BaseException:
            self.reader.close()
            raise

    def _read_infos(self) -> tuple[list, list]:
        """All camera_info messages by header stamp (they are small), sorted."""
        if self.info_topic is None:
            return [], []
        conns = [c for c in self.reader.connections if c.topic == self.info_topic]
        by_stamp = {}
        for conn, _, raw in self.reader.messages(connections=conns):
            try:
                msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
            except Exception:   # a corrupt camera_info is just not used for pairing
                continue
            by_stamp[stamp_ns(msg.header)] = msg
        stamps = sorted(by_stamp)
        return stamps, [by_stamp[s] for s in stamps]

    def info_for(self, stamp: int):
        """camera_info with exactly this stamp, else the latest before it, else the first."""
        stamps, msgs = self._infos
        if not stamps:
            return None
        i = bisect.bisect_right(stamps, stamp) - 1
        return msgs[max(i, 0)]

    def frames(self) -> Iterator[Frame]:
        for index, (conn, log_time_ns, raw) in enumerate(
                self.reader.messages(connections=self._image_conns)):
            name = f'frame_{index:06d}'
            try:
                msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:   # rosbags raises assorted errors for corrupt CDR
                yield Frame(index, name, error=f'{self.image_topic} message {index}: cannot '
                            f'deserialize ({type(exc).__name__}: {exc})', log_time_ns=log_time_ns)
                continue
            stamp = stamp_ns(msg.header)
            frame = Frame(index, name, stamp_ns=stamp, header=msg.header,
                          log_time_ns=log_time_ns)
            try:
                frame.rgb = image_msg_to_rgb(msg) if conn.msgtype == IMAGE else \
                    compressed_msg_to_rgb(msg)
                frame.camera_info = self.info_for(stamp)
                if frame.camera_info is not None:
                    frame.K, info_hw = camera_matrix(frame.camera_info)
                    if info_hw != frame.rgb.shape[:2]:
                        raise ValueError(f'camera_info describes a {info_hw[1]}x{info_hw[0]} '
                                         f'image, the image is {frame.rgb.shape[1]}x'
                                         f'{frame.rgb.shape[0]}')
            except ValueError as exc:
                frame.rgb, frame.error = None, f'{self.image_topic} message {index}: {exc}'
            yield frame

    def close(self) -> None:
        self.reader.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
