"""Point clouds from depth: organized x y z + rgb float32 (ROS layout) and binary PLY files.

The rgb field is a float32 whose bits are 0x00RRGGBB, the PCL / depth_image_proc convention
that RViz' RGB8 colour transformer reads; invalid depth stays NaN so clouds stay organized.
"""
from __future__ import annotations

import numpy as np

from ..io_utils import atomic_path

PLY_VERTEX = np.dtype([('x', '<f4'), ('y', '<f4'), ('z', '<f4'),
                       ('red', 'u1'), ('green', 'u1'), ('blue', 'u1')])


def pack_rgb_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) RGB -> float32 (...) whose bits are 0x00RRGGBB."""
    rgb = rgb.astype(np.uint32)
    bits = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return bits.view(np.float32)


def organized_points(depth_m: np.ndarray, K: np.ndarray, rgb: np.ndarray | None = None
                     ) -> np.ndarray:
    """Z-depth (H, W) metres through pinhole K -> float32 (H, W, 4): x, y, z, rgb bits.

    NaN depth gives NaN x y z. `rgb` is uint8 (H, W, 3) of the same size, or None (rgb 0).
    """
    height, width = depth_m.shape
    if rgb is not None and rgb.shape[:2] != (height, width):
        raise ValueError(f'`rgb` must match the depth size {height}x{width}, got '
                         f'{rgb.shape[0]}x{rgb.shape[1]}.')
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    # Rays per column and per row broadcast: two small vectors instead of two full images.
    rx = ((np.arange(width, dtype=np.float64) - cx) / fx).astype(np.float32)[None, :]
    ry = ((np.arange(height, dtype=np.float64) - cy) / fy).astype(np.float32)[:, None]
    points = np.empty((height, width, 4), np.float32)
    z = depth_m.astype(np.float32, copy=False)
    np.multiply(z, rx, out=points[..., 0])
    np.multiply(z, ry, out=points[..., 1])
    points[..., 2] = z
    points[..., 3] = 0.0 if rgb is None else pack_rgb_float(rgb)
    return points


def write_ply(path, points: np.ndarray) -> int:
    """Finite points of an (H, W, 4) organized cloud -> binary little-endian PLY, atomically.

    Returns the number of vertices written (x y z float32, red green blue uint8).
    """
    flat = points.reshape(-1, 4)
    flat = flat[np.isfinite(flat[:, :3]).all(axis=1)]
    vertices = np.empty(len(flat), PLY_VERTEX)
    for i, axis in enumerate('xyz'):
        vertices[axis] = flat[:, i]
    bits = flat[:, 3].view(np.uint32)
    vertices['red'] = (bits >> 16) & 0xFF
    vertices['green'] = (bits >> 8) & 0xFF
    vertices['blue'] = bits & 0xFF
    header = ('ply\nformat binary_little_endian 1.0\ncomment metricgold depth cloud, metres, '
              f'camera frame\nelement vertex {len(vertices)}\nproperty float x\n'
              'property float y\nproperty float z\nproperty uchar red\nproperty uchar green\n'
              'property uchar blue\nend_header\n')
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(header.encode('ascii'))
            f.write(vertices.tobytes())
    return len(vertices)
