"""Metres from odometry on procedural trajectories (not a test: prints figures).

    python scripts/odometry_scale_bench.py [--checkpoint DIR] [--count 12] [--frames 12]
        [--size 240 320] [--seed 1000] [--smoothing 0.0] [--output FILE.json]

Each trajectory (render_trajectory seeds seed..seed+count-1, true poses as odometry) runs once
through the model (scale_source none); the odometry source is then applied to that depth exactly
as estimate_metric_depth's step 4 does (scale.ScaleSession.apply: ScaleAnchor.fit with a Motion,
then the ScaleFilter), for:
- the model's own depth;
- the same with wait_for_scale (the node's parameter): frames before the first accepted fit are
  not published (counted as held), its scale CV is over the published frames, what a mapper gets;
- the model's depth times a random factor 1/3..3 per sequence (a model whose scale is wrong);
- the model's own depth with odometry that reports rotation only (the translation held at the
  first frame's): no fit may be accepted.
Scale error of a frame = |median(truth / published depth) - 1| over valid pixels, on every frame
after the first (which has no earlier frame); scale CV = std / mean of median(truth / depth)
over a sequence's frames, all of them and those after the first; the fit's cost is
Motion.fit_ms.
"""
from __future__ import annotations

import argparse
from collections import Counter
import json
from pathlib import Path
import sys

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from metricgold_core import scale  # noqa: E402
from metricgold_core.camera.geometry import CameraModel  # noqa: E402
from metricgold_core.data.trajectory import render_trajectory  # noqa: E402
from metricgold_core.evaluation.metrics import masked_abs_rel  # noqa: E402
from metricgold_core.evaluation.sequences import frame_scales  # noqa: E402
from metricgold_core.io_utils import save_text  # noqa: E402
from metricgold_core.metric_depth import estimate_metric_depth  # noqa: E402
from metricgold_core.metric_depth import load_estimator  # noqa: E402


class Source:
    """One way of publishing a sequence's depth: its factor on the model's depth and, for the
    odometry source, its history, filter and the poses it is given."""

    def __init__(self, anchor, factor: float, poses, wait: bool = False):
        self.anchor, self.factor, self.poses = anchor, np.float32(factor), poses
        # wait_for_scale: nothing published before the first good fit
        self.session = None if anchor is None else scale.ScaleSession(
            anchor, 'global', wait_for_scale=wait)
        self.ratios, self.errors, self.abs_rel, self.fits, self.fit_ms = [], [], [], [], []

    def publish(self, i: int, depth: np.ndarray, camera, rgb, stamp_ns: int) -> np.ndarray:
        depth = depth * self.factor
        if self.anchor is None:
            return depth
        motion = self.session.motion(self.poses[i], stamp_ns)
        scaled = self.session.apply(depth, camera, motion, rgb)
        self.fits.append(scaled.fit)
        self.fit_ms.append(motion.fit_ms)
        if self.session.holding():
            return None
        return scaled.depth

    @property
    def held(self) -> int:
        return 0 if self.session is None else self.session.held

    def score(self, i: int, published, gt, valid) -> None:
        if published is None:   # held back (wait_for_scale)
            return
        ratio = float(frame_scales([published], [gt], [valid])[0])
        self.ratios.append(ratio)
        if i > 0:
            self.errors.append(abs(ratio - 1.0))
            self.abs_rel.append(masked_abs_rel(published, gt, valid)[0])


def summary(sources: list[Source]) -> dict:
    errors = np.array([e for s in sources for e in s.errors])
    # (with wait_for_scale `ratios` are the published frames only)
    cvs = [np.std(s.ratios) / np.mean(s.ratios) for s in sources if len(s.ratios) > 1]
    cvs_fitted = [np.std(s.ratios[1:]) / np.mean(s.ratios[1:]) for s in sources
                  if len(s.ratios) > 2]
    fits = [f for s in sources for f in s.fits[1:]]
    ms = [m for s in sources for m in s.fit_ms]
    reasons = dict(Counter(fit.reject for fit in fits if not fit.ok))
    return {'scale_error_median': float(np.median(errors)),
            'scale_error_p90': float(np.percentile(errors, 90)),
            'abs_rel': float(np.mean([a for s in sources for a in s.abs_rel])),
            'scale_cv_median': float(np.median(cvs)),
            'scale_cv_after_first_median': float(np.median(cvs_fitted)),
            'fits_tried': len(fits), 'fits_accepted': sum(f.ok for f in fits),
            'rejected': reasons, 'frames_held': sum(s.held for s in sources),
            'fit_ms_median': float(np.median(ms)) if ms else None,
            'fit_ms_p90': float(np.percentile(ms, 90)) if ms else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', default=None, help='default: the packaged model')
    parser.add_argument('--count', type=int, default=12)
    parser.add_argument('--frames', type=int, default=12)
    parser.add_argument('--size', type=int, nargs=2, default=(240, 320), metavar=('H', 'W'))
    parser.add_argument('--seed', type=int, default=1000)
    parser.add_argument('--smoothing', type=float, default=0.0, help='scale_smoothing')
    parser.add_argument('--dtype', default='auto')
    parser.add_argument('--output', default=None, help='JSON file for the results')
    args = parser.parse_args(argv)

    estimator = load_estimator(args.checkpoint, device='cpu', dtype=args.dtype)
    anchor = scale.ScaleAnchor.resolve(estimator.model, 'odometry', smoothing=args.smoothing)
    rng = np.random.default_rng(args.seed)
    H, W = args.size
    runs = {name: [] for name in ('none', 'odometry', 'odometry, wait_for_scale',
                                  'none, depth x factor', 'odometry, depth x factor',
                                  'odometry, rotation only')}
    per_sequence = []
    for seed in range(args.seed, args.seed + args.count):
        seq = render_trajectory(seed, H, W, frames=args.frames)
        factor = float(np.exp(rng.uniform(np.log(1 / 3), np.log(3))))
        still = seq['poses'].copy()
        still[:, :3, 3] = seq['poses'][0, :3, 3]
        sources = {'none': Source(None, 1.0, None),
                   'odometry': Source(anchor, 1.0, seq['poses']),
                   'odometry, wait_for_scale': Source(anchor, 1.0, seq['poses'], wait=True),
                   'none, depth x factor': Source(None, factor, None),
                   'odometry, depth x factor': Source(anchor, factor, seq['poses']),
                   'odometry, rotation only': Source(anchor, 1.0, still)}
        camera = CameraModel.from_K(seq['K'], H, W)
        for i in range(len(seq['rgb'])):
            rgb, gt, valid = seq['rgb'][i], seq['depth'][i], seq['valid'][i]
            out = estimate_metric_depth(estimator, rgb, camera, steps=1, seed=0)
            stamp_ns = round(float(seq['timestamps'][i]) * 1e9)
            for source in sources.values():
                published = source.publish(i, out.depth, out.camera, rgb, stamp_ns)
                source.score(i, published, gt, valid)
        for name, source in sources.items():
            runs[name].append(source)
        per_sequence.append({'name': seq['name'], 'motion': seq['motion'], 'factor': factor,
                             **{f'{name} scale error median': float(np.median(s.errors))
                                for name, s in sources.items()}})
        print(f"{seq['name']} ({seq['motion']}): own scale error "
              f"{np.median(sources['none'].errors):.3f}, with odometry "
              f"{np.median(sources['odometry'].errors):.3f}", flush=True)

    results = {name: summary(sources) for name, sources in runs.items()}
    print(f'\n{args.count} trajectories, {H}x{W}, {args.frames} frames, scale_smoothing '
          f'{args.smoothing}; scale error over frames 2..N\n')
    print('| source | scale error median | p90 | metric AbsRel | scale CV all frames '
          '(after the first) | fits accepted / tried | fit ms median (p90) |')
    print('|---|---:|---:|---:|---:|---:|---:|')
    for name, r in results.items():
        fits = (f"{r['fits_accepted']} / {r['fits_tried']}" if r['fits_tried'] else '')
        cost = (f"{r['fit_ms_median']:.0f} ({r['fit_ms_p90']:.0f})"
                if r['fit_ms_median'] is not None else '')
        print(f"| {name} | {r['scale_error_median']:.3f} | {r['scale_error_p90']:.3f} | "
              f"{r['abs_rel']:.3f} | {r['scale_cv_median']:.3f} "
              f"({r['scale_cv_after_first_median']:.3f}) | {fits} | {cost} |")
    print('frames held back (wait_for_scale):', results['odometry, wait_for_scale']['frames_held'],
          'of', args.count * args.frames, '(its CV "all frames": the published ones)')
    print('\nrejected fits by reason:', {k: v['rejected'] for k, v in results.items()
                                         if v['rejected']})
    if args.output:
        save_text(args.output, json.dumps({'args': vars(args), 'results': results,
                                           'sequences': per_sequence}, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
