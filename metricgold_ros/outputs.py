"""The node's publishers and the messages built for each depth frame.

Optional outputs (colored depth, points, uncertainty) are built only when enabled and
subscribed, so they cost nothing otherwise. Message buffers are reused frame to frame.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from metricgold_core.visualize import colorize_depth
from .conversions import array_to_image, ByteBuffer, CameraModel, scaled_camera_info
from .pointcloud import CloudPacker

# Auto colour range from every 4th pixel each way: 16x fewer values, same percentiles to
# within a colour step, and it keeps the colour map inside the per-frame overhead budget.
RANGE_SUBSAMPLE = 4


def auto_color_range(depth_m: np.ndarray, lo_m: float, hi_m: float) -> tuple:
    """(near, far) for the colour map: fixed values where > 0, else 2nd/98th percentiles."""
    if lo_m > 0 and hi_m > 0:
        return lo_m, hi_m
    sample = depth_m[::RANGE_SUBSAMPLE, ::RANGE_SUBSAMPLE]
    sample = sample[np.isfinite(sample) & (sample > 0)]
    if sample.size == 0:
        return (lo_m or 0.1), (hi_m or 10.0)
    p2, p98 = np.percentile(sample, (2, 98))
    return (lo_m if lo_m > 0 else float(p2)), (hi_m if hi_m > 0 else float(p98))


class Outputs:
    """Publishers of depth, depth/camera_info, depth/colored, points and depth/uncertainty."""

    def __init__(self, node, qos):
        self.depth = node.create_publisher(Image, 'depth', qos)
        self.camera_info = node.create_publisher(CameraInfo, 'depth/camera_info', qos)
        self.colored = node.create_publisher(Image, 'depth/colored', qos)
        self.points = node.create_publisher(PointCloud2, 'points', qos)
        self.uncertainty = node.create_publisher(Image, 'depth/uncertainty', qos)
        self.packer = CloudPacker()
        self._buffers = {name: ByteBuffer() for name in ('depth', 'colored', 'uncertainty')}
        self._resample = (None, None)   # ((src_hw, dst_hw), (rows, cols)) nearest-neighbour

    @staticmethod
    def wanted(publisher, enabled: bool) -> bool:
        return bool(enabled) and publisher.get_subscription_count() > 0

    def publish(self, header, depth_m: np.ndarray, model: CameraModel, source_info,
                rgb: np.ndarray, uncertainty_m: np.ndarray | None, cfg: dict) -> None:
        """Publish every output of one frame; all carry `header` unchanged.

        `depth_m` (h, w) float32 at `model`'s size, `rgb` the input image (any size),
        `source_info` the input CameraInfo or None (fallback intrinsics).
        """
        self.camera_info.publish(scaled_camera_info(source_info, model, header))
        self.depth.publish(array_to_image(depth_m, '32FC1', header, self._buffers['depth']))
        if self.wanted(self.points, cfg['publish_points']):
            max_m = cfg['points_max_depth_m'] or np.inf
            cloud = self.packer.pack(depth_m, model, self._rgb_at(rgb, depth_m.shape),
                                     cfg['points_decimation'], cfg['points_min_depth_m'], max_m)
            self.points.publish(self.packer.to_msg(header, cloud))
        if self.wanted(self.colored, cfg['publish_colored']):
            lo, hi = auto_color_range(depth_m, cfg['colored_min_m'], cfg['colored_max_m'])
            bgr = colorize_depth(depth_m, lo, hi, log_scale=cfg['colored_log_scale'], bgr=True)
            self.colored.publish(array_to_image(bgr, 'bgr8', header, self._buffers['colored']))
        if uncertainty_m is not None and self.wanted(self.uncertainty,
                                                     cfg['publish_uncertainty']):
            self.uncertainty.publish(array_to_image(uncertainty_m.astype(np.float32), '32FC1',
                                                    header, self._buffers['uncertainty']))

    def wants_uncertainty(self, cfg: dict) -> bool:
        return self.wanted(self.uncertainty, cfg['publish_uncertainty'])

    def _rgb_at(self, rgb: np.ndarray, shape_hw: tuple) -> np.ndarray:
        """`rgb` at the depth image's size (nearest neighbour, indices cached per size)."""
        src_hw = rgb.shape[:2]
        if tuple(src_hw) == tuple(shape_hw):
            return rgb
        key, index = self._resample
        if key != (src_hw, shape_hw):
            h, w = shape_hw
            rows = ((np.arange(h) + 0.5) * src_hw[0] / h).astype(np.intp)[:, None]
            cols = ((np.arange(w) + 0.5) * src_hw[1] / w).astype(np.intp)[None, :]
            index = (rows, cols)
            self._resample = ((src_hw, shape_hw), index)
        return rgb[index[0], index[1]]
