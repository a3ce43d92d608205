"""The end-to-end demo: camera replay -> depth node -> recorder -> report (separate processes)."""
import time


def spin_for(node, seconds: float) -> None:
    """Serve `node`'s callbacks for `seconds` (e.g. so reliable messages in flight arrive)."""
    import rclpy
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
