"""The node's outgoing messages (metricgold_ros.outputs): images read back by the decoder, buffer
reuse on the wire, and the thread that publishes them in order off the worker."""
import numpy as np
import pytest

from metricgold_core.ros_format.images import image_to_array, image_to_rgb8
from metricgold_ros.outputs import array_to_image
from node_harness import image_msg

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_depth_and_bgr_images_round_trip_with_header():
    depth = RNG.random((12, 10)).astype(np.float32)
    depth[2, 2] = np.nan
    header = image_msg(RGB, 'rgb8', 5_000_000_123, frame_id='cam_optical').header
    msg = array_to_image(depth, '32FC1', header)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ('32FC1', 12, 10, 40)
    assert msg.header.frame_id == 'cam_optical' and msg.header.stamp.nanosec == 123
    np.testing.assert_array_equal(image_to_array(msg)[..., 0], depth)
    bgr = array_to_image(RGB[..., ::-1].copy(), 'bgr8', header)
    np.testing.assert_array_equal(image_to_rgb8(bgr), RGB)
    with pytest.raises(ValueError):
        array_to_image(depth.astype(np.float64), '32FC1', header)


@pytest.mark.ros
@pytest.mark.parametrize('path', ['rclpy', 'rcl_publish'])
def test_a_reused_buffer_is_free_once_publish_returns(path):
    """Both publish paths serialise the data before they return (rclpy's publish() after
    copying it into a C message, rcl_publish from the buffer itself): overwriting the buffer
    right after the call (as the node does with the next frame) leaves every received message
    intact."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from metricgold_ros.outputs import ByteBuffer
    from node_harness import pick_domain_id, wait_until

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=pick_domain_id())
    try:
        node = rclpy.create_node('buffer_reuse', context=context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        received = []
        node.create_subscription(Image, 'reuse', received.append, qos)
        pub = node.create_publisher(Image, 'reuse', qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        assert wait_until(lambda: executor.spin_once(timeout_sec=0.05) or
                          pub.get_subscription_count() > 0, 10.0)
        send = pub.publish
        if path == 'rcl_publish':
            from metricgold_ros.rcl_publish import rcl_publisher
            send = rcl_publisher(pub).publish
        buffer = ByteBuffer()
        frames = [np.full((480, 640), k, np.float32) for k in (1.0, 2.0, 3.0)]
        header = image_msg(RGB, 'rgb8', 1).header
        for frame in frames:
            send(array_to_image(frame, '32FC1', header, buffer))
            buffer.view[:] = 255   # the next frame's fill starts at once
        assert wait_until(lambda: executor.spin_once(timeout_sec=0.05) or len(received) == 3,
                          10.0), f'{len(received)} of 3 messages arrived'
        for msg, frame in zip(received, frames):
            np.testing.assert_array_equal(image_to_array(msg)[..., 0], frame)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_the_rcl_message_layout_is_checked_against_rosidl(monkeypatch):
    """rcl_publish is used only where rosidl's own conversion of a sample message reads back
    identically through the ctypes structures; a wrong structure is caught."""
    import ctypes

    from sensor_msgs.msg import Image, PointCloud2

    from metricgold_ros import rcl_publish

    assert rcl_publish.layout_matches(Image) and rcl_publish.layout_matches(PointCloud2)

    class SwappedImage(ctypes.Structure):   # width before height: not the C layout
        _fields_ = [(name, kind) for name, kind in rcl_publish.CImage._fields_]
        _fields_[1], _fields_[2] = _fields_[2], _fields_[1]

    class SwappedCloud(ctypes.Structure):   # row_step before point_step
        _fields_ = [(name, kind) for name, kind in rcl_publish.CPointCloud2._fields_]
        _fields_[5], _fields_[6] = _fields_[6], _fields_[5]

    monkeypatch.setattr(rcl_publish, 'CImage', SwappedImage)
    monkeypatch.setattr(rcl_publish, 'CPointCloud2', SwappedCloud)
    assert not rcl_publish.layout_matches(Image)
    assert not rcl_publish.layout_matches(PointCloud2)
    monkeypatch.setattr(rcl_publish, '_CHECKED', {})

    class Publisher:   # what rcl_publisher needs of an rclpy publisher
        handle = None
        msg_type = Image

    class HeaderPublisher(Publisher):
        msg_type = rcl_publish.Header

    assert rcl_publish.rcl_publisher(Publisher()) is None
    assert rcl_publish.rcl_publisher(HeaderPublisher()) is None   # not handled


@pytest.mark.ros
def test_a_failed_rcl_publish_raises_with_rcl_s_message():
    import array
    import ctypes

    import rclpy
    from sensor_msgs.msg import Image

    from metricgold_ros import rcl_publish
    from node_harness import pick_domain_id

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=pick_domain_id())
    try:
        node = rclpy.create_node('rcl_error', context=context)
        rcl, rcutils = rcl_publish._rcl()

        class FailingRcl:   # rcl_publish that fails as rcl does: error state set, code returned
            @staticmethod
            def rcl_publish(*args):
                rcutils.rcutils_set_error_state.argtypes = [ctypes.c_char_p, ctypes.c_char_p,
                                                            ctypes.c_size_t]
                rcutils.rcutils_set_error_state(b'publisher is invalid', b'publisher.c', 7)
                return 200   # RCL_RET_PUBLISHER_INVALID

        sender = rcl_publish.RclPublisher(node.create_publisher(Image, 'e', 1),
                                          (FailingRcl, rcutils))
        msg = Image(height=1, width=4, encoding='mono8', step=4, data=array.array('B', b'abcd'))
        with pytest.raises(rcl_publish.RclPublishError, match='200.*publisher is invalid'):
            sender.publish(msg)
        assert rcutils.rcutils_get_error_string().str == b'error not set'   # reset after
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


@pytest.mark.ros
def test_every_output_arrives_the_same_through_rcl_publish_and_rclpy_publish():
    """One frame published by Outputs with and without rcl_publish: depth, depth/colored,
    depth/uncertainty and points arrive with the same header, layout and bytes."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    from metricgold_core.ros_format.camera_info import camera_model_from_info
    from metricgold_ros.outputs import OutgoingFrame, Outputs
    from metricgold_ros.params import SPECS
    from node_harness import camera_info_msg, pick_domain_id, wait_until

    topics = {'depth': Image, 'depth/colored': Image, 'depth/uncertainty': Image,
              'points': PointCloud2}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=pick_domain_id())
    try:
        node = rclpy.create_node('direct_publish', context=context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        received = {}
        for name, kind in topics.items():
            for ns in ('direct', 'rclpy'):
                node.create_subscription(
                    kind, f'/{ns}/{name}',
                    lambda msg, key=(ns, name): received.setdefault(key, []).append(msg), qos)
        outputs = {ns: Outputs(rclpy.create_node('out', namespace=ns, context=context), qos,
                               direct=(ns == 'direct')) for ns in ('direct', 'rclpy')}
        assert outputs['direct'].direct and not outputs['rclpy'].direct
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        assert wait_until(lambda: executor.spin_once(timeout_sec=0.05) or all(
            out.points.get_subscription_count() and out.uncertainty.get_subscription_count()
            and out.colored.get_subscription_count() for out in outputs.values()), 10.0)
        rgb = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        depth = (RNG.random((48, 64)) * 4 + 0.5).astype(np.float32)
        depth[5, 7] = np.nan
        intrinsics = {'width': 64, 'height': 48, 'fx': 60.0, 'fy': 60.0, 'cx': 31.5, 'cy': 23.5}
        info = camera_info_msg(intrinsics, 1_700_000_000_123_456_789, frame_id='cam_optical')
        cfg = {spec.name: spec.default for spec in SPECS.values()}
        cfg['publish_uncertainty'] = True
        frame = OutgoingFrame(header=info.header, depth=depth,
                              camera=camera_model_from_info(info), source_info=info, rgb=rgb,
                              uncertainty=depth * 0.1, cfg=cfg)
        for out in outputs.values():
            out.publish(frame)
        assert wait_until(lambda: executor.spin_once(timeout_sec=0.05) or
                          len(received) == 2 * len(topics), 10.0), sorted(received)
        for name in topics:
            direct, plain = received[('direct', name)][0], received[('rclpy', name)][0]
            assert direct == plain, name   # every field: header, sizes, fields, bytes
            assert direct.header.frame_id == 'cam_optical'
            assert direct.header.stamp.nanosec == 123_456_789
        cloud = received[('direct', 'points')][0]
        assert len(cloud.data) == 48 * 64 * 16 and [f.name for f in cloud.fields] == [
            'x', 'y', 'z', 'rgb']
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


# ------------------------------------------------------------------ the publish thread

class SlowSink:
    """A publish function that records frames and can be held, as a slow subscriber would."""

    def __init__(self):
        import threading
        self.gate = threading.Event()
        self.gate.set()
        self.published, self.done, self.errors, self.dropped = [], [], [], []

    def publish(self, frame):
        self.gate.wait(10.0)
        if frame == 'bad':
            raise RuntimeError('publish failed')
        self.published.append(frame)


def publish_thread(sink, capacity=2):
    from metricgold_ros.outputs import PublishThread
    return PublishThread(sink.publish, lambda f, ms: sink.done.append((f, ms)),
                         lambda f, exc: sink.errors.append((f, exc)), sink.dropped.append,
                         capacity)


def test_publish_thread_keeps_order_and_a_stalled_publisher_never_blocks_the_producer():
    import time

    from node_harness import wait_until

    sink = SlowSink()
    thread = publish_thread(sink)
    sink.gate.clear()                      # a subscriber that stalls publishing
    thread.submit(0)
    assert wait_until(lambda: not thread.idle() and not thread._waiting, 5.0)   # 0 in flight
    start = time.monotonic()
    for k in range(1, 8):                  # the worker keeps handing over frames
        assert thread.submit(k)
    assert time.monotonic() - start < 0.5, 'submit blocked on a stalled publisher'
    assert sink.dropped == [1, 2, 3, 4, 5]   # bounded: the oldest waiting frames go
    sink.gate.set()
    assert wait_until(thread.idle, 5.0)
    assert sink.published == [0, 6, 7]      # in order, newest kept
    assert [f for f, _ in sink.done] == [0, 6, 7] and all(ms >= 0 for _, ms in sink.done)
    assert thread.close() and not thread.submit(8)


def test_publish_thread_reports_errors_and_publishes_what_waits_when_closed():
    from node_harness import wait_until

    sink = SlowSink()
    thread = publish_thread(sink, capacity=4)
    sink.gate.clear()
    for frame in (0, 'bad', 2, 3):
        thread.submit(frame)
    assert wait_until(lambda: len(thread._waiting) == 3, 5.0)
    sink.gate.set()
    assert thread.close(timeout_s=5.0)      # drains: nothing handed over is lost
    assert sink.published == [0, 2, 3] and not sink.dropped
    assert [(f, str(exc)) for f, exc in sink.errors] == [('bad', 'publish failed')]
