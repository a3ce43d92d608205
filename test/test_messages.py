"""The node's outgoing Image messages (metricgold_ros.messages) read back by the decoder."""
import numpy as np
import pytest

from metricgold_core.ros_format.images import image_to_array, image_to_rgb8
from metricgold_ros.messages import array_to_image
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
