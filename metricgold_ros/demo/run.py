"""`make demo`: camera replay, depth node and recorder as separate ROS 2 processes, then a report.

    python -m metricgold_ros.demo.run [--out demo_output] [--count 24] [--rate 2]
                                      [--images DIR] [--checkpoint DIR]

Everything runs in a private ROS domain over Fast DDS with its LARGE_DATA transports (so large
images reach best-effort subscribers too). The run ends by itself: after the camera's last frame
the recorder waits for the depth of the frames in flight, then the node is stopped.
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

ROOT = Path(__file__).resolve().parents[2]


def parse_args(argv):
    p = argparse.ArgumentParser(description='MetricGold end-to-end demo over ROS 2.')
    p.add_argument('--out', default='demo_output', help='output folder (replaced)')
    p.add_argument('--count', type=int, default=24, help='camera frames to publish')
    p.add_argument('--rate', type=float, default=2.0, help='camera rate (Hz)')
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--images', default=None, help='replay your own image folder instead')
    p.add_argument('--checkpoint', default='', help="checkpoint dir ('' = packaged model)")
    p.add_argument('--params', default=None, help='node parameters (default config/depth.yaml)')
    p.add_argument('--mode', choices=('exact', 'fast'), default=None,
                   help='inference mode (default: as the parameters file says)')
    p.add_argument('--max-latency-ms', type=float, default=None)
    p.add_argument('--timeout', type=float, default=150.0, help='hard stop (s)')
    return p.parse_args(argv)


def params_file() -> Path:
    for candidate in (ROOT / 'config' / 'depth.yaml',):
        if candidate.exists():
            return candidate
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory('metricgold_ros')) / 'config' / 'depth.yaml'


def _spawn(args: list, env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, 'wb')
    return subprocess.Popen([sys.executable, '-m', *args], env=env, cwd=ROOT, stdout=handle,
                            stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out).resolve()
    if out.exists():
        shutil.rmtree(out)
    (out / 'logs').mkdir(parents=True)
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.Random(os.getpid()).randint(101, 200)),
               ROS_AUTOMATIC_DISCOVERY_RANGE='LOCALHOST', FASTDDS_BUILTIN_TRANSPORTS='LARGE_DATA',
               PYTHONUNBUFFERED='1')
    remap = ['-r', 'image:=/demo_camera/image', '-r', 'camera_info:=/demo_camera/camera_info']
    node_args = ['metricgold_ros.depth_node', '--ros-args', '--params-file',
                 str(args.params or params_file()), '-r', '__ns:=/demo', *remap]
    if args.checkpoint:
        node_args += ['-p', f'checkpoint:={Path(args.checkpoint).resolve()}']
    if args.max_latency_ms:
        node_args += ['-p', f'max_latency_ms:={args.max_latency_ms}']
    if args.mode:
        node_args += ['-p', f'mode:={args.mode}']
    started = time.monotonic()
    print(f'demo: output in {out}; ROS_DOMAIN_ID={env["ROS_DOMAIN_ID"]}', flush=True)
    node = _spawn(node_args, env, out / 'logs' / 'depth_node.log')
    recorder = _spawn(['metricgold_ros.demo.recorder', '--out', str(out), '--count',
                       str(args.count), '--timeout', str(args.timeout), '--ros-args',
                       '-r', '__ns:=/demo'], env, out / 'logs' / 'recorder.log')
    status = 0
    camera = None
    deadline = started + args.timeout
    try:
        # The camera starts once the node has its model loaded and the recorder listens, so
        # the first frames measure the pipeline, not start-up.
        if not _wait_for_line([(node, out / 'logs' / 'depth_node.log', 'ready:'),
                               (recorder, out / 'logs' / 'recorder.log', 'recorder: ready')],
                              deadline):
            print('demo: the depth node or recorder did not start; see logs/', file=sys.stderr)
            status = 1
        else:
            camera_args = ['metricgold_ros.demo.camera_replay', '--out', str(out), '--count',
                           str(args.count), '--rate', str(args.rate), '--height', str(args.height),
                           '--width', str(args.width)]
            if args.images:
                camera_args += ['--images', str(Path(args.images).resolve())]
            camera = _spawn(camera_args + ['--ros-args', '-r', 'image:=/demo_camera/image', '-r',
                                           'camera_info:=/demo_camera/camera_info'],
                            env, out / 'logs' / 'camera.log')
            camera.wait(max(1.0, deadline - time.monotonic()))
            # frames in flight: one budget plus a margin, then the recorder saves and exits
            grace = time.monotonic() + 5.0 + (args.max_latency_ms or 2000) / 1e3
            while recorder.poll() is None and time.monotonic() < min(grace, deadline):
                time.sleep(0.2)
    except subprocess.TimeoutExpired:
        print('demo: timed out', file=sys.stderr)
    finally:
        for proc in (camera, recorder):
            if proc is not None:
                _stop(proc, 10.0)
        _stop(node)
    if status or not (out / 'frames.json').exists() or not (out / 'recorded.json').exists():
        print((out / 'logs' / 'depth_node.log').read_text(errors='replace')[-3000:],
              file=sys.stderr)
        return 1
    from metricgold_core.model import load_default_or
    from .report import build_report
    meta = load_default_or(args.checkpoint or None).meta
    note = ('Model: the packaged default model (tiny preset trained on procedural scenes: '
            'see MODEL_CARD.md).' if not args.checkpoint else f'Model: {args.checkpoint}')
    if meta.get('untrained'):
        note += ' This checkpoint is UNTRAINED: its depth is meaningless.'
    if args.mode == 'fast':
        note += ' Fast mode (light decoder, pooled attention: approximate).'
    summary = build_report(out, args.max_latency_ms or _budget(args.params or params_file()),
                           model_note=note)
    lat = summary['latency_ms']
    print(f'demo: {summary["received"]}/{summary["published"]} frames, '
          f'{summary["output_rate_hz"]:.2f} Hz, latency p50 {lat["p50"]:.0f} ms '
          f'p95 {lat["p95"]:.0f} ms', flush=True)
    if summary['metrics']:
        m = summary['metrics']
        print(f'demo: AbsRel {m["abs_rel"]:.3f}, delta1 {m["delta1"]:.3f} over '
              f'{m["images"]} frames with ground truth', flush=True)
    print(f'demo: report {out / "report.md"} ({time.monotonic() - started:.0f} s)', flush=True)
    return 0 if summary['received'] else 1


def _wait_for_line(watch: list, deadline: float) -> bool:
    """Wait until each (process, log, text) has written text to its log; False if one died."""
    pending = list(watch)
    while pending and time.monotonic() < deadline:
        for item in list(pending):
            proc, log, text = item
            if text in log.read_text(errors='replace'):
                pending.remove(item)
            elif proc.poll() is not None:
                return False
        time.sleep(0.2)
    return not pending


def _budget(path) -> float | None:
    import yaml
    try:
        data = yaml.safe_load(Path(path).read_text())
        for section in data.values():
            value = section.get('ros__parameters', {}).get('max_latency_ms')
            if value is not None:
                return float(value)
    except (OSError, AttributeError, yaml.YAMLError):
        return None
    return None


if __name__ == '__main__':
    sys.exit(main())
