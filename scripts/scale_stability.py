"""Frame-to-frame scale stability on real RGB-D sequences, with and without a scale source.

    python scripts/scale_stability.py [--checkpoint DIR] [--root ../shared/data/real]
        [--output stability.json]

For each sequence (tum, icl_nuim, redwood, kinect_ch5 under --root) every frame goes through the
one core call (metric_depth.estimate_metric_depth) in order, as the node would see it, with:
no scale source; sparse depth of N ground-truth pixels per frame (the evaluate --sparse-points
sampler) with scale_smoothing 0 and 0.8. Printed and written per sequence and setting: the
coefficient of variation of r_t = median(gt / pred) over the frames (0 = the scale never moves),
the largest frame-to-frame jump |log r_t - log r_t-1|, and the mean metric AbsRel.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

SEQUENCES = {'tum': 'tum', 'icl_nuim': 'icl_nuim', 'redwood': 'redwood', 'kinect': 'kinect_ch5'}
SETTINGS = (('none', 0, 0.0), ('sparse 100', 100, 0.0), ('sparse 100, smoothing 0.8', 100, 0.8),
            ('sparse 500', 500, 0.0), ('sparse 500, smoothing 0.8', 500, 0.8))


def run_sequence(estimator, dataset, points: int, smoothing: float, seed: int = 0) -> dict:
    from metricgold_core.metric_depth import estimate_metric_depth
    from metricgold_core.evaluation.metrics import compute_metrics
    from metricgold_core.scale import ScaleAnchor, ScaleSession, sparse_sample

    anchor = ScaleAnchor.resolve(estimator.model, 'sparse_depth' if points else 'none',
                                 smoothing=smoothing)
    session = ScaleSession(anchor, 'global')
    ratios, abs_rels = [], []
    for index in range(len(dataset)):
        sample = dataset[index]
        sparse = sparse_sample(sample['depth'], sample['valid'], points, seed + index) \
            if points else None
        out = estimate_metric_depth(estimator, sample['rgb'], sample['K'], seed=0,
                                    session=session, measurement=sparse)
        gt, pred = sample['depth'], out.depth
        valid = sample['valid'] & np.isfinite(pred) & (pred > 0)
        ratios.append(float(np.median(gt[valid] / pred[valid])))
        abs_rels.append(compute_metrics(pred, gt, valid)['abs_rel'])
    r = np.array(ratios)
    jumps = np.abs(np.diff(np.log(r))) if r.size > 1 else np.zeros(1)
    return {'frames': int(r.size), 'ratio_cv': float(r.std() / r.mean()),
            'max_log_jump': float(jumps.max()), 'abs_rel': float(np.mean(abs_rels)),
            'ratios': [round(x, 4) for x in ratios]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', default=None, help='default: the packaged model')
    parser.add_argument('--root', default=str(Path(__file__).resolve().parents[2] / 'shared'
                                              / 'data' / 'real'))
    parser.add_argument('--output', default=None, help='JSON file for the results')
    args = parser.parse_args(argv)

    from metricgold_core.data.registry import make_dataset
    from metricgold_core.metric_depth import load_estimator

    estimator = load_estimator(args.checkpoint, device='cpu')
    results = {}
    print(f'{"sequence":10} {"setting":28} {"frames":>6} {"CV r":>7} {"max jump":>9} '
          f'{"AbsRel":>7}')
    for name, folder in SEQUENCES.items():
        root = Path(args.root) / folder
        if not root.is_dir():
            continue
        dataset = make_dataset(name, root)
        for label, points, smoothing in SETTINGS:
            res = run_sequence(estimator, dataset, points, smoothing)
            results.setdefault(name, {})[label] = res
            print(f'{name:10} {label:28} {res["frames"]:6d} {res["ratio_cv"]:7.4f} '
                  f'{res["max_log_jump"]:9.4f} {res["abs_rel"]:7.4f}')
    for label, *_ in SETTINGS:
        cvs = [seq[label]['ratio_cv'] for seq in results.values() if seq[label]['frames'] > 1]
        if cvs:
            print(f'{"mean":10} {label:28} {"":6} {np.mean(cvs):7.4f}')
    if args.output:
        from metricgold_core.io_utils import save_text
        save_text(args.output, json.dumps(results, indent=2) + '\n')
    return 0 if results and all(math.isfinite(v[label]['ratio_cv']) for v in results.values()
                                for label, *_ in SETTINGS) else 1


if __name__ == '__main__':
    raise SystemExit(main())
