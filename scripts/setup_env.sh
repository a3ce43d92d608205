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
ROS_WHEELS="ros-rclpy ros-sensor-msgs ros-std-msgs ros-geometry-msgs ros-diagnostic-msgs ros-rmw-fastrtps-cpp"

ros_sourced=0
if [ -n "${ROS_DISTRO:-}" ] && "$PYTHON" -c 'import rclpy' >/dev/null 2>&1; then
  ros_sourced=1
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
elif ! "$VENV/bin/python" -c 'import rclpy, sensor_msgs.msg, diagnostic_msgs.msg' >/dev/null 2>&1; then
  echo "[setup] installing ROS 2 Python wheels from PyPI: $ROS_WHEELS"
  # shellcheck disable=SC2086
  pip_install $ROS_WHEELS
fi
touch "$stamp"
