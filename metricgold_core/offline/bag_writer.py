"""rosbag2 output of `metricgold process`: depth (32FC1), depth/camera_info and points.

The bag is written under a temporary name beside it (io_utils.atomic_dir) and renamed into
place when every frame is in it, so a reader never sees a half-written bag. An interrupted run
leaves no bag; `--resume` rebuilds it from the depth files already saved (loading a .npy costs
far less than an inference).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
import sys

import numpy as np

from ..camera.geometry import CameraModel
from ..io_utils import atomic_dir
from ..ros_format import DEPTH_INFO_TOPIC, DEPTH_TOPIC, POINTS_TOPIC
from ..ros_format.camera_info import depth_camera_info_fields
from ..ros_format.clouds import CLOUD_FIELDS, POINT_STEP


def output_topics(namespace: str) -> dict:
    """The bag's topics: the node's names (ros_format) under `namespace`."""
    namespace = '/' + namespace.strip('/') if namespace.strip('/') else ''
    return {'depth': f'{namespace}/{DEPTH_TOPIC}', 'info': f'{namespace}/{DEPTH_INFO_TOPIC}',
            'points': f'{namespace}/{POINTS_TOPIC}'}


def depth_camera_info(types, header, source, K_depth: np.ndarray, depth_hw) -> object:
    """CameraInfo of the depth image (the node's rules: camera_info.depth_camera_info_fields)."""
    camera = CameraModel.from_K(K_depth, int(depth_hw[0]), int(depth_hw[1]))
    fields = depth_camera_info_fields(source, camera)
    roi = types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    arrays = {name: np.asarray(fields.pop(name), np.float64) for name in ('d', 'k', 'r', 'p')}
    return types['sensor_msgs/msg/CameraInfo'](header=header, binning_x=0, binning_y=0, roi=roi,
                                               **fields, **arrays)


class BagOutput:
    """Context manager that writes the output bag and publishes it only on success."""

    def __init__(self, final_path: Path, storage: str, typestore, namespace: str):
        self.final_path = Path(final_path)
        self.partial_path = None
        self._publish = None   # atomic_dir(final_path), entered in __enter__
        self.storage = storage
        self.typestore = typestore
        self.topics = output_topics(namespace)
        self.writer = None
        self.counts = {key: 0 for key in self.topics}

    def __enter__(self) -> 'BagOutput':
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}[self.storage]
        self._publish = atomic_dir(self.final_path, create=False)  # Writer makes it
        self.partial_path = self._publish.__enter__()
        try:
            self.writer = Writer(self.partial_path, version=Writer.VERSION_LATEST,
                                 storage_plugin=plugin)
            self.writer.open()
        except BaseException:
            self._publish.__exit__(*sys.exc_info())
            raise
        msgtypes = {'depth': 'sensor_msgs/msg/Image', 'info': 'sensor_msgs/msg/CameraInfo',
                    'points': 'sensor_msgs/msg/PointCloud2'}
        self.connections = {key: self.writer.add_connection(topic, msgtypes[key],
                                                            typestore=self.typestore)
                            for key, topic in self.topics.items()}
        return self

    def write(self, header, log_time_ns: int, depth_m: np.ndarray, K_depth: np.ndarray,
              source_info, points: np.ndarray) -> None:
        """One frame: depth (H, W) float32 metres, its K, and organized points (H, W, 4)."""
        types = self.typestore.types
        height, width = depth_m.shape
        depth_bytes = np.ascontiguousarray(depth_m, dtype='<f4').view(np.uint8).ravel()
        depth = types['sensor_msgs/msg/Image'](
            header=header, height=height, width=width, encoding='32FC1', is_bigendian=0,
            step=width * 4, data=depth_bytes)
        info = depth_camera_info(types, header, source_info, K_depth, (height, width))
        field = types['sensor_msgs/msg/PointField']
        cloud = types['sensor_msgs/msg/PointCloud2'](
            header=header, height=height, width=width,
            fields=[field(name=n, offset=o, datatype=field.FLOAT32, count=1)
                    for n, o in CLOUD_FIELDS],
            is_bigendian=False, point_step=POINT_STEP, row_step=width * POINT_STEP,
            data=np.ascontiguousarray(points, dtype='<f4').view(np.uint8).ravel(),
            is_dense=False)
        for key, msg in (('depth', depth), ('info', info), ('points', cloud)):
            raw = self.typestore.serialize_cdr(msg, msg.__msgtype__)
            self.writer.write(self.connections[key], log_time_ns, raw)
            self.counts[key] += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        """Publish the bag (one rename) after a clean block; otherwise delete it."""
        if exc_type is None:
            try:
                self.writer.close()
            except BaseException:
                self._publish.__exit__(*sys.exc_info())
                raise
        else:
            with contextlib.suppress(Exception):
                self.writer.abort()
        self._publish.__exit__(exc_type, exc, tb)
