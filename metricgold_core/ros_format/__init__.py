"""The ROS message formats, without ROS: one converter per concern, shared by the node
(rclpy messages) and offline processing (`rosbags` messages), importing neither.

    images       Image / CompressedImage -> numpy (every input encoding), sparse depth images
    camera_info  CameraInfo <-> CameraModel (binning, ROI, the depth image's CameraInfo)
    clouds       the organized x y z rgb PointCloud2 layout and the one depth back-projection

Readers raise `BadInput` (a ValueError) whose `kind` names the node's diagnostics counter.

May import: numpy, OpenCV, and of the core camera, scale (which pixels are measurements) and
io_utils; never rclpy, a message package or torch.
"""


# The node's output topics, relative to its namespace; `metricgold process` writes its bags
# under the same names.
DEPTH_TOPIC = 'depth'                        # 32FC1 metres
DEPTH_INFO_TOPIC = 'depth/camera_info'
DEPTH_COLORED_TOPIC = 'depth/colored'        # bgr8
DEPTH_UNCERTAINTY_TOPIC = 'depth/uncertainty'
DEPTH_RELATIVE_TOPIC = 'depth/relative'      # affine-invariant models without a scale source
POINTS_TOPIC = 'points'                      # organized PointCloud2 x y z rgb


class BadInput(ValueError):
    """A message that cannot be used; `kind` names the diagnostics counter it goes to."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def stamp_ns(header) -> int:
    """A std_msgs/Header's stamp in integer nanoseconds (rclpy and rosbags messages alike)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def set_stamp(header, ns: int) -> None:
    """Set a std_msgs/Header's stamp to integer nanoseconds `ns`, the inverse of stamp_ns
    (rclpy and rosbags messages alike: header.stamp.sec and .nanosec, 0 <= nanosec < 1e9)."""
    header.stamp.sec, header.stamp.nanosec = divmod(int(ns), 1_000_000_000)
