"""Camera, LiDAR and odometry messages as drivers publish them, built from numpy arrays.

sensor_msgs / nav_msgs are imported when a message is built, so importing this module needs no
ROS. Stamps are integer nanoseconds (metricgold_core.ros_format.set_stamp).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metricgold_core.ros_format import set_stamp

# The Redwood / PrimeSense camera at 640x480 (the generated sample frames film with it too).
PRIMESENSE_640 = {'width': 640, 'height': 480, 'fx': 525.0, 'fy': 525.0, 'cx': 319.5,
                  'cy': 239.5}


def load_sequence(folder: Path, count: int = 3):
    """([rgb uint8 (H, W, 3)], intrinsics dict) of the first `count` frames of a recording
    (rgb/ and intrinsics.json, as in ../shared/data/real and the generated sample_frames)."""
    from PIL import Image as PILImage

    intr = json.loads((folder / 'intrinsics.json').read_text())
    files = sorted((folder / 'rgb').iterdir(), key=lambda p: (len(p.name), p.name))[:count]
    return [np.asarray(PILImage.open(f).convert('RGB')) for f in files], intr


def image_msg(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = 'camera',
              pad: int = 0, bigendian: bool = False):
    """A sensor_msgs/Image of `pixels` ((H, W) or (H, W, C), any dtype) as `encoding`, with
    `pad` extra bytes per row (step > width x pixel size) and either byte order."""
    from sensor_msgs.msg import Image

    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder('>' if bigendian else '<'))
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    msg = Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding,
                is_bigendian=int(bigendian), step=rows.shape[1])
    set_stamp(msg.header, stamp_ns)
    msg.header.frame_id = frame_id
    msg.data = rows.tobytes()
    return msg


def camera_info_msg(intr: dict, stamp_ns: int, frame_id: str = 'camera', scale: float = 1.0):
    """A pinhole sensor_msgs/CameraInfo (plumb_bob, zero distortion, P = [K | 0]) of intrinsics
    `intr` (width, height, fx, fy, cx, cy) for an image `scale` times their size."""
    from sensor_msgs.msg import CameraInfo

    fx, fy = intr['fx'] * scale, intr['fy'] * scale
    cx, cy = (intr['cx'] + 0.5) * scale - 0.5, (intr['cy'] + 0.5) * scale - 0.5
    msg = CameraInfo(width=round(intr['width'] * scale), height=round(intr['height'] * scale),
                     distortion_model='plumb_bob')
    set_stamp(msg.header, stamp_ns)
    msg.header.frame_id = frame_id
    msg.d = [0.0] * 5
    msg.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


def camera_messages(stamp_ns: int, rgb: np.ndarray, intr: dict = PRIMESENSE_640,
                    frame_id: str = 'camera') -> tuple:
    """(Image rgb8, CameraInfo) of one camera frame, as a driver sends them; `intr` describes
    a 640-wide image and is scaled to `rgb`'s width."""
    scale = rgb.shape[1] / intr['width']
    return (image_msg(rgb, 'rgb8', stamp_ns, frame_id),
            camera_info_msg(intr, stamp_ns, frame_id, scale=scale))


def raw_camera_info_msg(intr: dict, model: str, D, stamp_ns: int = 0, frame_id: str = 'camera'):
    """camera_info_msg of a raw (distorted) camera: `model` (plumb_bob, equidistant, ...) with
    coefficients `D`."""
    info = camera_info_msg(intr, stamp_ns, frame_id)
    info.distortion_model = model
    info.d = list(D)
    return info


def cloud_msg(points: np.ndarray, stamp_ns: int = 0, frame_id: str = 'lidar',
              dtype: str = 'f4', bigendian: bool = False, point_pad: int = 0,
              row_pad: int = 0, organised: tuple | None = None):
    """A sensor_msgs/PointCloud2 of (N, 3) x y z as a LiDAR driver might lay it out: x y z of
    `dtype` (f4 / f8) after a 4-byte float32 intensity, `point_pad` bytes after each point,
    `row_pad` after each row, `organised` (height, width) or one row, either byte order."""
    from sensor_msgs.msg import PointCloud2, PointField

    points = np.asarray(points, np.float64).reshape(-1, 3)
    height, width = organised if organised is not None else (1, len(points))
    order = '>' if bigendian else '<'
    size = np.dtype(dtype).itemsize
    layout = np.dtype({'names': ['intensity', 'x', 'y', 'z'],
                       'formats': [order + 'f4'] + [order + dtype] * 3,
                       'offsets': [0, 4, 4 + size, 4 + 2 * size],
                       'itemsize': 4 + 3 * size + point_pad})
    rows = np.zeros((height, width), layout)
    for i, name in enumerate('xyz'):
        rows[name] = points[:, i].reshape(height, width)
    rows['intensity'] = 7.0
    data = rows.view(np.uint8).reshape(height, width * layout.itemsize)
    data = np.concatenate([data, np.full((height, row_pad), 0xCD, np.uint8)], axis=1)
    datatype = {'f4': PointField.FLOAT32, 'f8': PointField.FLOAT64}[dtype]
    fields = [PointField(name='intensity', offset=0, datatype=PointField.FLOAT32, count=1)] + \
        [PointField(name=name, offset=4 + i * size, datatype=datatype, count=1)
         for i, name in enumerate('xyz')]
    msg = PointCloud2(height=height, width=width, fields=fields, is_bigendian=bigendian,
                      point_step=layout.itemsize, row_step=data.shape[1], is_dense=False)
    set_stamp(msg.header, stamp_ns)
    msg.header.frame_id = frame_id
    msg.data = data.tobytes()
    return msg


def odometry_msg(pose: np.ndarray, stamp_ns: int, frame_id: str = 'odom',
                 child_frame_id: str = 'camera'):
    """A nav_msgs/Odometry whose pose is the 4x4 `pose` (child -> frame_id)."""
    from nav_msgs.msg import Odometry

    from metricgold_core.camera.poses import matrix_quaternion

    msg = Odometry()
    set_stamp(msg.header, stamp_ns)
    msg.header.frame_id, msg.child_frame_id = frame_id, child_frame_id
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = (float(v) for v in pose[:3, 3])
    q.x, q.y, q.z, q.w = (float(v) for v in matrix_quaternion(pose[:3, :3]))
    return msg
