"""PointCloud2: the organized cloud of a depth image (layout, the one back-projection, packed
colour) and the x y z of any cloud a sensor publishes (cloud_to_xyz, e.g. a LiDAR scan).

Layout (the node's `points` topic and the offline bags alike): 16 bytes per point, x y z
float32 at 0/4/8 and rgb at 12, a float32 whose bits are 0x00RRGGBB (the PCL / depth_image_proc
convention RViz' RGB8 colour transformer reads). Invalid depth gives NaN x y z, so the cloud
stays organized (height x width) with `is_dense` false.
"""
from __future__ import annotations

import numpy as np

from . import BadInput
from ..camera.geometry import nearest_indices, pixel_rays

CLOUD_FIELDS = (('x', 0), ('y', 4), ('z', 8), ('rgb', 12))
POINT_STEP = 16


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float32 (...) whose bits are 0x00RRGGBB."""
    rgb = rgb.astype(np.uint32)
    bits = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return bits.view(np.float32)


def unpack_rgb_float(packed: np.ndarray) -> np.ndarray:
    """float32 (...) with bits 0x00RRGGBB -> uint8 (..., 3) RGB."""
    bits = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1).astype(
        np.uint8)


class CloudPlanes:
    """Reusable planes fill_cloud interleaves: x, y, z float32 and the packed colour, (h, w).

    Reallocated only when the size changes, so a caller that keeps one (the node's packer)
    allocates nothing per frame.
    """

    def __init__(self):
        self.shape = None

    def reserve(self, h: int, w: int) -> 'CloudPlanes':
        if self.shape != (h, w):
            self.x, self.y, self.z = (np.empty((h, w), np.float32) for _ in range(3))
            self.bgra = np.empty((h, w, 4), np.uint8)    # bytes B G R 0 = float bits 0x00RRGGBB
            self.bits = self.bgra.view(np.uint32)[..., 0]
            self.shape = (h, w)
        return self


def fill_cloud(points: np.ndarray, depth_m: np.ndarray, rx: np.ndarray, ry: np.ndarray,
               rgb: np.ndarray | None = None, min_depth_m: float = 0.0,
               max_depth_m: float = np.inf, planes: CloudPlanes | None = None) -> np.ndarray:
    """Back-project z-depth along per-pixel rays into `points`, a C-contiguous (h, w, 4) float32.

    `rx`, `ry` are x/z and y/z per pixel (geometry.pixel_rays), `depth_m` (h, w) metres with NaN
    invalid, `rgb` (h, w, 3) uint8 or None (rgb bits 0). Depth outside [min, max] becomes NaN.
    `planes` (CloudPlanes) are reused scratch planes. x and y are computed as contiguous planes,
    the colour by OpenCV's RGB -> BGRA with the alpha byte cleared, and one cv2.merge
    interleaves the four planes into `points`: about 3x a memcpy of the cloud, half the time of
    strided numpy writes into the interleaved buffer (scripts/bench_node.py).
    """
    import cv2

    h, w = depth_m.shape
    if points.shape != (h, w, 4) or points.dtype != np.float32 or \
            not points.flags.c_contiguous:
        raise ValueError(f'`points` must be a C-contiguous ({h}, {w}, 4) float32 array, got '
                         f'{points.shape} {points.dtype}')
    if rgb is not None and rgb.shape[:2] != (h, w):
        raise ValueError(f'`rgb` must match the depth size {h}x{w}, got '
                         f'{rgb.shape[0]}x{rgb.shape[1]}.')
    planes = (planes or CloudPlanes()).reserve(h, w)
    limits = min_depth_m > 0.0 or np.isfinite(max_depth_m)
    z = depth_m
    if limits or depth_m.dtype != np.float32 or not depth_m.flags.c_contiguous:
        z = planes.z
        np.copyto(z, depth_m)
        if limits:
            with np.errstate(invalid='ignore'):
                z[(depth_m < min_depth_m) | (depth_m > max_depth_m)] = np.nan
    np.multiply(z, rx, out=planes.x)
    np.multiply(z, ry, out=planes.y)
    if rgb is None:
        planes.bits.fill(0)
    elif np.little_endian:
        # Little-endian float bits 0x00RRGGBB are the bytes B, G, R, 0.
        cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2BGRA, dst=planes.bgra)
        np.bitwise_and(planes.bits, np.uint32(0x00FFFFFF), out=planes.bits)
    else:
        planes.bits[...] = pack_rgb_float(rgb).view(np.uint32)
    cv2.merge([planes.x, planes.y, z, planes.bits.view(np.float32)], dst=points)
    return points


def colours_at(rgb: np.ndarray, depth_hw: tuple, index: tuple | None = None) -> np.ndarray:
    """The colour image on the depth image's pixel grid (nearest neighbour: a point takes the
    colour of the pixel it was seen in, never a blend across an edge). `index` is a cached
    geometry.nearest_indices(rgb size, depth size)."""
    if rgb.shape[:2] == tuple(depth_hw):
        return rgb
    rows, cols = index if index is not None else nearest_indices(rgb.shape[:2], depth_hw)
    return rgb[rows, cols]


def organized_cloud(depth_m: np.ndarray, K: np.ndarray, rgb: np.ndarray | None = None,
                    decimation: int = 1, min_depth_m: float = 0.0,
                    max_depth_m: float = np.inf) -> np.ndarray:
    """Z-depth (H, W) metres through pinhole K -> a new float32 (h, w, 4) x, y, z, rgb cloud.

    `rgb` of any size is sampled at the depth's pixels (colours_at); `decimation` keeps every
    n-th row and column (pixel (0, 0) first); see fill_cloud.
    """
    height, width = depth_m.shape
    if rgb is not None:
        rgb = colours_at(rgb, (height, width))
    rx, ry = pixel_rays(K, height, width, step=decimation)
    if decimation > 1:
        depth_m = depth_m[::decimation, ::decimation]
        rgb = None if rgb is None else rgb[::decimation, ::decimation]
    points = np.empty(depth_m.shape + (4,), np.float32)
    return fill_cloud(points, depth_m, rx, ry, rgb, min_depth_m, max_depth_m)


def cloud_xyz_rgb(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 4) x y z rgb cloud -> xyz (N, 3) float32 and rgb (N, 3) uint8 (for ply.write_ply)."""
    flat = points.reshape(-1, 4)
    return flat[:, :3], unpack_rgb_float(flat[:, 3])


# sensor_msgs/PointField datatypes of the coordinates a cloud may carry (the others are
# integers: not coordinates in metres).
POINT_FIELD_FLOATS = {7: 'f4', 8: 'f8'}   # FLOAT32, FLOAT64
MAX_CLOUD_POINTS = 10_000_000


def cloud_to_xyz(msg) -> np.ndarray:
    """A sensor_msgs/PointCloud2's x, y, z -> float64 (N, 3) in the cloud's header frame.

    Any layout the message format allows: float32 or float64 coordinates at any offset,
    padding inside a point (point_step) and at the end of a row (row_step), big- or
    little-endian, organised (height > 1) or not. Points are read through one strided,
    structured numpy view of the data (no copy, no per-point loop); NaN points are kept (the
    projection drops them). BadInput `sparse_points` names what is wrong with a malformed cloud.
    """
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    fields = {}
    for field in msg.fields:
        fields.setdefault(field.name, field)   # the first of a repeated name
    missing = [name for name in 'xyz' if name not in fields]
    if missing:
        raise BadInput('sparse_points', f'sparse_points cloud has no {", ".join(missing)} '
                       f'field (fields: {", ".join(fields) or "none"})')
    if height * width > MAX_CLOUD_POINTS:
        raise BadInput('sparse_points', f'sparse_points cloud of {width}x{height} points is '
                       f'more than {MAX_CLOUD_POINTS} points')
    order = '>' if msg.is_bigendian else '<'
    names, formats, offsets = [], [], []
    for name in 'xyz':
        field = fields[name]
        kind = POINT_FIELD_FLOATS.get(int(field.datatype))
        if kind is None:
            raise BadInput('sparse_points', f'sparse_points field {name} has datatype '
                           f'{field.datatype}; expected FLOAT32 (7) or FLOAT64 (8)')
        if int(field.count) < 1:
            raise BadInput('sparse_points', f'sparse_points field {name} has count '
                           f'{field.count}')
        offset = int(field.offset)
        if offset < 0 or offset + np.dtype(kind).itemsize > point_step:
            raise BadInput('sparse_points', f'sparse_points field {name} at offset {offset} '
                           f'does not fit in point_step {point_step}')
        names.append(name)
        formats.append(order + kind)
        offsets.append(offset)
    if row_step < width * point_step:
        raise BadInput('sparse_points', f'sparse_points row_step {row_step} is smaller than '
                       f'width x point_step = {width} x {point_step}')
    data = msg.data
    size = len(data)
    if height * width == 0:
        return np.empty((0, 3), np.float64)
    if size != height * row_step:
        raise BadInput('sparse_points', f'sparse_points data has {size} bytes; height x '
                       f'row_step = {height} x {row_step} = {height * row_step}')
    layout = np.dtype({'names': names, 'formats': formats, 'offsets': offsets,
                       'itemsize': point_step})
    if not isinstance(data, (bytes, bytearray, memoryview, np.ndarray)):
        data = memoryview(data)   # array.array (rclpy) and other buffers
    try:
        points = np.ndarray((height, width), dtype=layout, buffer=data,
                            strides=(row_step, point_step))
    except (TypeError, ValueError) as exc:   # data that is not a byte buffer
        raise BadInput('sparse_points', f'unreadable sparse_points data: {exc}') from exc
    xyz = np.empty((height * width, 3), np.float64)
    for column, name in enumerate('xyz'):
        xyz[:, column] = points[name].reshape(-1)
    return xyz
