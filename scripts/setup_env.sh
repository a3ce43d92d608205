#!/usr/bin/env bash
# Create .venv and install MetricGold with everything its tests and demo need.
# torch goes in first, pinned (a bare `torch` requirement would pull a multi-GB CUDA build on a
# CPU machine). rclpy and the ROS message packages come from a sourced ROS 2 when there is one
# (the venv then sees its site-packages); otherwise from the ros-* wheels on PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
EXTRAS=${EXTRAS:-test,train}
ROS_WHEELS="ros-rclpy ros-ament-index-python ros-sensor-msgs ros-std-msgs ros-geometry-msgs ros-diagnostic-msgs ros-nav-msgs ros-rmw-fastrtps-cpp"

ros_sourced=0
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' >/dev/null 2>&1; then
  ros_sourced=1
fi

# Open3D (the `map` extra, in the test extras) loads libusb-1.0.so.0: Debian's libusb-1.0-0.
need_libusb() { ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; }
if need_libusb; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing libusb-1.0-0 (Open3D needs libusb-1.0.so.0)"
    { apt-get update -qq && apt-get install -y -qq libusb-1.0-0 >/dev/null; } ||
      echo "[setup] WARNING: apt-get could not install libusb-1.0-0: Open3D will not load" >&2
  else
    echo "[setup] WARNING: libusb-1.0.so.0 is missing and this is not root: install it" \
         "(sudo apt-get install libusb-1.0-0) or Open3D (fused maps, their tests) cannot load" >&2
  fi
fi

# colcon with colcon-ros builds the package in a ROS 2 workspace (test_colcon_build): Debian
# ships both. Only where apt-get and root are; elsewhere that test says it is skipped and why.
if ! command -v colcon >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1
then
  echo "[setup] installing colcon and python3-colcon-ros (ROS 2 workspace build)"
  { apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq colcon python3-colcon-ros >/dev/null; } ||
    echo "[setup] WARNING: apt-get could not install colcon: the workspace build test is skipped" >&2
fi

stamp="$VENV/.metricgold-installed"
if [ -f "$stamp" ] && [ "$stamp" -nt setup.py ] && [ "$stamp" -nt "$0" ]; then
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  if [ "$ros_sourced" = 1 ]; then
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
pip_install() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  echo "[setup] installing $TORCH_SPEC"
  pip_install "$TORCH_SPEC"
fi
echo "[setup] installing metricgold_ros[$EXTRAS]"
pip_install -e ".[$EXTRAS]"
if [ "$ros_sourced" = 1 ]; then
  echo "[setup] using the sourced ROS 2 $ROS_DISTRO (rclpy not pip-installed)"
elif ! "$VENV/bin/python" -c 'import rclpy, sensor_msgs.msg, diagnostic_msgs.msg, ament_index_python' \
    >/dev/null 2>&1; then
  echo "[setup] installing ROS 2 Python wheels from PyPI: $ROS_WHEELS"
  # shellcheck disable=SC2086
  pip_install $ROS_WHEELS
fi
touch "$stamp"
