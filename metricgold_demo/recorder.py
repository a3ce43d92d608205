"""The demo's recorder: saves what the depth node publishes, with arrival times.

Per frame: depth/<index>.npy (float32 m), depth_png/<index>.png (uint16 mm), depth_colored/
<index>.png, every N-th cloud as clouds/<index>.ply; the last diagnostics; recorded.json with
stamps and arrival latencies. Frames are matched to the camera's frames.json by header stamp.

It stops after `--count` depth frames, `--timeout` seconds, or, with `--camera-topic`, a grace
period after that topic's last publisher left (frames the node dropped never come); with
`--report` it then writes the report (report.py).

    demo_recorder --out demo_output --count 20 --camera-topic /demo_camera/image --report
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

import numpy as np

from . import spin_for


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', required=True)
    p.add_argument('--count', type=int, required=True, help='stop after this many frames')
    p.add_argument('--timeout', type=float, default=150.0, help='stop after this many seconds')
    p.add_argument('--ply-every', type=int, default=5, help='save every N-th cloud as PLY')
    p.add_argument('--camera-topic', default=None,
                   help='stop GRACE s after this topic has had a publisher and lost it')
    p.add_argument('--grace', type=float, default=5.0,
                   help='seconds to wait for frames in flight once the camera is gone')
    p.add_argument('--report', action='store_true', help='write the report when done')
    return p.parse_args(argv)


class Recorder:
    """Subscribes to the node's outputs and writes them to `out`."""

    def __init__(self, node, out: Path, ply_every: int):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from metricgold_core import ros_format as topics

        self.node = node
        self.out = out
        self.ply_every = max(1, ply_every)
        self.records = {}          # stamp_ns -> record
        self.pending_clouds = {}   # stamp_ns -> PointCloud2 awaiting its depth frame
        self.diagnostics = None
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        node.create_subscription(Image, topics.DEPTH_TOPIC, self._on_depth, qos)
        node.create_subscription(CameraInfo, topics.DEPTH_INFO_TOPIC, self._on_info, qos)
        node.create_subscription(PointCloud2, topics.POINTS_TOPIC, self._on_points, qos)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        for sub in ('depth', 'depth_png', 'depth_colored', 'clouds'):
            (out / sub).mkdir(parents=True, exist_ok=True)

    def _record(self, header) -> dict:
        from metricgold_core.ros_format import stamp_ns
        stamp = stamp_ns(header)
        if stamp not in self.records:
            self.records[stamp] = {'stamp_ns': stamp, 'index': len(self.records),
                                   'frame_id': header.frame_id}
        return self.records[stamp]

    def _on_depth(self, msg) -> None:
        from metricgold_core.io_utils import depth_to_mm_png, save_npy, save_png
        from metricgold_core.ros_format.images import image_to_array
        from metricgold_core.visualize import colorize_depth

        arrival_ns = time.time_ns()
        rec = self._record(msg.header)
        depth = image_to_array(msg)[..., 0].astype(np.float32)
        name = f'{rec["index"]:04d}'
        save_npy(self.out / 'depth' / f'{name}.npy', depth)
        save_png(self.out / 'depth_png' / f'{name}.png', depth_to_mm_png(depth))
        save_png(self.out / 'depth_colored' / f'{name}.png', colorize_depth(depth))
        rec.update(encoding=msg.encoding, height=msg.height, width=msg.width,
                   arrival_ns=arrival_ns, latency_ms=(arrival_ns - rec['stamp_ns']) / 1e6,
                   name=name)
        cloud = self.pending_clouds.pop(rec['stamp_ns'], None)
        if cloud is not None:
            self._save_cloud(rec, cloud)

    def _on_info(self, msg) -> None:
        rec = self._record(msg.header)
        rec['P'] = [float(v) for v in msg.p]

    def _on_points(self, msg) -> None:
        rec = self._record(msg.header)
        if 'name' in rec:
            self._save_cloud(rec, msg)
        else:
            self.pending_clouds[rec['stamp_ns']] = msg

    def _save_cloud(self, rec: dict, msg) -> None:
        from metricgold_core.ply import write_ply
        from metricgold_core.ros_format.clouds import unpack_rgb_float
        from metricgold_ros.outputs import unpack_cloud

        rec['cloud_points'] = int(msg.width * msg.height)
        if rec['index'] % self.ply_every:
            return
        cloud = unpack_cloud(msg)
        path = self.out / 'clouds' / f'{rec["name"]}.ply'
        write_ply(path, np.stack([cloud[axis] for axis in 'xyz'], axis=-1),
                  unpack_rgb_float(cloud['rgb']))
        rec['ply'] = str(path.relative_to(self.out))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if 'metricgold' in status.name:
                self.diagnostics = {'name': status.name, 'level': int.from_bytes(
                    bytes(status.level), 'little') if isinstance(status.level, bytes)
                    else int(status.level), 'message': status.message,
                    'values': {kv.key: kv.value for kv in status.values}}

    def frames_done(self) -> int:
        return sum(1 for rec in self.records.values() if 'name' in rec)

    def save(self) -> None:
        from metricgold_core.io_utils import save_text
        records = sorted(self.records.values(), key=lambda r: r['stamp_ns'])
        save_text(self.out / 'recorded.json', json.dumps(
            {'frames': records, 'diagnostics': self.diagnostics}, indent=1) + '\n')


class CameraWatch:
    """Whether a topic had a publisher that is gone since `grace` seconds (the camera ended)."""

    def __init__(self, node, topic: str, grace_s: float):
        self.node, self.topic, self.grace_s = node, topic, grace_s
        self.seen = False
        self.left_at = None

    def gone(self) -> bool:
        if self.node.count_publishers(self.topic) > 0:
            self.seen, self.left_at = True, None
        elif self.seen and self.left_at is None:
            self.left_at = time.monotonic()
        return self.left_at is not None and time.monotonic() - self.left_at >= self.grace_s


def main(argv=None) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.utilities import remove_ros_args

    # Import what the callbacks use now: an import inside the first callback would delay it by
    # seconds and show up as latency.
    import metricgold_core.io_utils  # noqa: F401
    import metricgold_core.ply  # noqa: F401
    import metricgold_core.ros_format.clouds  # noqa: F401
    import metricgold_core.ros_format.images  # noqa: F401
    import metricgold_core.visualize  # noqa: F401
    import metricgold_ros.outputs  # noqa: F401

    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(remove_ros_args(['recorder'] + argv)[1:])
    rclpy.init(args=['recorder'] + argv)
    node = rclpy.create_node('metricgold_demo_recorder')
    recorder = Recorder(node, Path(args.out), args.ply_every)
    deadline = time.monotonic() + args.timeout
    camera = CameraWatch(node, args.camera_topic, args.grace) if args.camera_topic else None
    print('recorder: ready', flush=True)
    try:
        while recorder.frames_done() < args.count and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            if camera is not None and camera.gone():
                break
        spin_for(node, 1.5)  # the diagnostics and clouds that follow the last depth image
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        recorder.save()
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'recorder: {recorder.frames_done()} depth frames saved', flush=True)
    if args.report:
        from .report import build_report
        if not (Path(args.out) / 'frames.json').is_file():
            print('recorder: no frames.json from the camera: no report', file=sys.stderr)
            return 1
        build_report(Path(args.out))
        print(f'recorder: report {Path(args.out) / "report.md"}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
