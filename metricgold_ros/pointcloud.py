"""The node's PointCloud2: depth back-projected (metricgold_core.ros_format.clouds) straight
into a reusable message buffer, and the reverse for clients and tests.
"""
from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField

from metricgold_core.geometry import nearest_indices, pixel_rays
from metricgold_core.ros_format.camera_info import CameraModel
from metricgold_core.ros_format.clouds import CLOUD_FIELDS, colours_at, fill_cloud, POINT_STEP
from .messages import ByteBuffer, new_msg


def point_fields() -> list:
    return [PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
            for name, offset in CLOUD_FIELDS]


class CloudPacker:
    """Back-projects depth through a pinhole camera into a reusable PointCloud2 buffer.

    Rays are computed once per (camera, decimation) and the output buffer is reused, so a frame
    costs one fill_cloud: about 2x a memcpy of the cloud (see scripts/bench_node.py).
    """

    def __init__(self):
        self._key = None
        self._rays = None
        self._colour_key, self._colour_index = None, None   # (rgb size, depth size) sampling
        self._buffer = ByteBuffer()
        self.rays_computed = 0          # for tests and diagnostics: recomputes on camera change

    def pack(self, depth_m: np.ndarray, camera: CameraModel, rgb: np.ndarray | None = None,
             decimation: int = 1, min_depth_m: float = 0.0, max_depth_m: float = np.inf
             ) -> np.ndarray:
        """Fill and return the (h, w, 4) float32 view of the cloud buffer.

        `depth_m` (H, W) float32 metres at the camera's size, NaN = invalid; `rgb` uint8
        (h, w, 3) of any size, sampled at the depth's pixels (clouds.colours_at), or None (rgb
        bits 0). Depth outside [min, max] becomes NaN.
        """
        if depth_m.shape != (camera.height, camera.width):
            raise ValueError(f'depth {depth_m.shape} does not match the camera '
                             f'{camera.height}x{camera.width}')
        if (camera, decimation) != self._key:
            self._rays = pixel_rays(camera.K, camera.height, camera.width, step=decimation)
            self._key = (camera, decimation)
            self.rays_computed += 1
        if rgb is not None and rgb.shape[:2] != depth_m.shape:
            key = (rgb.shape[:2], depth_m.shape)
            if key != self._colour_key:
                self._colour_key, self._colour_index = key, nearest_indices(*key)
            rgb = colours_at(rgb, depth_m.shape, self._colour_index)
        if decimation > 1:
            depth_m = depth_m[::decimation, ::decimation]
            rgb = None if rgb is None else rgb[::decimation, ::decimation]
        h, w = depth_m.shape
        points = self._buffer.reserve(h * w * POINT_STEP).view(np.float32).reshape(h, w, 4)
        return fill_cloud(points, depth_m, *self._rays, rgb, min_depth_m, max_depth_m)

    def to_msg(self, header, points: np.ndarray) -> PointCloud2:
        """The PointCloud2 around the buffer `pack` just filled (valid until the next pack)."""
        h, w = points.shape[:2]
        return new_msg(PointCloud2, header=header, height=h, width=w, fields=point_fields(),
                       is_bigendian=not np.little_endian, point_step=POINT_STEP,
                       row_step=w * POINT_STEP, is_dense=False, data=self._buffer.data)


def unpack_cloud(msg: PointCloud2) -> dict:
    """PointCloud2 -> {field name: (height, width) float32 array} by its field table."""
    if msg.is_bigendian != (not np.little_endian):
        raise ValueError('big-endian clouds are not supported here')
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.row_step)
    raw = raw[:, :msg.width * msg.point_step].reshape(msg.height, msg.width, msg.point_step)
    out = {}
    for field in msg.fields:
        if field.datatype != PointField.FLOAT32:
            raise ValueError(f'field {field.name} is not FLOAT32')
        chunk = np.ascontiguousarray(raw[..., field.offset:field.offset + 4])
        out[field.name] = chunk.view(np.float32)[..., 0]
    return out
