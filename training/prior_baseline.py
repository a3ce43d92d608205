"""The constant per-pixel prior: mean log-depth map of training scenes, scored on held-out ones.

A depth model must beat this image-blind guess by a wide margin to show it reads the image.

    python training/prior_baseline.py --train-count 512 --count 64 --size 96 128 \
        --scene-seed 5000000
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from metricgold_core.data.procedural import ProceduralScenes  # noqa: E402
from metricgold_core.metrics import aggregate, compute_metrics  # noqa: E402


def mean_log_depth(scenes) -> np.ndarray:
    """Per-pixel mean of log depth over the valid pixels of `scenes` -> depth map (m)."""
    total = count = None
    for sample in scenes:
        log_d = np.log(np.where(sample['valid'], sample['depth'], 1.0))
        if total is None:
            total, count = np.zeros_like(log_d, np.float64), np.zeros_like(log_d, np.float64)
        total += np.where(sample['valid'], log_d, 0.0)
        count += sample['valid']
    return np.exp(total / np.maximum(count, 1)).astype(np.float32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--train-count', type=int, default=512)
    p.add_argument('--train-seed', type=int, default=0, help='the training stream (recipe seed)')
    p.add_argument('--count', type=int, default=64, help='held-out scenes')
    p.add_argument('--scene-seed', type=int, default=5_000_000)
    p.add_argument('--size', type=int, nargs=2, default=(96, 128), metavar=('H', 'W'))
    p.add_argument('--max-depth', type=float, default=80.0)
    args = p.parse_args(argv)
    h, w = args.size
    prior = mean_log_depth(ProceduralScenes(args.train_count, h, w, seed=args.train_seed))
    rows = []
    for sample in ProceduralScenes(args.count, h, w, seed=args.scene_seed):
        row = compute_metrics(prior, sample['depth'], max_depth=args.max_depth)
        row['kind'] = sample['kind']
        rows.append(row)
    for label, subset in (('all', rows), ('indoor', [r for r in rows if r['kind'] == 'indoor']),
                          ('outdoor', [r for r in rows if r['kind'] == 'outdoor'])):
        m = aggregate(subset)
        print(f'prior {label}: {m["images"]} images, AbsRel {m["abs_rel"]:.3f}, '
              f'delta1 {m["delta1"]:.3f}, RMSE {m["rmse"]:.2f} m')
    return 0


if __name__ == '__main__':
    sys.exit(main())
