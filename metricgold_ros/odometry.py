"""The odometry scale source's ROS side: nav_msgs/Odometry in, the camera's pose at an image's
stamp out (the odometry interpolated to the stamp, composed with the camera's mounting).

The mounting is the camera optical frame in the odometry's child frame: the `camera_mount`
parameter (x y z qx qy qz qw) when set, else TF (tf2_ros, when the ROS installation has it)
from the odometry's child_frame_id to the image's frame_id.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from metricgold_core.camera.poses import parse_mount, pose_matrix, PoseBuffer
from metricgold_core.ros_format import stamp_ns as header_stamp_ns


def odometry_type():
    """nav_msgs/Odometry, or None when the nav_msgs package is missing."""
    try:
        from nav_msgs.msg import Odometry
    except ImportError:
        return None
    return Odometry


class OdometryInput:
    """Odometry poses by stamp and the camera mount; thread-safe (callbacks vs worker)."""

    def __init__(self, node):
        self.buffer = PoseBuffer()
        self.child_frame = ''
        self._mount = ('', None)   # (camera_mount text, its 4x4) of the last frame
        self._cond = threading.Condition()
        self._tf = None
        try:   # TF when the installation has it: listens from the start (static mounts)
            import tf2_ros

            self._tf = tf2_ros.Buffer()
            self._tf_listener = tf2_ros.TransformListener(self._tf, node)
        except ImportError:
            self._tf = None

    @property
    def tf_buffer(self):
        """The node's tf2_ros.Buffer (None without tf2_ros), shared with other inputs."""
        return self._tf

    def on_odometry(self, msg) -> str:
        """Keep one Odometry message; '' or why it was refused (the caller counts it)."""
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        try:
            pose = pose_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
        except ValueError as exc:
            return str(exc)
        with self._cond:
            why = self.buffer.add(header_stamp_ns(msg.header), pose)
            if not why:
                self.child_frame = msg.child_frame_id
                self._cond.notify_all()
        return why

    def pose_at(self, stamp_ns: int, wait_s: float):
        """The odometry pose interpolated at stamp_ns, waiting up to wait_s for the message
        after it; None when there is none (no odometry, a gap, too late)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                pose = self.buffer.at(stamp_ns)
                newest = self.buffer.stamps[-1] if self.buffer.stamps else None
                left = deadline - time.monotonic()
                if pose is not None or left <= 0 or (newest is not None and newest >= stamp_ns):
                    return pose
                self._cond.wait(left)

    def mount(self, camera_frame: str, cfg: dict):
        """(4x4 camera optical frame in the odometry child frame, or None, how it was found)."""
        mount = cfg['camera_mount']
        if mount:
            if self._mount[0] != mount:   # parsed once per parameter value, not per frame
                self._mount = (mount, parse_mount(mount))
            return self._mount[1], 'camera_mount'
        if self._tf is None:
            return None, 'no camera_mount and no tf2_ros'
        if not (self.child_frame and camera_frame):
            return None, 'no frame ids to look the mount up in TF'
        from rclpy.time import Time

        try:
            tf = self._tf.lookup_transform(self.child_frame, camera_frame, Time())
        except Exception as exc:   # tf2 raises its own lookup / connectivity exceptions
            return None, f'TF {self.child_frame} -> {camera_frame}: {type(exc).__name__}'
        t, q = tf.transform.translation, tf.transform.rotation
        return pose_matrix((t.x, t.y, t.z), (q.x, q.y, q.z, q.w)), 'tf'

    def camera_pose(self, stamp_ns: int, camera_frame: str, cfg: dict):
        """(4x4 camera-to-odometry-frame pose at the image's stamp or None, why not)."""
        pose = self.pose_at(stamp_ns, cfg['odometry_wait_ms'] / 1e3)
        if pose is None:
            return None, 'no odometry at the image stamp'
        mount, how = self.mount(camera_frame, cfg)
        if mount is None:
            return None, how
        return np.asarray(pose) @ mount, how
