"""Points from motion on procedural trajectories: points a frame, depth error, time a frame.

Each trajectory (render_trajectory, exact poses and depth) is fed frame by frame to
triangulation.FeatureTracks with its grey image and pose (translations scaled by
1 + --scale-error about the first pose: an odometry with a scale error). A point's error is
|depth / truth - 1| with the truth at the point's nearest pixel (where a sparse depth image
puts it); points on a pixel with no true depth (sky: a silhouette's edge) are counted apart
('no truth'). ms: FeatureTracks.update's own time, with cv2.setNumThreads(--threads).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys
import time

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metricgold_core.data.trajectory import MOTIONS, render_trajectory  # noqa: E402
from metricgold_core.scale.triangulation import FeatureTracks, tracking_benchmark  # noqa: E402


def grey_of(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W) grey of uint8 RGB, as the node would give the tracker."""
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def scaled_poses(poses: np.ndarray, scale_error: float) -> np.ndarray:
    """Poses whose travel from the first one is (1 + scale_error) times the true travel."""
    out = poses.copy()
    out[:, :3, 3] = poses[0, :3, 3] + (1.0 + scale_error) * (poses[:, :3, 3] - poses[0, :3, 3])
    return out


def run_sequence(seq: dict, tracker: FeatureTracks, scale_error: float = 0.0) -> dict:
    """Feed one render_trajectory result to `tracker`: per-frame points, errors and ms."""
    tracker.reset()
    poses = scaled_poses(seq['poses'], scale_error)
    counts, errors, sigmas, log_errors, ms, cpu_ms = [], [], [], [], [], []
    no_truth = 0
    for i in range(len(poses)):
        grey = grey_of(seq['rgb'][i])
        cpu = time.process_time()
        pts = tracker.update(grey, poses[i], seq['K'], round(seq['timestamps'][i] * 1e9))
        cpu_ms.append((time.process_time() - cpu) * 1e3)
        ms.append(pts.stats['ms'])
        counts.append(len(pts))
        if not len(pts):
            continue
        h, w = grey.shape
        col = np.clip(np.rint(pts.uv[:, 0]).astype(int), 0, w - 1)
        row = np.clip(np.rint(pts.uv[:, 1]).astype(int), 0, h - 1)
        truth = seq['depth'][i][row, col]
        valid = seq['valid'][i][row, col] & np.isfinite(truth)
        no_truth += int((~valid).sum())
        errors.extend(np.abs(pts.depth_m[valid] / truth[valid] - 1.0))
        sigmas.extend(pts.sigma_log[valid])
        log_errors.extend(np.abs(np.log(pts.depth_m[valid] / truth[valid])))
    return {'counts': counts, 'errors': np.asarray(errors), 'sigmas': np.asarray(sigmas),
            'log_errors': np.asarray(log_errors), 'no_truth': no_truth,
            'ms': ms, 'cpu_ms': cpu_ms}


def summarise(runs: list[dict]) -> dict:
    """points a frame (frames after the first), median / p90 error, ms a frame."""
    counts = [c for r in runs for c in r['counts'][1:]]
    errors = np.concatenate([r['errors'] for r in runs])
    ms = [m for r in runs for m in r['ms'][1:]]
    cpu = [m for r in runs for m in r['cpu_ms'][1:]]
    sig = np.concatenate([r['sigmas'] for r in runs])
    # |log error| / sigma_log: median 0.67 where sigma_log is a calibrated Gaussian 1 sigma
    z = np.concatenate([r['log_errors'] for r in runs]) / np.maximum(sig, 1e-9)
    points = sum(counts) + sum(r['counts'][0] for r in runs)
    return {'points_per_frame': float(np.mean(counts)),
            'no_truth_fraction': sum(r['no_truth'] for r in runs) / max(points, 1),
            'error_median': float(np.median(errors)) if len(errors) else None,
            'error_p90': float(np.percentile(errors, 90)) if len(errors) else None,
            'sigma_log_median': float(np.median(sig)) if len(sig) else None,
            'log_error_over_sigma_median': float(np.median(z)) if len(z) else None,
            'ms_median': float(np.median(ms)), 'ms_p90': float(np.percentile(ms, 90)),
            'cpu_ms_median': float(np.median(cpu))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--count', type=int, default=6, help='trajectories per kind')
    parser.add_argument('--frames', type=int, default=24)
    parser.add_argument('--size', type=int, nargs=2, default=(240, 320), metavar=('H', 'W'))
    parser.add_argument('--seed', type=int, default=2000)
    parser.add_argument('--scale-error', type=float, nargs='+', default=(0.0, 0.03))
    parser.add_argument('--threads', type=int, default=-1,
                        help='cv2.setNumThreads (-1: leave OpenCV default)')
    parser.add_argument('--kinds', nargs='+', default=('indoor', 'outdoor'))
    parser.add_argument('--output', default=None, help='JSON file for the results')
    args = parser.parse_args(argv)
    import cv2

    if args.threads >= 0:
        cv2.setNumThreads(args.threads)
    H, W = args.size
    tracker = FeatureTracks()
    results = {}
    print(f'{H}x{W}, {args.frames} frames at 10 Hz, cv2 threads {cv2.getNumThreads()}')
    print('| kind | motion | scale error | points/frame | median err | p90 err | '
          'no truth | ms/frame median (p90) | CPU ms/frame |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|')
    for kind in args.kinds:
        runs = {e: {m: [] for m in MOTIONS} for e in args.scale_error}
        for i in range(args.count):
            motion = MOTIONS[i % len(MOTIONS)]
            seq = render_trajectory(args.seed + i, H, W, kind=kind, frames=args.frames,
                                    motion=motion)
            for scale_error in args.scale_error:
                runs[scale_error][motion].append(run_sequence(seq, tracker, scale_error))
        for scale_error, by_motion in runs.items():
            rows = {m: summarise(r) for m, r in by_motion.items() if r}
            rows['all'] = summarise([r for rs in by_motion.values() for r in rs])
            results[f'{kind} {scale_error}'] = rows
            for motion, r in rows.items():
                med = f"{r['error_median']:.3f}" if r['error_median'] is not None else '-'
                p90 = f"{r['error_p90']:.3f}" if r['error_p90'] is not None else '-'
                print(f"| {kind} | {motion} | {scale_error:.2f} | {r['points_per_frame']:.0f} | "
                      f"{med} | {p90} | {100 * r['no_truth_fraction']:.1f} % | "
                      f"{r['ms_median']:.1f} ({r['ms_p90']:.1f}) | "
                      f"{r['cpu_ms_median']:.1f} |", flush=True)
    start = time.perf_counter()
    speed = tracking_benchmark()
    print(f"\n640x480 indoor sideways: {speed['ms_median']:.1f} ms/frame median "
          f"({speed['ms_p90']:.1f} p90), CPU {speed['cpu_ms_median']:.1f} ms/frame; plain KLT "
          f"{speed['baseline_klt_ms_median']:.1f} ms/frame in the same run; "
          f"{speed['points_per_frame']:.0f} points/frame "
          f"(bench {time.perf_counter() - start:.0f} s with rendering)")
    results['speed_640x480'] = speed
    if args.output:
        from metricgold_core.io_utils import save_text
        save_text(args.output, json.dumps({'args': vars(args), 'results': results},
                                          indent=1) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
