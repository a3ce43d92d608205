"""Header stamps <-> integer nanoseconds (metricgold_core.ros_format.stamp_ns / set_stamp), for
rclpy and rosbags messages."""
import numpy as np
import pytest
from std_msgs.msg import Header

from metricgold_core.ros_format import set_stamp, stamp_ns

NS = [0, 1, 999_999_999, 10 ** 9, 10 ** 9 + 1, 7 * 10 ** 9, 1_700_000_000 * 10 ** 9 + 123,
      2 ** 31 * 10 ** 9 - 1]


@pytest.mark.parametrize('ns', NS)
def test_set_stamp_is_the_exact_inverse_of_stamp_ns(ns):
    header = Header()
    set_stamp(header, ns)
    assert (header.stamp.sec, header.stamp.nanosec) == (ns // 10 ** 9, ns % 10 ** 9)
    assert stamp_ns(header) == ns
    set_stamp(header, np.int64(ns))   # numpy integers too (rclpy wants Python ints)
    assert stamp_ns(header) == ns


def test_a_whole_second_has_zero_nanoseconds():
    header = Header()
    set_stamp(header, 1_700_000_000 * 10 ** 9)
    assert (header.stamp.sec, header.stamp.nanosec) == (1_700_000_000, 0)


def test_set_stamp_on_rosbags_messages():
    typesys = pytest.importorskip('rosbags.typesys')
    types = typesys.get_typestore(typesys.Stores.ROS2_HUMBLE).types
    header = types['std_msgs/msg/Header'](stamp=types['builtin_interfaces/msg/Time'](
        sec=0, nanosec=0), frame_id='cam')
    for ns in NS:
        set_stamp(header, ns)
        assert (header.stamp.sec, header.stamp.nanosec) == divmod(ns, 10 ** 9)
        assert stamp_ns(header) == ns
