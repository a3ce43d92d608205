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


def spin_for(node, seconds: float) -> None:
    """Serve `node`'s callbacks for `seconds` (e.g. so reliable messages in flight arrive)."""
    import rclpy
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
