"""A camera stream for benchmarks: frames published at a rate, the latency figures of what came
back, and the frame to stream."""
from __future__ import annotations

import os
from pathlib import Path
import time

import numpy as np

from metricgold_ros.harness.messages import camera_messages
from metricgold_ros.harness.process import PACKAGE_PARENT


def stream_image(shared_data: Path | None = None) -> np.ndarray:
    """(480, 640, 3) uint8: the first TUM frame of the shared data (`shared_data`, default
    $METRICGOLD_SHARED_DATA or ../shared/data beside the repository), else seeded noise."""
    if shared_data is None:
        shared_data = Path(os.environ.get('METRICGOLD_SHARED_DATA',
                                          PACKAGE_PARENT.parent / 'shared' / 'data'))
    path = shared_data / 'real' / 'tum' / 'rgb' / '1.png'
    if path.is_file():
        from PIL import Image as PILImage
        with PILImage.open(path) as image:
            return np.asarray(image.convert('RGB'))
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)


def publish_paced(image_pub, info_pub, rgb: np.ndarray, frames: int, rate_hz: float) -> tuple:
    """Publish `frames` camera_info + image pairs (camera_messages, stamped with the wall clock)
    at `rate_hz`, paced against the start, so a late frame does not push the rest back;
    (sent stamps ns, seconds taken)."""
    sent, start = [], time.monotonic()
    for i in range(frames):
        delay = start + i / rate_hz - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        stamp_ns = time.time_ns()
        image, info = camera_messages(stamp_ns, rgb)
        sent.append(stamp_ns)
        info_pub.publish(info)
        image_pub.publish(image)
    return sent, time.monotonic() - start


def percentile(values, q: float) -> float:
    """The q-th percentile of `values`; NaN for none."""
    if not len(values):
        return float('nan')
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def latency_stats(latencies_ms) -> dict:
    """{'p50', 'p95', 'max'} of latencies in ms (NaN for none)."""
    return {'p50': percentile(latencies_ms, 50), 'p95': percentile(latencies_ms, 95),
            'max': max(latencies_ms) if len(latencies_ms) else float('nan')}
