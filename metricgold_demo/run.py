"""`make demo`: camera replay, depth node and recorder as separate ROS 2 processes, then a report.

    metricgold_demo [--out demo_output] [--count 24] [--rate 2] [--images DIR] [--checkpoint DIR]
                    [--trajectory 16] [--trajectory-kind indoor] [--no-odometry]
    (or python -m metricgold_demo.run)

After the `--count` scenes the camera drives `--trajectory` frames through one procedural
layout (a ground robot indoors, or a car); the report fuses the node's depth of those frames
along the true poses into a map (map.png, map_node_depth.ply, accuracy / completeness /
F-score; Open3D, the `map` extra) and measures TAE and scale stability. Then the camera drives
the same frames again with the robot's odometry (nav_msgs/Odometry on /odom) and the node's
`scale_source` switched to `odometry` (camera_replay.py): the report sets the map with odometry
beside the map without (map_odometry.png). `--no-odometry` leaves the second drive out.

Everything runs in a private ROS domain. The node starts Fast DDS with its own profile (a 16 MB
shared-memory segment, metricgold_ros/fastdds_profile.xml), and the camera and the recorder,
which send and receive messages as large, get the same file: with Fast DDS' LARGE_DATA
transports instead, depth frames reached the recorder up to 2.5 s after the node published them,
and 2 of 40 never did (the node's outputs are keep-last 2). The camera starts once the ROS graph
shows the node and the recorder subscribed; the run ends by itself: after the camera's last
frame the recorder waits for the depth of the frames in flight, then the node is stopped. Where
ROS' launch tools are installed, launch/demo.launch.py starts the same three processes.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import sys
import time

from metricgold_core.ros_format import DEPTH_TOPIC
from metricgold_ros import dds_profile
from . import CAMERA_NAMESPACE, NODE_NAME, NODE_NAMESPACE, ODOM_TOPIC

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    p = argparse.ArgumentParser(description='MetricGold end-to-end demo over ROS 2.')
    p.add_argument('--out', default='demo_output', help='output folder (replaced)')
    p.add_argument('--count', type=int, default=24, help='camera frames to publish')
    p.add_argument('--rate', type=float, default=2.0, help='camera rate (Hz)')
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--images', default=None, help='replay your own image folder instead')
    p.add_argument('--trajectory', type=int, default=16, metavar='N',
                   help='then N frames of a procedural trajectory, fused into a map (0 = none; '
                   'not with --images)')
    p.add_argument('--trajectory-kind', choices=('indoor', 'outdoor'), default='indoor')
    p.add_argument('--no-odometry', action='store_true',
                   help='no second drive with odometry and scale_source odometry')
    p.add_argument('--checkpoint', default='', help="checkpoint dir ('' = packaged model)")
    p.add_argument('--params', default=None, help='node parameters (default config/depth.yaml)')
    p.add_argument('--mode', choices=('exact', 'fast'), default=None,
                   help='inference mode (default: as the parameters file says)')
    p.add_argument('--max-latency-ms', type=float, default=None)
    p.add_argument('--timeout', type=float, default=150.0, help='hard stop (s)')
    return p.parse_args(argv)


def params_file() -> Path:
    """config/depth.yaml of the source checkout, else the installed package's."""
    candidate = ROOT / 'config' / 'depth.yaml'
    if candidate.exists():
        return candidate
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('metricgold_ros')) / 'config' / 'depth.yaml'


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.images:
        args.trajectory = 0   # a folder has no poses
    odometry = args.trajectory > 0 and not args.no_odometry
    total = args.count + max(args.trajectory, 0) * (2 if odometry else 1)
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    logs = out / 'logs'
    logs.mkdir(parents=True)
    # This process joins the private domain too, to watch the graph.
    os.environ.update(ROS_DOMAIN_ID=str(random.Random(os.getpid()).randint(101, 200)),
                      ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', PYTHONUNBUFFERED='1')
    # The node applies its Fast DDS profile itself (and says so in its diagnostics); where the
    # user chose a profile or transports of their own, apply leaves them alone.
    peer_env = dict(os.environ)
    dds_profile.apply(peer_env)
    image, info = f'{CAMERA_NAMESPACE}/image', f'{CAMERA_NAMESPACE}/camera_info'
    node_args = ['metricgold_ros.depth_node', '--ros-args', '--params-file',
                 str(args.params or params_file()), '-r', f'__ns:={NODE_NAMESPACE}',
                 '-r', f'image:={image}', '-r', f'camera_info:={info}', '-r',
                 f'odom:={ODOM_TOPIC}']
    if args.checkpoint:
        node_args += ['-p', f'checkpoint:={Path(args.checkpoint).resolve()}']
    if args.max_latency_ms:
        node_args += ['-p', f'max_latency_ms:={args.max_latency_ms}']
    if args.mode:
        node_args += ['-p', f'mode:={args.mode}']
    started = time.monotonic()
    deadline = started + args.timeout
    print(f'demo: output in {out}; ROS_DOMAIN_ID={os.environ["ROS_DOMAIN_ID"]}', flush=True)
    node = _spawn(node_args, logs / 'depth_node.log')
    recorder = _spawn(['metricgold_demo.recorder', '--out', str(out), '--count',
                       str(total), '--timeout', str(args.timeout), '--camera-topic', image,
                       '--grace', str(5.0 + (args.max_latency_ms or 2000) / 1e3),
                       '--ros-args', '-r', f'__ns:={NODE_NAMESPACE}'], logs / 'recorder.log',
                      peer_env)
    camera, ready = None, False
    try:
        # The node subscribes to its image topic once its model is loaded, the recorder to the
        # node's depth: with both in the graph the first frames measure the pipeline.
        ready = wait_for_subscribers({image: node, f'{NODE_NAMESPACE}/{DEPTH_TOPIC}': recorder},
                                     deadline)
        if not ready:
            print('demo: the depth node or recorder did not start; see logs/', file=sys.stderr)
        else:
            camera_args = ['metricgold_demo.camera_replay', '--out', str(out), '--count',
                           str(args.count), '--rate', str(args.rate), '--height', str(args.height),
                           '--width', str(args.width), '--trajectory', str(args.trajectory),
                           '--trajectory-kind', args.trajectory_kind]
            if args.images:
                camera_args += ['--images', str(Path(args.images).resolve())]
            if odometry:
                camera_args += ['--odometry-node', f'{NODE_NAMESPACE}/{NODE_NAME}']
            camera = _spawn(camera_args + ['--ros-args', '-r', f'image:={image}', '-r',
                                           f'camera_info:={info}', '-r', f'odom:={ODOM_TOPIC}'],
                            logs / 'camera.log', peer_env)
            # The recorder ends by itself: every frame in, or the camera gone plus a grace.
            recorder.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        print('demo: timed out', file=sys.stderr)
    finally:
        for proc in (camera, recorder):
            if proc is not None:
                _stop(proc, 10.0)
        _stop(node)
    if not ready or not (out / 'frames.json').exists() or \
            not (out / 'recorded.json').exists():
        print((logs / 'depth_node.log').read_text(errors='replace')[-3000:], file=sys.stderr)
        return 1
    from .report import build_report
    summary = build_report(out)   # budget and model from the node's recorded diagnostics
    lat, node = summary['latency_ms'], summary['latency_stages_ms']['node']
    print(f'demo: {summary["received"]}/{summary["published"]} frames (the node published '
          f'{summary["delivery"]["node_published"]}), {summary["output_rate_hz"]:.2f} Hz, '
          f'latency p50 {lat["p50"]:.0f} ms p95 {lat["p95"]:.0f} ms (the node\'s own: p50 '
          f'{node["p50"]:.0f} ms p95 {node["p95"]:.0f} ms); report.md says where frames and '
          'time went', flush=True)
    if summary['metrics']:
        m = summary['metrics']
        print(f'demo: AbsRel {m["abs_rel"]:.3f}, delta1 {m["delta1"]:.3f} over '
              f'{m["images"]} frames with ground truth', flush=True)
    print(f'demo: report {out / "report.md"} ({time.monotonic() - started:.0f} s)', flush=True)
    return 0 if summary['received'] else 1


def wait_for_subscribers(topics: dict, deadline: float) -> bool:
    """Wait until the ROS graph shows a subscriber on each topic of {topic: process expected to
    subscribe}; False when such a process exits first or the deadline passes."""
    import rclpy

    rclpy.init(args=['demo_runner'])
    watcher = rclpy.create_node('metricgold_demo_runner')
    try:
        pending = dict(topics)
        while pending and time.monotonic() < deadline:
            for topic, proc in list(pending.items()):
                if watcher.count_subscribers(topic) > 0:
                    del pending[topic]
                elif proc.poll() is not None:
                    return False
            time.sleep(0.2)
        return not pending
    finally:
        watcher.destroy_node()
        rclpy.try_shutdown()


def _spawn(args: list, log: Path, env: dict | None = None) -> subprocess.Popen:
    with open(log, 'wb') as handle:   # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, '-m', *args], cwd=ROOT, stdout=handle,
                                stderr=subprocess.STDOUT, env=env)


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


if __name__ == '__main__':
    sys.exit(main())
