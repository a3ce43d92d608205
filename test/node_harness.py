"""The node harness under the name the node tests import: metricgold_ros.harness (one place for
the ROS environment, the node process, the client and the test messages), plus ROOT.

New code imports metricgold_ros.harness directly.
"""
from pathlib import Path

from metricgold_ros.harness import *  # noqa: F401,F403
from metricgold_ros.harness import __all__ as _harness_names

ROOT = Path(__file__).resolve().parents[1]
__all__ = ['ROOT', *_harness_names]
