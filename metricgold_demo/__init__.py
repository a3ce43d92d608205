"""The end-to-end demo, kept out of the node package: a camera replaying held-out scenes, the
depth node and a recorder as separate ROS 2 processes, then a report from the saved files.

    metricgold_demo [--out demo_output] ...          (python -m metricgold_demo.run; make demo)
    ros2 launch metricgold_ros demo.launch.py        (the same three processes under launch)

Console scripts: metricgold_demo (run.py), camera_replay, demo_recorder.
"""
import time

# The demo's topics (the launch file and the runner remap the processes onto these).
CAMERA_NAMESPACE = '/demo_camera'
NODE_NAMESPACE = '/demo'
NODE_NAME = 'metricgold_depth'
# The robot's odometry (nav_msgs/Odometry, odom -> base_link) during the drive with odometry.
ODOM_TOPIC = '/odom'
# The camera optical frame in base_link, as the node's `camera_mount` takes it ("x y z qx qy qz
# qw"): 10 cm ahead of and 30 cm above the base, looking along its x axis (optical z forward,
# x right, y down: the rotation every ROS camera driver's optical frame has in its body frame).
CAMERA_MOUNT = '0.1 0 0.3 -0.5 0.5 -0.5 0.5'


def spin_for(node, seconds: float) -> None:
    """Serve `node`'s callbacks for `seconds` (e.g. so reliable messages in flight arrive)."""
    import rclpy
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
