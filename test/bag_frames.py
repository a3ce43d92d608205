"""Camera bags for the `metricgold process` tests: frames, camera_info and images as rosbags
messages, written as a driver records them (sqlite3 or MCAP) and read back; and the command.

Importing this module skips the importing test module when `rosbags` is missing.
"""
import io

import numpy as np
from PIL import Image as PILImage
import pytest

from metricgold_core.cli import main
from metricgold_core.ros_format import set_stamp

pytest.importorskip('rosbags')
from rosbags.rosbag2 import Reader, StoragePlugin, Writer  # noqa: E402,I100
from rosbags.typesys import get_typestore, Stores  # noqa: E402

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
TYPES = TYPESTORE.types
HW = (120, 160)                      # test frames: 640x480 resized, for speed
FIRST_STAMP_NS = 1_700_000_000 * 10 ** 9 + 123
PERIOD_NS = 100_000_000
RES = '64'


def header(index: int, frame_id='camera_color_optical_frame'):
    msg = TYPES['std_msgs/msg/Header'](stamp=TYPES['builtin_interfaces/msg/Time'](
        sec=0, nanosec=0), frame_id=frame_id)
    set_stamp(msg, FIRST_STAMP_NS + index * PERIOD_NS)
    return msg


def camera_info(index: int, K: np.ndarray):
    P = np.zeros((3, 4))
    P[:, :3] = K
    roi = TYPES['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False)
    return TYPES['sensor_msgs/msg/CameraInfo'](
        header=header(index), height=HW[0], width=HW[1], distortion_model='plumb_bob',
        d=np.array([0.1, -0.05, 0.0, 0.0, 0.0]), k=K.ravel(), r=np.eye(3).ravel(), p=P.ravel(),
        binning_x=0, binning_y=0, roi=roi)


def image_msg(index: int, rgb: np.ndarray, corrupt=False):
    data = rgb.reshape(-1)
    if corrupt:   # a truncated frame, as a dropped USB packet gives
        data = data[:data.size // 2]
    return TYPES['sensor_msgs/msg/Image'](header=header(index), height=HW[0], width=HW[1],
                                          encoding='rgb8', is_bigendian=0, step=HW[1] * 3,
                                          data=data.copy())


def compressed_msg(index: int, rgb: np.ndarray, corrupt=False):
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format='JPEG', quality=95)
    data = np.frombuffer(b'not a jpeg at all' if corrupt else buf.getvalue(), np.uint8)
    return TYPES['sensor_msgs/msg/CompressedImage'](header=header(index), format='jpeg',
                                                    data=data.copy())


def write_bag(path, storage, frames_K, image_topic='/camera/color/image_raw', compressed=False,
              corrupt=(), info_topic='/camera/color/camera_info'):
    """A bag like a camera driver records: images, camera_info, and a depth topic to ignore."""
    frames, K = frames_K
    plugin = {'sqlite3': StoragePlugin.SQLITE3, 'mcap': StoragePlugin.MCAP}[storage]
    make = compressed_msg if compressed else image_msg
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        image_conn = writer.add_connection(image_topic, make(0, frames[0]).__msgtype__,
                                           typestore=TYPESTORE)
        info_conn = writer.add_connection(info_topic, 'sensor_msgs/msg/CameraInfo',
                                          typestore=TYPESTORE)
        depth_conn = writer.add_connection('/camera/depth/image_rect_raw',
                                           'sensor_msgs/msg/Image', typestore=TYPESTORE)
        for i, rgb in enumerate(frames):
            log_ns = FIRST_STAMP_NS + i * PERIOD_NS + 5_000_000   # recorded 5 ms later
            for conn, msg in ((info_conn, camera_info(i, K)),
                              (image_conn, make(i, rgb, corrupt=i in corrupt))):
                writer.write(conn, log_ns, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
        depth = TYPES['sensor_msgs/msg/Image'](header=header(0), height=8, width=8,
                                               encoding='16UC1', is_bigendian=0, step=16,
                                               data=np.zeros(128, np.uint8))
        writer.write(depth_conn, FIRST_STAMP_NS,
                     TYPESTORE.serialize_cdr(depth, depth.__msgtype__))
    return path


def read_bag(path) -> dict:
    """topic -> [(log time ns, msgtype, message)] of a bag."""
    out = {}
    with Reader(path) as reader:
        for conn, log_ns, raw in reader.messages():
            msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            out.setdefault(conn.topic, []).append((log_ns, conn.msgtype, msg))
    return out


def process(*args) -> int:
    return main(['process', *map(str, args), '--processing-resolution', RES, '--no-progress'])
