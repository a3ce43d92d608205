"""The `sparse_points` input's ROS side: a PointCloud2 (a LiDAR scan, in its own frame) in, its
points in the camera's optical frame out, kept by stamp with the `sparse_depth` images.

The cloud's frame is placed in the camera's optical frame (the image's frame_id) by TF at the
cloud's stamp when tf2_ros is there and has the transform, else by the `sparse_points_mount`
parameter; a cloud already in the image's frame needs neither. The points are projected when a
frame is processed (metricgold_core.scale.lidar.project_cloud), when the depth image's camera
is known.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metricgold_core.camera.poses import parse_mount
from metricgold_core.ros_format import BadInput
from metricgold_core.ros_format import stamp_ns as header_stamp_ns
from metricgold_core.ros_format.clouds import cloud_to_xyz
from metricgold_core.scale.lidar import transform_points


@dataclass(frozen=True, eq=False)   # compared by identity: it holds an array
class CloudEntry:
    """A received cloud, already in the camera's optical frame."""

    points_cam: np.ndarray   # float64 (N, 3) metres, x right, y down, z forward
    origin_cam: tuple        # the cloud frame's origin (the LiDAR) in the camera frame, m
    how: str                 # how its frame was placed: tf, sparse_points_mount, same frame

    @property
    def size_hw(self) -> tuple[int, int]:
        return (0, 0)   # StampCache keeps the newest entry per image size: a cloud has none


class PointsInput:
    """Decodes `sparse_points` clouds and places them in the camera's optical frame."""

    def __init__(self, tf_buffer=None):
        self.tf = tf_buffer          # a tf2_ros.Buffer, or None without tf2_ros
        self._mount = ('', None)     # (sparse_points_mount text, its 4x4)

    def mount(self, text: str):
        if self._mount[0] != text:   # parsed once per parameter value, not per cloud
            self._mount = (text, parse_mount(text))
        return self._mount[1]

    def placement(self, cloud_frame: str, camera_frame: str, stamp_ns: int, cfg: dict):
        """(4x4 cloud frame -> camera optical frame or None for the same frame, how).

        BadInput `sparse_points_frame` when neither TF nor the mount places the cloud.
        """
        if cloud_frame and cloud_frame == camera_frame:
            return None, 'same frame'
        why_not_tf = 'tf2_ros is not installed' if self.tf is None else \
            'no image yet: the camera frame is unknown' if not camera_frame else \
            'the cloud has no frame_id' if not cloud_frame else ''
        if not why_not_tf:
            T, why_not_tf = self._tf_transform(camera_frame, cloud_frame, stamp_ns)
            if T is not None:
                return T, 'tf'
        mount = self.mount(cfg['sparse_points_mount'])
        if mount is not None:
            return mount, 'sparse_points_mount'
        raise BadInput('sparse_points_frame', f'sparse_points cloud in frame {cloud_frame!r}: '
                       f'its pose in the camera frame {camera_frame!r} is unknown '
                       f'({why_not_tf}) and sparse_points_mount is not set; publish the TF or '
                       'set sparse_points_mount "x y z qx qy qz qw" (docs/LIDAR.md)')

    def _tf_transform(self, camera_frame: str, cloud_frame: str, stamp_ns: int):
        from rclpy.time import Time

        from metricgold_core.camera.poses import pose_matrix

        try:
            tf = self.tf.lookup_transform(camera_frame, cloud_frame,
                                          Time(nanoseconds=int(stamp_ns)))
        except Exception as exc:   # tf2 raises its own lookup / extrapolation exceptions
            return None, f'TF {cloud_frame} -> {camera_frame} at the cloud stamp: ' \
                f'{type(exc).__name__}'
        t, q = tf.transform.translation, tf.transform.rotation
        try:
            return pose_matrix((t.x, t.y, t.z), (q.x, q.y, q.z, q.w)), ''
        except ValueError as exc:
            return None, f'TF {cloud_frame} -> {camera_frame} is not a pose: {exc}'

    def to_camera(self, msg, camera_frame: str, cfg: dict) -> tuple[int, CloudEntry]:
        """(stamp ns, CloudEntry) of a PointCloud2; BadInput `sparse_points` (malformed) or
        `sparse_points_frame` (no transform) when it cannot be used."""
        xyz = cloud_to_xyz(msg)
        stamp_ns = header_stamp_ns(msg.header)
        T, how = self.placement(msg.header.frame_id, camera_frame, stamp_ns, cfg)
        with np.errstate(invalid='ignore', over='ignore'):   # NaN points stay NaN
            points = transform_points(xyz, T)
        origin = (0.0, 0.0, 0.0) if T is None else tuple(float(v) for v in T[:3, 3])
        return stamp_ns, CloudEntry(points, origin, how)
