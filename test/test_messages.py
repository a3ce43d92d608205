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


def test_message_buffers_are_taken_without_a_copy():
    """The message's data is the reusable buffer itself (rosidl copies a `bytes` and walks a
    numpy array element by element): filling the buffer is the only write before publish()."""
    from metricgold_core.camera.geometry import CameraModel
    from metricgold_ros.outputs import ByteBuffer, CloudPacker

    buffer = ByteBuffer()
    header = image_msg(RGB, 'rgb8', 1).header
    msg = array_to_image(np.ones((12, 10), np.float32), '32FC1', header, buffer)
    assert msg.data is buffer.data
    packer = CloudPacker()
    camera = CameraModel(width=10, height=12, fx=9.0, fy=9.0, cx=4.5, cy=5.5)
    cloud = packer.to_msg(header, packer.pack(np.ones((12, 10), np.float32), camera))
    assert cloud.data is packer._buffer.data and len(cloud.data) == 12 * 10 * 16


@pytest.mark.ros
def test_a_reused_buffer_is_free_once_publish_returns():
    """rclpy's publish() serialises the data before it returns: overwriting the buffer right
    after the call (as the node does with the next frame) leaves every received message
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
        buffer = ByteBuffer()
        frames = [np.full((480, 640), k, np.float32) for k in (1.0, 2.0, 3.0)]
        header = image_msg(RGB, 'rgb8', 1).header
        for frame in frames:
            pub.publish(array_to_image(frame, '32FC1', header, buffer))
            buffer.view[:] = 255   # the next frame's fill starts at once
        assert wait_until(lambda: executor.spin_once(timeout_sec=0.05) or len(received) == 3,
                          10.0), f'{len(received)} of 3 messages arrived'
        for msg, frame in zip(received, frames):
            np.testing.assert_array_equal(image_to_array(msg)[..., 0], frame)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


@pytest.mark.ros
def test_every_output_arrives_with_the_frame_s_header_and_values():
    """One frame published by Outputs: depth, depth/colored, depth/uncertainty and points
    arrive with the input's header and the frame's values, byte for byte."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    from metricgold_core.ros_format.camera_info import camera_model_from_info
    from metricgold_ros.outputs import OutgoingFrame, Outputs, unpack_cloud
    from metricgold_ros.params import SPECS
    from node_harness import camera_info_msg, pick_domain_id, wait_until

    topics = {'depth': Image, 'depth/colored': Image, 'depth/uncertainty': Image,
              'points': PointCloud2}
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=pick_domain_id())
    try:
        node = rclpy.create_node('outputs_sink', context=context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        received = {}
        for name, kind in topics.items():
            node.create_subscription(
                kind, f'/out/{name}',
                lambda msg, name=name: received.setdefault(name, []).append(msg), qos)
        out = Outputs(rclpy.create_node('out', namespace='out', context=context), qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        assert wait_until(lambda: executor.spin_once(timeout_sec=0.05) or (
            out.points.get_subscription_count() and out.uncertainty.get_subscription_count()
            and out.colored.get_subscription_count()), 10.0)
        rgb = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
        depth = (RNG.random((48, 64)) * 4 + 0.5).astype(np.float32)
        depth[5, 7] = np.nan
        intrinsics = {'width': 64, 'height': 48, 'fx': 60.0, 'fy': 60.0, 'cx': 31.5, 'cy': 23.5}
        info = camera_info_msg(intrinsics, 1_700_000_000_123_456_789, frame_id='cam_optical')
        cfg = {spec.name: spec.default for spec in SPECS.values()}
        cfg['publish_uncertainty'] = True
        camera = camera_model_from_info(info)
        frame = OutgoingFrame(header=info.header, depth=depth, camera=camera, source_info=info,
                              rgb=rgb, uncertainty=depth * 0.1, cfg=cfg)
        out.publish(frame)
        assert wait_until(lambda: executor.spin_once(timeout_sec=0.05) or
                          len(received) == len(topics), 10.0), sorted(received)
        for name in topics:
            msg = received[name][0]
            assert msg.header.frame_id == 'cam_optical', name
            assert msg.header.stamp.nanosec == 123_456_789, name
        np.testing.assert_array_equal(image_to_array(received['depth'][0])[..., 0], depth)
        np.testing.assert_array_equal(image_to_array(received['depth/uncertainty'][0])[..., 0],
                                      depth * 0.1)
        # the expected messages, built again by the same builders after the publish
        assert received['depth/colored'][0].data == out.colored_image(info.header, depth,
                                                                      cfg).data
        cloud = received['points'][0]
        assert len(cloud.data) == 48 * 64 * 16 and [f.name for f in cloud.fields] == [
            'x', 'y', 'z', 'rgb']
        assert cloud == out.cloud(info.header, depth, camera, rgb, cfg)
        np.testing.assert_array_equal(unpack_cloud(cloud)['z'], depth)
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
