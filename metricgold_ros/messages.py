"""numpy -> the node's outgoing sensor_msgs, filled in reusable buffers: Image, CameraInfo.

Reading messages and the formats themselves (encodings, CameraInfo rules, the cloud layout) are
metricgold_core.ros_format, shared with offline processing; this module only builds rclpy
messages. Nothing here imports torch or the model.
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from metricgold_core.ros_format.camera_info import CameraModel, depth_camera_info_fields
from metricgold_core.ros_format.images import ENCODINGS


def new_msg(cls, **fields):
    """A message whose array fields take `array.array` without a copy (where rosidl allows)."""
    # Recent rosidl copies array.array values unless field checks are on; older ones never
    # copy and do not know the keyword.
    try:
        msg = cls(check_fields=True)
    except (AssertionError, TypeError):
        msg = cls()
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


class ByteBuffer:
    """A reusable `array.array('B')` with a writable numpy view, to fill messages in place.

    The message publishes from the array directly, so filling the view and assigning `.data`
    costs one write of the bytes and no copy. Reuse is safe once `publish()` has returned
    (rclpy serialises synchronously).
    """

    def __init__(self):
        self.data = array.array('B')
        self.view = np.frombuffer(self.data, dtype=np.uint8)

    def reserve(self, nbytes: int) -> np.ndarray:
        """A uint8 view of exactly `nbytes` (reallocates only when the size changes)."""
        if len(self.data) != nbytes:
            self.view = None   # release the export before resizing
            self.data = array.array('B', bytes(nbytes))
            self.view = np.frombuffer(self.data, dtype=np.uint8)
        return self.view


# ------------------------------------------------------------------------- numpy -> Image

def array_to_image(pixels: np.ndarray, encoding: str, header, buffer: ByteBuffer | None = None
                   ) -> Image:
    """(H, W) float32 or (H, W, 3) uint8 -> Image of `encoding` with the given header."""
    channels, dtype, _ = ENCODINGS[encoding]
    height, width = pixels.shape[:2]
    if pixels.dtype != dtype or (pixels.ndim == 3 and pixels.shape[2] != channels):
        raise ValueError(f'{encoding} needs {channels} x {np.dtype(dtype).name}, got '
                         f'{pixels.shape} {pixels.dtype}')
    itemsize = np.dtype(dtype).itemsize
    buffer = buffer or ByteBuffer()
    view = buffer.reserve(height * width * channels * itemsize)
    np.copyto(view.view(dtype).reshape(pixels.shape), pixels)
    return new_msg(Image, header=header, height=height, width=width, encoding=encoding,
                   is_bigendian=int(np.little_endian is False), step=width * channels * itemsize,
                   data=buffer.data)


# ------------------------------------------------------------------------- CameraInfo

def scaled_camera_info(source: CameraInfo | None, camera: CameraModel, header) -> CameraInfo:
    """CameraInfo of the depth image: `source` with K and P scaled to `camera`'s size (the
    rules: ros_format.camera_info.depth_camera_info_fields); binning and ROI stay cleared."""
    info = CameraInfo()
    info.header = header
    for name, value in depth_camera_info_fields(source, camera).items():
        setattr(info, name, value)
    return info
