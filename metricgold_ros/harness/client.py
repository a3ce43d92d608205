"""The test side of a running node: an rclpy client in its own context that publishes the
camera and collects every output, and the Rig that sends frames and waits for their answers.

rclpy and the message packages are imported when a Client is made.
"""
from __future__ import annotations

import contextlib
import itertools
from pathlib import Path
import threading
import time

from metricgold_ros.harness.messages import camera_info_msg, image_msg, load_sequence
from metricgold_ros.harness.process import NodeProcess, pick_domain_id, ros_env, wait_until
from metricgold_ros.harness.process import write_params

NODE = '/test/metricgold_depth'
# Image stamps of Rig.send, one counter for every rig of a process (test modules share it).
STAMPS = itertools.count(1_700_000_000 * 10 ** 9, 40_000_000)


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


def shut_down(node, client, log_tail: int = 3000) -> int:
    """Close the test's client, stop the node (SIGINT), print the end of its log; its exit code."""
    client.close()
    code = node.stop()
    print(node.log()[-log_tail:])
    return code


@contextlib.contextmanager
def answering(node, client, first, timeout_s: float, log_tail: int = 3000):
    """Wait until `first()` is truthy (the node answers its first frame; RuntimeError with the
    node's log if it exits first or never does), hand over, then close the client and stop the
    node with SIGINT, which must exit cleanly."""
    try:
        node.wait_ready(first, timeout_s, period_s=0.0)   # RuntimeError with the node's log
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
