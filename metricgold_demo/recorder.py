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
import queue
import sys
import threading
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


# Keep-last depth of every subscription: deep enough that no frame is replaced in the
# recorder's history while it is behind (the node's own outputs are keep-last 2).
QUEUE_DEPTH = 50
# zlib level of the saved PNGs: level 1 encodes a 640x480 depth PNG ~4x faster than the
# default 6 (20 against 85 ms here) for files ~1.3x larger.
PNG_COMPRESS_LEVEL = 1


class Recorder:
    """Subscribes to the node's outputs and writes them to `out`.

    The subscription callbacks (the executor thread) only note when and how each message came
    (rclpy's MessageInfo: the node's publish time, the DDS reception time and the publisher's
    sequence number) and queue it; one writer thread converts and saves. Writing a frame's
    files takes longer than a frame at 2 Hz on a busy 2-core machine: done in the callbacks, it
    delayed the next message's callback by up to the write time and counted it as latency.
    """

    def __init__(self, node, out: Path, ply_every: int):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from metricgold_core import ros_format as topics

        self.node = node
        self.out = out
        self.ply_every = max(1, ply_every)
        self.records = {}          # stamp_ns -> record
        self.diagnostics = None
        self.write_errors = []
        self._lock = threading.Lock()       # records: callbacks and the writer both update them
        self._jobs = queue.Queue()          # (writer method, message, record); None ends
        for sub in ('depth', 'depth_png', 'depth_colored', 'clouds'):
            (out / sub).mkdir(parents=True, exist_ok=True)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=QUEUE_DEPTH,
                         reliability=ReliabilityPolicy.RELIABLE)
        # topic -> (type, callback(msg, info)): a new recorded output is one more line here
        subscriptions = {
            topics.DEPTH_TOPIC: (Image, self._on_depth),
            topics.DEPTH_INFO_TOPIC: (CameraInfo, self._on_info),
            topics.POINTS_TOPIC: (PointCloud2, self._on_points),
        }
        for topic, (msg_type, callback) in subscriptions.items():
            node.create_subscription(msg_type, topic, callback, qos)
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diag, 10)
        self._writer = threading.Thread(target=self._write_loop, name='recorder_writer',
                                        daemon=True)
        self._writer.start()

    # ---- executor thread: note the arrival, queue the work -------------------------------

    def _record(self, header) -> dict:
        """The record of a frame by its stamp (made at the first of its messages); hold _lock."""
        from metricgold_core.ros_format import stamp_ns
        stamp = stamp_ns(header)
        if stamp not in self.records:
            self.records[stamp] = {'stamp_ns': stamp, 'index': len(self.records),
                                   'frame_id': header.frame_id}
        return self.records[stamp]

    def _on_depth(self, msg, info) -> None:
        arrival_ns = time.time_ns()
        with self._lock:
            rec = self._record(msg.header)
            rec.update(encoding=msg.encoding, height=msg.height, width=msg.width,
                       arrival_ns=arrival_ns, latency_ms=(arrival_ns - rec['stamp_ns']) / 1e6,
                       **arrival_facts(info, arrival_ns))
        self._jobs.put((self._write_depth, msg, rec))

    def _on_info(self, msg, info) -> None:
        with self._lock:
            self._record(msg.header)['P'] = [float(v) for v in msg.p]

    def _on_points(self, msg, info) -> None:
        with self._lock:
            rec = self._record(msg.header)
            rec['cloud_points'] = int(msg.width * msg.height)
            keep = rec['index'] % self.ply_every == 0
        if keep:   # only the clouds to be saved wait in memory
            self._jobs.put((self._write_cloud, msg, rec))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if 'metricgold' in status.name:
                self.diagnostics = {'name': status.name, 'level': int.from_bytes(
                    bytes(status.level), 'little') if isinstance(status.level, bytes)
                    else int(status.level), 'message': status.message,
                    'values': {kv.key: kv.value for kv in status.values}}

    # ---- writer thread -------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            write, msg, rec = job
            try:
                write(msg, rec)
            except Exception as exc:   # noqa: BLE001 - a failed file is reported, not fatal
                with self._lock:
                    self.write_errors.append(f'frame {rec["index"]}: {exc!r}')

    def _write_depth(self, msg, rec: dict) -> None:
        from metricgold_core.io_utils import depth_to_mm_png, save_npy, save_png
        from metricgold_core.ros_format.images import image_to_array
        from metricgold_core.visualize import colorize_depth

        started = time.perf_counter()
        depth = image_to_array(msg)[..., 0].astype(np.float32)
        name = f'{rec["index"]:04d}'
        save_npy(self.out / 'depth' / f'{name}.npy', depth)
        save_png(self.out / 'depth_png' / f'{name}.png', depth_to_mm_png(depth),
                 compress_level=PNG_COMPRESS_LEVEL)
        save_png(self.out / 'depth_colored' / f'{name}.png', colorize_depth(depth),
                 compress_level=PNG_COMPRESS_LEVEL)
        with self._lock:
            rec.update(name=name, write_ms=(time.perf_counter() - started) * 1e3)

    def _write_cloud(self, msg, rec: dict) -> None:
        from metricgold_core.offline.ply import write_ply
        from metricgold_core.ros_format.clouds import unpack_rgb_float
        from metricgold_ros.outputs import unpack_cloud

        cloud = unpack_cloud(msg)
        path = self.out / 'clouds' / f'{rec["index"]:04d}.ply'
        write_ply(path, np.stack([cloud[axis] for axis in 'xyz'], axis=-1),
                  unpack_rgb_float(cloud['rgb']))
        with self._lock:
            rec['ply'] = str(path.relative_to(self.out))

    # ---- main thread ---------------------------------------------------------------------

    def frames_received(self) -> int:
        with self._lock:
            return sum(1 for rec in self.records.values() if 'arrival_ns' in rec)

    def close(self, timeout_s: float = 60.0) -> None:
        """Let the writer finish what was received, then stop it."""
        self._jobs.put(None)
        self._writer.join(timeout_s)

    def save(self) -> None:
        from metricgold_core.io_utils import save_text
        with self._lock:
            records = sorted((dict(r) for r in self.records.values()),
                             key=lambda r: r['stamp_ns'])
            errors = list(self.write_errors)
        save_text(self.out / 'recorded.json', json.dumps(
            {'frames': records, 'diagnostics': self.diagnostics, 'write_errors': errors,
             'queue_depth': QUEUE_DEPTH}, indent=1) + '\n')


def arrival_facts(info, arrival_ns: int) -> dict:
    """Where a message's time went, from rclpy's MessageInfo: `published_ns` (the node's
    publish, DDS source timestamp), `transport_ms` (publish to DDS reception here),
    `recorder_wait_ms` (DDS reception to the callback) and the publisher's `seq`."""
    source, received = info.get('source_timestamp'), info.get('received_timestamp')
    facts = {'seq': info.get('publication_sequence_number')}
    if source and received:
        facts.update(published_ns=int(source), transport_ms=(received - source) / 1e6,
                     recorder_wait_ms=(arrival_ns - received) / 1e6)
    return facts


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
    import metricgold_core.offline.ply  # noqa: F401
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
        while recorder.frames_received() < args.count and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            if camera is not None and camera.gone():
                break
        spin_for(node, 1.5)  # the diagnostics and clouds that follow the last depth image
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        recorder.close()
        recorder.save()
        node.destroy_node()
        rclpy.try_shutdown()
    print(f'recorder: {recorder.frames_received()} depth frames received', flush=True)
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
