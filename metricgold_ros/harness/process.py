"""The depth node as a child process in a ROS domain of its own, and the environment it runs in.

Nothing here imports ROS: the node and the caller's rclpy read the environment built by
`ros_env`; `node_command` is the command line `ros2 run` would give.
"""
from __future__ import annotations

import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import time

import yaml

from metricgold_ros import dds_profile

# The folder that holds the metricgold_ros package (the repository, or site-packages): the
# node's working directory, so that `python -m metricgold_ros.depth_node` imports this copy.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
DEPTH_NODE = ('-m', 'metricgold_ros.depth_node')
# The remappings every harness user shares: the camera on /cam, the node in /test.
CAMERA_REMAPS = ('-r', 'image:=/cam/image', '-r', 'camera_info:=/cam/camera_info',
                 '-r', 'image/compressed:=/cam/image/compressed')


def pick_domain_id() -> int:
    """A ROS_DOMAIN_ID in 1..100, random and mixed with the pid: two runs (two test sessions, a
    benchmark beside a test) on one host rarely share a domain."""
    rng = random.Random(os.getpid() * 1000003 + time.time_ns())
    return rng.randint(1, 100)


def ros_env(domain_id: int, large_data: bool = False, dds_profile_on: bool = True) -> dict:
    """The environment of a ROS process of the harness: `domain_id`, discovery on this host
    only, unbuffered output, and the Fast DDS choice made here rather than inherited from the
    caller's shell: the node's own profile (metricgold_ros.dds_profile applies it when no
    profile variable is set), FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA with `large_data` (the
    node then leaves its profile out), or no profile at all with `dds_profile_on` False."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain_id),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1')
    for name in dds_profile.PROFILE_VARIABLES + ('FASTDDS_BUILTIN_TRANSPORTS',
                                                 dds_profile.OPT_OUT):
        env.pop(name, None)
    if large_data:
        env['FASTDDS_BUILTIN_TRANSPORTS'] = 'LARGE_DATA'
    if not dds_profile_on:
        env[dds_profile.OPT_OUT] = 'off'
    return env


def use_env(env: dict) -> None:
    """Make this process's environment `env` (a ros_env), before rclpy.init: the caller then
    joins the domain, and the Fast DDS choice, of the processes it starts with it."""
    for name in set(os.environ) - set(env):
        del os.environ[name]
    os.environ.update(env)


def write_params(path: Path, params: dict) -> Path:
    """A parameters file giving the node (any namespace) `params`; its path."""
    path.write_text(yaml.safe_dump({'/**/metricgold_depth': {'ros__parameters': params}}))
    return path


def node_command(params_file: Path, extra=(), program=DEPTH_NODE,
                 interpreter: str | None = sys.executable, namespace: str = '/test') -> list:
    """The node's command line; `interpreter` None runs `program` itself (an installed
    executable, as `ros2 run` does). The camera is on /cam (CAMERA_REMAPS), the outputs in
    `namespace` ('' for the root)."""
    ns = ('-r', f'__ns:={namespace}') if namespace else ()
    return [*([interpreter] if interpreter else []), *program, '--ros-args',
            '--params-file', str(params_file), *ns, *CAMERA_REMAPS, *extra]


def wait_until(predicate, timeout_s: float, period_s: float = 0.05):
    """The first truthy value of `predicate()` within `timeout_s`, else its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(period_s)
    return predicate()


class NodeProcess:
    """The depth node as a child process, its output in a log file."""

    def __init__(self, params_file: Path, env: dict, log_path: Path, extra=(),
                 program=DEPTH_NODE, interpreter: str | None = sys.executable,
                 cwd: Path = PACKAGE_PARENT, namespace: str = '/test'):
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.proc = subprocess.Popen(
            node_command(params_file, extra, program, interpreter, namespace), cwd=cwd, env=env,
            stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors='replace')

    def wait_ready(self, predicate, timeout_s: float, period_s: float = 0.05):
        """The first truthy value of `predicate()` (e.g. the node answered a frame) within
        `timeout_s`; RuntimeError with the end of the log when the node exits first or is not
        ready in time."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = predicate()
            if value:
                return value
            if not self.alive():
                raise RuntimeError(f'the node exited ({self.proc.returncode}) before it was '
                                   f'ready; log:\n{self.log()[-4000:]}')
            if time.monotonic() > deadline:
                raise RuntimeError(f'the node was not ready within {timeout_s:.0f} s; '
                                   f'log:\n{self.log()[-4000:]}')
            time.sleep(period_s)

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGINT (as Ctrl-C), up to `timeout_s` to exit, then killed; the log closed. The exit
        code."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
