"""Everything the node sends: its publishers, the one way each outgoing message is built, and the
thread that publishes them off the inference worker.

    worker --OutgoingFrame--> PublishThread (bounded, in order) --> Outputs.publish(frame)
        depth/relative            (affine-invariant model without a scale)
        or depth/camera_info, depth, and when enabled and subscribed points, depth/colored,
        depth/uncertainty, all with the input image's header

Message builders fill reusable buffers and the messages take them without a copy (new_msg);
rclpy's `publish()` copies the data into its C message and serialises it before it returns, so
a buffer is free again once it has returned (test_messages checks it on the wire). That copy is
the one left: rclpy cannot publish from our memory, and calling rcl on hand-built C structures
(tried, removed) breaks silently when a ROS release changes a message's layout. The formats
themselves (image encodings, CameraInfo rules, the cloud layout and back-projection, the colour
map) are metricgold_core's, shared with offline processing; nothing here imports torch.
"""
from __future__ import annotations

import array
from collections import deque
from dataclasses import dataclass
import threading
import time
from typing import Callable

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from metricgold_core import ros_format as topics
from metricgold_core.camera.geometry import CameraModel, nearest_indices, pixel_rays
from metricgold_core.ros_format.camera_info import depth_camera_info_fields
from metricgold_core.ros_format.clouds import CLOUD_FIELDS, CloudPlanes, colours_at, fill_cloud
from metricgold_core.ros_format.clouds import POINT_STEP
from metricgold_core.ros_format.images import ENCODINGS
from metricgold_core.visualize import color_range, DepthColorizer

# Auto colour range from every 4th pixel each way: 16x fewer values, same percentiles to
# within a colour step, and it keeps the colour map inside the per-frame overhead budget.
RANGE_SUBSAMPLE = 4
# Frames waiting for the publish thread; a newer frame replaces the oldest (`dropped_publish`).
PUBLISH_QUEUE = 2


# ------------------------------------------------------------------------- message buffers

def new_msg(cls, **fields):
    """A message whose array fields take `array.array` without a copy (where rosidl allows)."""
    # Recent rosidl copies array.array values unless field checks are on; older ones never
    # copy and do not know the keyword. Measured (4.9 MB cloud): array.array kept as is
    # 0.01 ms, copied 0.2 ms, bytes 0.2 ms, a numpy array element by element (~0.8 s), so
    # buffers are array.array and numpy only writes into them.
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
    costs one write of the bytes and no copy. Reuse is safe once `publish()` has returned.
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


# ------------------------------------------------------------------------- Image, CameraInfo

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
    return image_around(buffer, header, height, width, encoding)


def image_around(buffer: ByteBuffer, header, height: int, width: int, encoding: str) -> Image:
    """The Image whose data is `buffer` (already filled) as `encoding` pixels, packed rows."""
    channels, dtype, _ = ENCODINGS[encoding]
    return new_msg(Image, header=header, height=height, width=width, encoding=encoding,
                   is_bigendian=int(np.little_endian is False),
                   step=width * channels * np.dtype(dtype).itemsize, data=buffer.data)


def scaled_camera_info(source: CameraInfo | None, camera: CameraModel, header) -> CameraInfo:
    """CameraInfo of the depth image: `source` with K and P scaled to `camera`'s size (the
    rules: ros_format.camera_info.depth_camera_info_fields); binning and ROI stay cleared."""
    info = CameraInfo()
    info.header = header
    for name, value in depth_camera_info_fields(source, camera).items():
        setattr(info, name, value)
    return info


# ------------------------------------------------------------------------- PointCloud2

def point_fields() -> list:
    return [PointField(name=name, offset=offset, datatype=PointField.FLOAT32, count=1)
            for name, offset in CLOUD_FIELDS]


class CloudPacker:
    """Back-projects depth through a pinhole camera into a reusable PointCloud2 buffer.

    Rays are computed once per (camera, decimation); the output buffer and fill_cloud's planes
    are reused, so a frame allocates nothing (about 3x a memcpy of the cloud, see
    scripts/bench_node.py).
    """

    def __init__(self):
        self._key = None
        self._rays = None
        self._colour_key, self._colour_index = None, None   # (rgb size, depth size) sampling
        self._buffer = ByteBuffer()
        self._planes = CloudPlanes()
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
        return fill_cloud(points, depth_m, *self._rays, rgb, min_depth_m, max_depth_m,
                          self._planes)

    def to_msg(self, header, points: np.ndarray) -> PointCloud2:
        """The PointCloud2 around the buffer `pack` just filled (valid until the next pack)."""
        h, w = points.shape[:2]
        return new_msg(PointCloud2, header=header, height=h, width=w, fields=point_fields(),
                       is_bigendian=not np.little_endian, point_step=POINT_STEP,
                       row_step=w * POINT_STEP, is_dense=False, data=self._buffer.data)


def unpack_cloud(msg: PointCloud2) -> dict:
    """PointCloud2 -> {field name: (height, width) float32 array} by its field table (the
    reverse of CloudPacker, for clients and tests)."""
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


# ------------------------------------------------------------------------- one frame's outputs

@dataclass
class OutgoingFrame:
    """One inferred frame handed from the worker to the publisher; the arrays are the frame's
    own (nothing else writes them once handed over)."""
    header: object                    # the input image's std_msgs/Header, on every output
    depth: np.ndarray                 # (h, w) float32, metres (unitless when `relative`)
    camera: CameraModel               # at the depth's size
    source_info: CameraInfo | None    # the input camera_info (None: fallback intrinsics)
    rgb: np.ndarray                   # the (rectified) input image, any size
    uncertainty: np.ndarray | None
    cfg: dict                         # the parameters the frame was inferred with
    relative: bool = False            # affine-invariant depth: depth/relative only
    received_s: float = 0.0           # time.monotonic() at receipt
    before_ms: float = 0.0            # the node's work before inference (conversion, rectify)
    handed_s: float = 0.0             # time.monotonic() at hand-over


class Outputs:
    """Publishers of depth, depth/camera_info, depth/colored, points, depth/uncertainty and
    depth/relative, and the messages of one frame (reused buffers; one thread at a time)."""

    def __init__(self, node, qos):
        self.depth = node.create_publisher(Image, topics.DEPTH_TOPIC, qos)
        self.camera_info = node.create_publisher(CameraInfo, topics.DEPTH_INFO_TOPIC, qos)
        self.colored = node.create_publisher(Image, topics.DEPTH_COLORED_TOPIC, qos)
        self.points = node.create_publisher(PointCloud2, topics.POINTS_TOPIC, qos)
        self.uncertainty = node.create_publisher(Image, topics.DEPTH_UNCERTAINTY_TOPIC, qos)
        self.relative = node.create_publisher(Image, topics.DEPTH_RELATIVE_TOPIC, qos)
        self.packer = CloudPacker()
        self.colorizer = DepthColorizer()
        self._buffers = {name: ByteBuffer()
                         for name in ('depth', 'colored', 'uncertainty', 'relative')}

    @staticmethod
    def wanted(publisher, enabled: bool) -> bool:
        return bool(enabled) and publisher.get_subscription_count() > 0

    def wants_uncertainty(self, cfg: dict) -> bool:
        return self.wanted(self.uncertainty, cfg['publish_uncertainty'])

    def publish(self, frame: OutgoingFrame) -> None:
        """Publish every output of one frame; all carry `frame.header` unchanged."""
        header, depth, cfg = frame.header, frame.depth, frame.cfg
        if frame.relative:   # unitless: never on `depth` or `points`
            self.relative.publish(self.float_image(header, depth, 'relative'))
            return
        # Every message is built before the first publish(): DDS moves each one on its own
        # threads after publish() returns, and the colour map and cloud packing computed
        # meanwhile would share the cores with it (measured: 0.3-0.6 ms a frame). The 4.9 MB
        # cloud goes last, so the small messages are not queued behind it.
        outgoing = [(self.camera_info, scaled_camera_info(frame.source_info, frame.camera,
                                                          header)),
                    (self.depth, self.float_image(header, depth, 'depth'))]
        if self.wanted(self.colored, cfg['publish_colored']):
            outgoing.append((self.colored, self.colored_image(header, depth, cfg)))
        if frame.uncertainty is not None and self.wanted(self.uncertainty,
                                                         cfg['publish_uncertainty']):
            outgoing.append((self.uncertainty, self.float_image(
                header, frame.uncertainty.astype(np.float32, copy=False), 'uncertainty')))
        if self.wanted(self.points, cfg['publish_points']):
            outgoing.append((self.points, self.cloud(header, depth, frame.camera, frame.rgb,
                                                     cfg)))
        for publisher, msg in outgoing:
            publisher.publish(msg)

    def float_image(self, header, values: np.ndarray, buffer: str) -> Image:
        """A 32FC1 image of `values` in the named reusable buffer."""
        return array_to_image(values, '32FC1', header, self._buffers[buffer])

    def cloud(self, header, depth_m: np.ndarray, camera: CameraModel, rgb: np.ndarray,
              cfg: dict) -> PointCloud2:
        """`points`: the organized x y z rgb cloud, packed straight into the message buffer."""
        max_m = cfg['points_max_depth_m'] or np.inf
        points = self.packer.pack(depth_m, camera, rgb, cfg['points_decimation'],
                                  cfg['points_min_depth_m'], max_m)
        return self.packer.to_msg(header, points)

    def colored_image(self, header, depth_m: np.ndarray, cfg: dict) -> Image:
        """depth/colored (bgr8), drawn straight into the message buffer."""
        lo, hi = color_range(depth_m, cfg['colored_min_m'], cfg['colored_max_m'],
                             RANGE_SUBSAMPLE)
        h, w = depth_m.shape
        buffer = self._buffers['colored']
        bgr = buffer.reserve(h * w * 3).reshape(h, w, 3)
        self.colorizer(depth_m, lo, hi, cfg['colored_log_scale'], bgr=True, out=bgr)
        return image_around(buffer, header, h, w, 'bgr8')


# ------------------------------------------------------------------------- the publish thread

class PublishThread:
    """Publishes handed-over frames in order on its own thread, so the worker starts the next
    inference at once. At most `capacity` frames wait; a newer one replaces the oldest waiting
    (`on_drop`), so a subscriber that slows publishing down never stalls inference.

    `publish(frame)` does the work; `on_done(frame, publish_ms)` and `on_error(frame, exc)`
    report each frame from the thread. `close()` publishes what is waiting, then stops.
    """

    def __init__(self, publish: Callable, on_done: Callable, on_error: Callable,
                 on_drop: Callable, capacity: int = PUBLISH_QUEUE):
        self._publish, self._on_done, self._on_error = publish, on_done, on_error
        self._on_drop = on_drop
        self._waiting = deque()
        self._capacity = capacity
        self._cond = threading.Condition()
        self._closing = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name='metricgold_publisher',
                                        daemon=True)
        self._thread.start()

    def submit(self, frame: OutgoingFrame) -> bool:
        """Queue `frame` (never blocks); False when closed. Replaced frames go to on_drop."""
        dropped = None
        with self._cond:
            if self._closing:
                return False
            if len(self._waiting) >= self._capacity:
                dropped = self._waiting.popleft()
            self._waiting.append(frame)
            self._cond.notify()
        if dropped is not None:
            self._on_drop(dropped)
        return True

    def idle(self) -> bool:
        """Nothing waiting and nothing being published."""
        with self._cond:
            return not self._waiting and not self._busy

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    self._cond.wait()
                if not self._waiting:   # closing and drained
                    return
                frame = self._waiting.popleft()
                self._busy = True
            start = time.monotonic()
            try:
                self._publish(frame)
            except Exception as exc:   # a failed publish must not end the thread
                self._on_error(frame, exc)
            else:
                self._on_done(frame, (time.monotonic() - start) * 1e3)
            finally:
                with self._cond:
                    self._busy = False

    def close(self, timeout_s: float = 5.0) -> bool:
        """Publish the waiting frames, stop; True when the thread has ended."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
