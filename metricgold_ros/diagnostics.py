"""Counters the node keeps, their /diagnostics status, and per-reason log throttling."""
from __future__ import annotations

from collections import Counter
import math
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .latency import LatencyWindow, RateCounter

STATUS_NAME = 'metricgold_depth: depth estimation'


class Throttle:
    """Allows one log line per key per period (so a bad stream cannot flood the log)."""

    def __init__(self, period_s: float = 5.0):
        self.period_s = period_s
        self._last = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now_s: float | None = None) -> bool:
        now_s = time.monotonic() if now_s is None else now_s
        with self._lock:
            last = self._last.get(key)
            if last is not None and now_s - last < self.period_s:
                return False
            self._last[key] = now_s
            return True


class NodeStats:
    """Thread-safe counters and windows, shared by the callbacks and the worker."""

    def __init__(self):
        self._lock = threading.Lock()
        self.counts = Counter()            # received, published, dropped_*, ...
        self.bad_input = Counter()         # kind -> count
        self.input_rate = RateCounter()
        self.output_rate = RateCounter()
        self.latency = LatencyWindow()
        self.last = {}                     # latest plan / camera facts for the status

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def bad(self, kind: str) -> None:
        with self._lock:
            self.bad_input[kind] += 1
            self.counts['dropped_bad_input'] += 1

    def set(self, **facts) -> None:
        with self._lock:
            self.last.update(facts)

    def snapshot(self) -> tuple:
        with self._lock:
            return Counter(self.counts), Counter(self.bad_input), dict(self.last)


def _fmt(value) -> str:
    if isinstance(value, float):
        return 'nan' if math.isnan(value) else f'{value:.6g}'
    return str(value)


def build_diagnostics(stats: NodeStats, now_s: float, stamp, hardware_id: str,
                      max_latency_ms: float, static: dict) -> DiagnosticArray:
    """One DiagnosticStatus with rates, latency percentiles, plan, drops, model and device."""
    counts, bad, last = stats.snapshot()
    p50, p95 = stats.latency.percentiles(50, 95)
    in_hz, out_hz = stats.input_rate.rate_hz(now_s), stats.output_rate.rate_hz(now_s)
    values = {
        'input_rate_hz': in_hz,
        'output_rate_hz': out_hz,
        'latency_p50_ms': p50,
        'latency_p95_ms': p95,
        'max_latency_ms': float(max_latency_ms),
        'steps': last.get('steps', '-'),
        'processing_resolution': last.get('processing_resolution', '-'),
        'processing_size': last.get('processing_size', '-'),
        'plan_changes': last.get('plan_changes', 0),
        'predicted_ms': last.get('predicted_ms', float('nan')),
        'frames_received': counts['received'],
        'frames_published': counts['published'],
        'dropped_stale': counts['dropped_stale'],
        'dropped_busy': counts['dropped_busy'],
        'dropped_bad_input': counts['dropped_bad_input'],
        'dropped_publish': counts['dropped_publish'],
        'publish_ms': last.get('publish_ms', float('nan')),
        'inference_errors': counts['errors'],
        'camera_info_source': last.get('camera_info_source', '-'),
        'camera_info_received': counts['camera_info_received'],
        'camera_info_unmatched': counts['camera_info_unmatched'],
        'stamp_jumps': counts['stamp_jumps'],
        'input_reliability': last.get('input_reliability', '-'),
        'rectify': last.get('rectify', '-'),
        'frames_rectified': counts['rectified'],
        'rectify_unknown_model': counts['rectify_unknown_model'],
        'rectify_unsupported': counts['rectify_unsupported'],
        'focal_rescale': last.get('focal_rescale', 1.0),
        'scale_source': last.get('scale_source', 'none'),
        'scale': last.get('scale', 1.0),
        'shift': last.get('shift', 0.0),
        'scale_points': last.get('scale_points', 0),
        'scale_residual': last.get('scale_residual', float('nan')),
        'scale_rejected': counts['scale_rejected'],
        'scale_correction': last.get('scale_correction', '-'),
        'local_corrections': counts['local_corrections'],
        'local_fallbacks': counts['local_fallbacks'],
        'sparse_depth_received': counts['sparse_depth_received'],
        'sparse_depth_unmatched': counts['sparse_depth_unmatched'],
        'sparse_depth_missing': counts['sparse_depth_missing'],
        'waiting_for_scale': counts['waiting_for_scale'],
        'output': last.get('output', '-'),
        'dds_profile': last.get('dds_profile', '-'),
    }
    for key in sorted(k for k in counts if k.startswith('odometry_')):   # scale_source odometry
        values[key] = counts[key]
    for key in ('local_points', 'local_outliers', 'local_ms', 'local_fallback',
                'waiting_for'):     # the last frame's local correction; what a held frame awaits
        if key in last:
            values[key] = last[key]
    for key in ('odometry_parallax_px', 'odometry_fit', 'odometry_points', 'odometry_points_ms',
                'scale_fit_ms'):
        if key in last:
            values[key] = last[key]
    for key in sorted(k for k in counts if k.startswith('sparse_points_')):   # LiDAR clouds
        values[key] = counts[key]
    for key in sorted(k for k in last if k.startswith('sparse_points_') and
                      k != 'sparse_points_warning'):
        values[key] = last[key]
    values.update(static)
    for kind in sorted(bad):
        values[f'bad_input.{kind}'] = bad[kind]

    problems = []   # (level, text): every one is reported, the worst sets the level
    if last.get('fatal'):
        problems.append((DiagnosticStatus.ERROR, last['fatal']))
    if counts['received'] == 0:
        problems.append((DiagnosticStatus.WARN, 'no image received yet'))
    elif in_hz == 0.0:
        problems.append((DiagnosticStatus.WARN, 'input stream stopped'))
    if not math.isnan(p95) and p95 > max_latency_ms:
        problems.append((DiagnosticStatus.WARN, f'latency p95 {p95:.0f} ms over the '
                         f'{max_latency_ms:.0f} ms budget'))
    if last.get('camera_info_source') == 'fallback_hfov':
        problems.append((DiagnosticStatus.WARN, 'no camera_info: using fallback_hfov_deg'))
    if last.get('rectify') in ('unknown_model', 'unsupported'):
        problems.append((DiagnosticStatus.WARN, 'camera_info distortion not rectifiable: '
                         'outputs are in the raw image geometry'))
    if last.get('holding_for_scale'):
        problems.append((DiagnosticStatus.WARN, 'wait_for_scale: no accepted scale fit yet, '
                         f'depth held back (waiting for {last.get("waiting_for") or "a fit"})'))
    if last.get('sparse_points_warning'):
        problems.append((DiagnosticStatus.WARN, last['sparse_points_warning']))
    if last.get('scale_warning'):
        problems.append((DiagnosticStatus.WARN, last['scale_warning']))
    level = max((lvl for lvl, _ in problems), default=DiagnosticStatus.OK)
    message = '; '.join(text for _, text in problems) or 'ok'
    status = DiagnosticStatus(level=level, name=STATUS_NAME, message=message,
                              hardware_id=hardware_id,
                              values=[KeyValue(key=k, value=_fmt(v)) for k, v in values.items()])
    array = DiagnosticArray()
    array.header.stamp = stamp
    array.status = [status]
    return array
