"""Helpers for node tests: the node as a real process, and an rclpy client in its own domain.

Each test module gets its own ROS_DOMAIN_ID (random in 1..100, mixed with the pid), discovery
limited to localhost, so parallel test runs never see each other's topics.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image as PILImage
import yaml

from metricgold_core.ros_format import set_stamp

ROOT = Path(__file__).resolve().parents[1]
NODE = '/test/metricgold_depth'
# Image stamps of test_node and test_node_raw_camera (Rig.send), one counter for both.
STAMPS = itertools.count(1_700_000_000 * 10 ** 9, 40_000_000)


def pick_domain_id() -> int:
    rng = random.Random(os.getpid() * 1000003 + time.time_ns())
    return rng.randint(1, 100)


def ros_env(domain_id: int, large_data: bool = False) -> dict:
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(domain_id)
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env['PYTHONUNBUFFERED'] = '1'
    env.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
    if large_data:
        env['FASTDDS_BUILTIN_TRANSPORTS'] = 'LARGE_DATA'
    return env


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump({'/**/metricgold_depth': {'ros__parameters': params}}))
    return path


def node_command(params_file: Path, extra=(), program=('-m', 'metricgold_ros.depth_node'),
                 interpreter: str | None = sys.executable) -> list:
    """The node's command line; `interpreter` None runs `program` itself (an installed
    executable, as `ros2 run` does)."""
    return [*([interpreter] if interpreter else []), *program, '--ros-args',
            '--params-file', str(params_file), '-r', '__ns:=/test',
            '-r', 'image:=/cam/image', '-r', 'camera_info:=/cam/camera_info',
            '-r', 'image/compressed:=/cam/image/compressed', *extra]


class NodeProcess:
    """The depth node as a child process, its output in a log file."""

    def __init__(self, params_file: Path, env: dict, log_path: Path, extra=(),
                 program=('-m', 'metricgold_ros.depth_node'),
                 interpreter: str | None = sys.executable, cwd: Path = ROOT):
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.proc = subprocess.Popen(node_command(params_file, extra, program, interpreter),
                                     cwd=cwd, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def stop(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def shut_down(node, client, log_tail: int = 3000) -> int:
    """Close the test's client, stop the node (SIGINT), print the end of its log; its exit code."""
    client.close()
    code = node.stop()
    print(node.log()[-log_tail:])
    return code


def wait_until(predicate, timeout_s: float, period_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period_s)
    return predicate()


class Client:
    """A test-side rclpy node in its own context: camera publishers and output subscribers."""

    OUTPUTS = {'depth': 'Image', 'depth/camera_info': 'CameraInfo', 'depth/colored': 'Image',
               'points': 'PointCloud2', 'depth/uncertainty': 'Image'}

    def __init__(self, domain_id: int, camera_reliable: bool = True, compressed: bool = False):
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from diagnostic_msgs.msg import DiagnosticArray
        from sensor_msgs import msg as sm

        self.rclpy = rclpy
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('mg_test_client', context=self.context)
        reliability = ReliabilityPolicy.RELIABLE if camera_reliable \
            else ReliabilityPolicy.BEST_EFFORT
        cam_qos = QoSProfile(depth=5, reliability=reliability)
        image_type = sm.CompressedImage if compressed else sm.Image
        image_topic = '/cam/image/compressed' if compressed else '/cam/image'
        self.image_pub = self.node.create_publisher(image_type, image_topic, cam_qos)
        self.info_pub = self.node.create_publisher(sm.CameraInfo, '/cam/camera_info', cam_qos)
        self.lock = threading.Lock()
        self.received = {name: [] for name in list(self.OUTPUTS) + ['diagnostics']}
        self.counts = {name: 0 for name in self.received}
        out_qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        for name, type_name in self.OUTPUTS.items():
            self.node.create_subscription(getattr(sm, type_name), '/test/' + name,
                                          self._collector(name), out_qos)
        self.node.create_subscription(DiagnosticArray, '/diagnostics',
                                      self._collector('diagnostics'), 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self):
        try:
            self.executor.spin()
        except Exception:   # context shut down at the end of the module
            pass

    def _collector(self, name):
        def callback(msg):
            with self.lock:
                self.received[name].append((time.monotonic(), msg))
                self.counts[name] += 1
                del self.received[name][:-200]   # bounded
        return callback

    def messages(self, name: str) -> list:
        with self.lock:
            return [m for _, m in self.received[name]]

    def clear(self) -> None:
        with self.lock:
            for items in self.received.values():
                items.clear()

    def by_stamp(self, name: str, stamp) -> object | None:
        for msg in reversed(self.messages(name)):
            if msg.header.stamp.sec == stamp.sec and msg.header.stamp.nanosec == stamp.nanosec:
                return msg
        return None

    def wait_output(self, name: str, stamp, timeout_s: float = 10.0):
        return wait_until(lambda: self.by_stamp(name, stamp), timeout_s)

    def fresh_diagnostics(self, timeout_s: float = 5.0) -> dict | None:
        """Diagnostics published after everything done so far (the second message from now)."""
        with self.lock:
            seen = self.counts['diagnostics']
        if not wait_until(lambda: self.counts['diagnostics'] >= seen + 2, timeout_s):
            return None
        return self.latest_diagnostics()

    def latest_diagnostics(self) -> dict | None:
        msgs = self.messages('diagnostics')
        for msg in reversed(msgs):
            for status in msg.status:
                if status.name.startswith('metricgold_depth'):
                    values = {kv.key: kv.value for kv in status.values}
                    values['_level'] = int.from_bytes(status.level, 'little') \
                        if isinstance(status.level, bytes) else int(status.level)
                    values['_message'] = status.message
                    values['_hardware_id'] = status.hardware_id
                    return values
        return None

    # ---------------------------------------------------------------- parameters

    def _call(self, srv_type, name, request, timeout_s=10.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise TimeoutError(f'service {name} not available')
            future = client.call_async(request)
            if not wait_until(future.done, timeout_s):
                raise TimeoutError(f'service {name} did not answer')
            return future.result()
        finally:
            self.node.destroy_client(client)

    def set_parameter(self, name: str, value):
        """SetParametersResult of setting one parameter on the node."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        request = SetParameters.Request()
        request.parameters = [Parameter(name, value=value).to_parameter_msg()]
        return self._call(SetParameters, NODE + '/set_parameters', request).results[0]

    def describe_parameters(self, names):
        from rcl_interfaces.srv import DescribeParameters

        request = DescribeParameters.Request(names=list(names))
        return self._call(DescribeParameters, NODE + '/describe_parameters',
                          request).descriptors

    def close(self):
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


# ------------------------------------------------------------------ camera data

def load_sequence(folder: Path, count: int = 3):
    """([rgb uint8 (H, W, 3)], intrinsics dict) of the first `count` frames of a recording
    (rgb/ and intrinsics.json, as in ../shared/data/real and the generated sample_frames)."""
    intr = json.loads((folder / 'intrinsics.json').read_text())
    files = sorted((folder / 'rgb').iterdir(), key=lambda p: (len(p.name), p.name))[:count]
    return [np.asarray(PILImage.open(f).convert('RGB')) for f in files], intr


def image_msg(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str = 'camera',
              pad: int = 0, bigendian: bool = False):
    """An Image message with `pad` extra bytes per row (step > width x pixel size)."""
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


def camera_info_msg(intr: dict, stamp_ns: int, frame_id: str = 'camera', scale: float = 1.0):
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


def colours_match(ours: np.ndarray, reference: np.ndarray) -> None:
    """Same turbo colours as the core's colorize_depth, up to float rounding at bin edges."""
    assert ours.shape == reference.shape and ours.dtype == np.uint8
    same = np.all(ours == reference, axis=-1)
    assert same.mean() > 0.999, f'{(~same).sum()} pixels differ'
    assert np.abs(ours.astype(int) - reference).max() <= 24   # at most a neighbouring entry


@contextlib.contextmanager
def answering(node, client, first, timeout_s: float, log_tail: int = 3000):
    """Wait until `first()` is truthy (the node answers its first frame), hand over, then close
    the client and stop the node with SIGINT, which must exit cleanly."""
    try:
        assert wait_until(first, timeout_s, period_s=0.0), \
            'the node never answered:\n' + node.log()
        yield
    finally:
        code = shut_down(node, client, log_tail)
    assert code == 0, 'node did not exit cleanly on SIGINT'


@contextlib.contextmanager
def started_rig(tmp: Path, params: dict, folder: Path, frames: int, log_tail: int = 3000):
    """The node with `params` on a reliable camera of the first `frames` images of the
    recording in `folder` (load_sequence), answering and
    settled (subscriptions matched to the publishers' QoS, camera_info paired): a Rig; stopped
    with SIGINT afterwards, which must exit cleanly."""
    domain = pick_domain_id()
    node = NodeProcess(write_params(tmp / 'params.yaml', params), ros_env(domain),
                       tmp / 'node.log')
    client = Client(domain, camera_reliable=True)
    rgbs, intr = load_sequence(folder, frames)
    rig = Rig(node, client, rgbs, intr)

    def settled():
        rig.roundtrip(timeout_s=1.0)
        diag = client.latest_diagnostics()
        return diag and diag['camera_info_source'] == 'camera_info' and \
            diag['input_reliability'] == 'reliable'
    with answering(node, client, lambda: rig.roundtrip(timeout_s=1.0), 90.0, log_tail):
        assert wait_until(settled, 30.0, period_s=0.0), node.log()
        yield rig


class Rig:
    """The node process and test client of started_rig: send frames, wait for answers."""

    def __init__(self, node, client, rgbs, intr):
        self.node, self.client, self.rgbs, self.intr = node, client, rgbs, intr

    def send(self, pixels=None, encoding='rgb8', info='same', stamp_ns=None, **kw):
        """Publish camera_info (unless None) then an image with a fresh stamp; the header."""
        stamp_ns = next(STAMPS) if stamp_ns is None else stamp_ns
        pixels = self.rgbs[0] if pixels is None else pixels
        if info == 'same':
            info = camera_info_msg(self.intr, stamp_ns, scale=pixels.shape[1] / 640)
        if info is not None:
            self.client.info_pub.publish(info)
        msg = image_msg(pixels, encoding, stamp_ns, **kw)
        self.client.image_pub.publish(msg)
        return msg.header

    def send_info_first(self, info, timeout_s=15.0):
        """Publish a camera_info and wait until the node's diagnostics count it."""
        before = int(self.diagnostics()['camera_info_received'])
        self.client.info_pub.publish(info)
        latest = self.client.latest_diagnostics
        assert wait_until(lambda: int((latest() or {}).get('camera_info_received', 0)) > before,
                          timeout_s), 'the node never received the camera_info'

    def roundtrip(self, *args, timeout_s=15.0, outputs=('depth',), **kw):
        """Send a frame and wait for the named outputs with its stamp: {name: msg} or None."""
        header = self.send(*args, **kw)
        got = wait_until(lambda: all(self.client.by_stamp(n, header.stamp) for n in outputs),
                         timeout_s)
        if not got:
            return None
        return {'header': header, **{n: self.client.by_stamp(n, header.stamp) for n in outputs}}

    def diagnostics(self) -> dict:
        """Diagnostics that include every frame answered so far."""
        diag = self.client.fresh_diagnostics()
        assert diag, 'no diagnostics'
        return diag

    def set(self, name, value):
        result = self.client.set_parameter(name, value)
        assert result.successful, result.reason
        return result
