"""PLY point-cloud files: binary little-endian x y z float32 + red green blue uchar, written
atomically. An organized ROS-layout cloud goes in as `write_ply(path, *cloud_xyz_rgb(points))`
(metricgold_core.ros_format.clouds).
"""
from __future__ import annotations

import numpy as np

from ..io_utils import atomic_path


def write_ply(path, xyz: np.ndarray, rgb: np.ndarray | None = None) -> int:
    """Write the finite points of xyz (N, 3) metres, optional uint8 rgb (N, 3); returns count."""
    xyz = np.asarray(xyz, dtype=np.float32).reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    fields = [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]
    if rgb is not None:
        rgb = np.asarray(rgb, dtype=np.uint8).reshape(-1, 3)
        if rgb.shape[0] != xyz.shape[0]:
            raise ValueError(f'`rgb` has {rgb.shape[0]} rows, `xyz` {xyz.shape[0]}.')
        fields += [('red', 'u1'), ('green', 'u1'), ('blue', 'u1')]
    points = np.empty(int(keep.sum()), dtype=fields)
    for i, axis in enumerate('xyz'):
        points[axis] = xyz[keep, i]
    if rgb is not None:
        for i, channel in enumerate(('red', 'green', 'blue')):
            points[channel] = rgb[keep, i]
    ply_types = {'<f4': 'float', 'u1': 'uchar'}
    header = ['ply', 'format binary_little_endian 1.0', f'element vertex {len(points)}']
    header += [f'property {ply_types[t]} {name}' for name, t in fields]
    header.append('end_header')
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(('\n'.join(header) + '\n').encode('ascii'))
            f.write(points.tobytes())
    return len(points)


def read_ply(path) -> np.ndarray:
    """Read a binary little-endian PLY written by write_ply -> structured array of vertices."""
    with open(path, 'rb') as f:
        data = f.read()
    end = data.index(b'end_header\n') + len(b'end_header\n')
    lines = data[:end].decode('ascii').splitlines()
    if lines[0] != 'ply' or 'binary_little_endian' not in lines[1]:
        raise ValueError(f'{path}: not a binary little-endian PLY file.')
    count, fields = 0, []
    types = {'float': '<f4', 'uchar': 'u1'}
    for line in lines:
        parts = line.split()
        if parts[:2] == ['element', 'vertex']:
            count = int(parts[2])
        elif parts[0] == 'property':
            fields.append((parts[2], types[parts[1]]))
    return np.frombuffer(data, dtype=fields, count=count, offset=end)
