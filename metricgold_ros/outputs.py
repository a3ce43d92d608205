"""The node's publishers and the messages built for each depth frame.

Optional outputs (colored depth, points, uncertainty) are built only when enabled and
subscribed, so they cost nothing otherwise. Message buffers are reused frame to frame.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from metricgold_core import ros_format as topics
from metricgold_core.ros_format.camera_info import CameraModel
from metricgold_core.visualize import color_range, colorize_depth
from .messages import array_to_image, ByteBuffer, new_msg, scaled_camera_info
from .pointcloud import CloudPacker

# Auto colour range from every 4th pixel each way: 16x fewer values, same percentiles to
# within a colour step, and it keeps the colour map inside the per-frame overhead budget.
RANGE_SUBSAMPLE = 4


class Outputs:
    """Publishers of depth, depth/camera_info, depth/colored, points and depth/uncertainty."""

    def __init__(self, node, qos):
        self.depth = node.create_publisher(Image, topics.DEPTH_TOPIC, qos)
        self.camera_info = node.create_publisher(CameraInfo, topics.DEPTH_INFO_TOPIC, qos)
        self.colored = node.create_publisher(Image, topics.DEPTH_COLORED_TOPIC, qos)
        self.points = node.create_publisher(PointCloud2, topics.POINTS_TOPIC, qos)
        self.uncertainty = node.create_publisher(Image, topics.DEPTH_UNCERTAINTY_TOPIC, qos)
        self.packer = CloudPacker()
        self._buffers = {name: ByteBuffer() for name in ('depth', 'colored', 'uncertainty')}

    @staticmethod
    def wanted(publisher, enabled: bool) -> bool:
        return bool(enabled) and publisher.get_subscription_count() > 0

    def publish(self, header, depth_m: np.ndarray, camera: CameraModel, source_info,
                rgb: np.ndarray, uncertainty_m: np.ndarray | None, cfg: dict) -> None:
        """Publish every output of one frame; all carry `header` unchanged.

        `depth_m` (h, w) float32 at `camera`'s size, `rgb` the input image (any size),
        `source_info` the input CameraInfo or None (fallback intrinsics).
        """
        self.camera_info.publish(scaled_camera_info(source_info, camera, header))
        self.depth.publish(array_to_image(depth_m, '32FC1', header, self._buffers['depth']))
        if self.wanted(self.points, cfg['publish_points']):
            max_m = cfg['points_max_depth_m'] or np.inf
            cloud = self.packer.pack(depth_m, camera, rgb,
                                     cfg['points_decimation'], cfg['points_min_depth_m'], max_m)
            self.points.publish(self.packer.to_msg(header, cloud))
        if self.wanted(self.colored, cfg['publish_colored']):
            self.colored.publish(self.colored_image(header, depth_m, cfg))
        if uncertainty_m is not None and self.wanted(self.uncertainty,
                                                     cfg['publish_uncertainty']):
            self.uncertainty.publish(array_to_image(uncertainty_m.astype(np.float32), '32FC1',
                                                    header, self._buffers['uncertainty']))

    def colored_image(self, header, depth_m: np.ndarray, cfg: dict) -> Image:
        """depth/colored (bgr8), drawn straight into the message buffer."""
        lo, hi = color_range(depth_m, cfg['colored_min_m'], cfg['colored_max_m'],
                             RANGE_SUBSAMPLE)
        h, w = depth_m.shape
        buffer = self._buffers['colored']
        bgr = buffer.reserve(h * w * 3).reshape(h, w, 3)
        colorize_depth(depth_m, lo, hi, cfg['colored_log_scale'], bgr=True, out=bgr)
        return new_msg(Image, header=header, height=h, width=w, encoding='bgr8',
                       is_bigendian=0, step=w * 3, data=buffer.data)

    def wants_uncertainty(self, cfg: dict) -> bool:
        return self.wanted(self.uncertainty, cfg['publish_uncertainty'])
