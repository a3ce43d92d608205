"""Global against local scale correction, and points from motion (not a test: prints figures).

    python scripts/scale_correction_bench.py speed
    python scripts/scale_correction_bench.py accuracy [--scenes 8] [--trajectories 6] [--frames 24]
        [--size 240 320] [--maps] [--cache DIR] [--output FILE.json]

speed: scale.correct_locally on a 640x480 frame with 100 and 500 points, and the odometry
source's tracking + triangulation (scale.triangulation.tracking_benchmark) at 640x480; the
global fit (scale.fit_sparse) of the same points and plain KLT on the same frames are the
baselines measured in the same run.

accuracy: the packaged model (float32, 2 steps) on held-out procedural scenes (seeds 9000+,
indoor and outdoor alternating), procedural trajectories (seeds 7000+, the first half indoor,
24 frames at 10 Hz, true poses) and, when ../shared/data is there, the real frames
(Redwood, Kinect, ICL-NUIM, TUM). Every row goes through scale.ScaleSession as the node does:
- sparse: N true points a frame (sparse_sample, seed = frame index), global fit vs local;
- odometry: the true poses as odometry: the photometric fit alone (triangulate=False), points
  triangulated from the motion with the photometric fallback (global), the same + local; a
  relative stand-in (the model's depth normalised to [0, 1], an affine-invariant output) with
  odometry + local. Frames before the first accepted fit are held (wait_for_scale) and not
  scored; `held` counts them.
AbsRel and delta1 are means over scored frames; with --maps the fused-map accuracy /
completeness (cm) and F-score at 10 cm (sequences.score_sequence, the project's MAP_SETTINGS)
and the scale CV over each trajectory are given too. The model's predictions are cached in
--cache (npz per scene) so that a second run only refits.
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

from metricgold_core.scale import correct_locally, fit_sparse, ScaleAnchor  # noqa: E402
from metricgold_core.scale import ScaleSession, sparse_sample  # noqa: E402

REAL = (('redwood', 'redwood'), ('kinect', 'kinect_ch5'), ('icl_nuim', 'icl_nuim'),
        ('tum', 'tum'))


def abs_rel_delta1(pred, truth, valid) -> tuple:
    m = valid & np.isfinite(pred) & (pred > 0)
    p, t = pred[m].astype(np.float64), truth[m].astype(np.float64)
    return float(np.mean(np.abs(p - t) / t)), float(np.mean(np.maximum(p / t, t / p) < 1.25))


def speed(args) -> dict:
    from metricgold_core.data.procedural import render_scene
    from metricgold_core.scale.triangulation import tracking_benchmark

    scene = render_scene(4242, 480, 640, 'indoor')
    valid = scene['valid']
    truth = np.where(valid, scene['depth'], np.nan).astype(np.float32)
    model = (0.6 * truth ** 1.5).astype(np.float32)
    out = {}
    for n in (100, 500):
        sparse = sparse_sample(truth, valid, n, seed=1)
        local_ms, global_ms = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fit = fit_sparse(model, sparse)
            global_ms.append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            correct_locally(model * np.float32(fit.scale), sparse, scene['rgb'])
            local_ms.append((time.perf_counter() - start) * 1e3)
        out[f'local_{n}_points_ms'] = float(np.median(local_ms))
        out[f'global_fit_{n}_points_ms'] = float(np.median(global_ms))
        print(f'640x480, {n} points: local correction {np.median(local_ms):.1f} ms (p90 '
              f'{np.percentile(local_ms, 90):.1f}); the global fit of the same points '
              f'{np.median(global_ms):.2f} ms')
    tracking = tracking_benchmark(480, 640)
    out['tracking'] = tracking
    print(f"640x480 tracking + triangulation: {tracking['ms_median']:.1f} ms a frame (p90 "
          f"{tracking['ms_p90']:.1f}), {tracking['points_per_frame']:.0f} points; plain KLT on "
          f"the same frames {tracking['baseline_klt_ms_median']:.1f} ms")
    return out


def cached(path: Path, make) -> dict:
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    data = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    return data


def predictor():
    from metricgold_core.metric_depth import estimate_metric_depth, load_estimator

    estimator = load_estimator(None, dtype='float32')
    return lambda rgb, K: estimate_metric_depth(estimator, rgb, K, steps=2, seed=0).depth


def single_frames(args, predict) -> list:
    """(group, rgb, truth, valid, prediction) of the held-out scenes and the real frames."""
    from metricgold_core.data.procedural import render_scene

    frames = []
    h, w = args.size
    for i in range(args.scenes):
        kind = 'indoor' if i % 2 == 0 else 'outdoor'
        seed = 9000 + i

        def make(seed=seed, kind=kind):
            s = render_scene(seed, h, w, kind)
            return {'rgb': s['rgb'], 'depth': s['depth'], 'valid': s['valid'],
                    'pred': predict(s['rgb'], s['K'])}
        d = cached(args.cache / f'scene_{seed}_{h}x{w}.npz', make)
        frames.append((kind, d))
    shared = Path(args.shared)
    if shared.is_dir():
        from metricgold_core.data.registry import make_dataset
        for name, folder in REAL:
            ds = make_dataset(name, shared / 'real' / folder)
            for j in range(len(ds)):
                def make(ds=ds, j=j):
                    s = ds[j]
                    return {'rgb': s['rgb'], 'depth': s['depth'], 'valid': s['valid'],
                            'pred': predict(s['rgb'], s['K'])}
                frames.append(('real', cached(args.cache / f'real_{name}_{j}.npz', make)))
    return frames


def sparse_rows(frames, counts=(100, 500)) -> dict:
    rows = {}
    for group, d in frames:
        valid = d['valid'] & np.isfinite(d['depth']) & (d['depth'] > 0)
        row = rows.setdefault(group, {})
        row.setdefault('model', []).append(abs_rel_delta1(d['pred'], d['depth'], valid))
        for n in counts:
            sparse = sparse_sample(d['depth'], valid, n, seed=1)
            for correction in ('global', 'local'):
                session = ScaleSession(ScaleAnchor.resolve(False, 'sparse_depth'), correction,
                                       carry=False)
                scaled = session.apply(d['pred'], None, sparse, d['rgb'])
                row.setdefault(f'{correction} {n}', []).append(
                    abs_rel_delta1(scaled.depth, d['depth'], valid))
    return {group: {k: {'abs_rel': float(np.mean([a for a, _ in v])),
                        'delta1': float(np.mean([b for _, b in v])),
                        'worst_abs_rel': float(np.max([a for a, _ in v])), 'frames': len(v)}
                    for k, v in row.items()} for group, row in rows.items()}


def trajectories(args, predict) -> list:
    from metricgold_core.data.trajectory import render_trajectory

    out = []
    h, w = args.size
    for i in range(args.trajectories):
        kind = 'indoor' if i < (args.trajectories + 1) // 2 else 'outdoor'
        seed = 7000 + i

        def make(seed=seed, kind=kind):
            s = render_trajectory(seed, h, w, kind, frames=args.frames)
            return {'rgb': s['rgb'], 'depth': s['depth'], 'valid': s['valid'], 'K': s['K'],
                    'poses': s['poses'], 'motion': np.array(s['motion']),
                    'pred': np.stack([predict(rgb, s['K']) for rgb in s['rgb']])}
        out.append((kind, cached(args.cache / f'trajectory_{seed}_{h}x{w}_{args.frames}.npz',
                                 make)))
    return out


SEQUENCE_METHODS = {
    'model alone': None,
    'sparse 100, global': ('sparse_depth', 'global', True),
    'sparse 100, local': ('sparse_depth', 'local', True),
    'odometry, photometric fit only (global)': ('odometry', 'global', False),
    'odometry, points + photometric fallback (global)': ('odometry', 'global', True),
    'odometry, points + fallback, local': ('odometry', 'local', True),
    'relative stand-in, odometry points, local': ('odometry', 'local', True),
}


def run_sequence(d, method: str) -> tuple:
    from metricgold_core.camera.geometry import as_camera

    pred, valid = d['pred'], d['valid'] & np.isfinite(d['depth']) & (d['depth'] > 0)
    spec = SEQUENCE_METHODS[method]
    if spec is None:
        return list(pred), 0
    source, correction, triangulate = spec
    relative = method.startswith('relative')
    session = ScaleSession(ScaleAnchor.resolve(relative, source), correction,
                           wait_for_scale=True, triangulate=triangulate)
    camera = as_camera(d['K'], *pred.shape[1:])
    published = []
    for i in range(len(pred)):
        depth = pred[i]
        if relative:
            lo, hi = np.nanmin(depth), np.nanmax(depth)
            depth = ((depth - lo) / (hi - lo)).astype(np.float32)
        if source == 'sparse_depth':
            measurement = sparse_sample(d['depth'][i], valid[i], 100, seed=i)
        else:
            measurement = session.motion(d['poses'][i], i * 100_000_000)
        scaled = session.apply(depth, camera, measurement, d['rgb'][i], relative=relative)
        published.append(None if session.holding(scaled.relative) or scaled.relative
                         else scaled.depth)
    return published, session.held


def sequence_rows(seqs, maps: bool) -> dict:
    from metricgold_core.evaluation.sequences import score_sequence

    rows = {}
    for kind, d in seqs:
        valid = d['valid'] & np.isfinite(d['depth']) & (d['depth'] > 0)
        for method in SEQUENCE_METHODS:
            published, held = run_sequence(d, method)
            scored = [i for i, p in enumerate(published) if p is not None]
            row = {'held': held, 'frames': len(scored)}
            if scored:
                pairs = [abs_rel_delta1(published[i], d['depth'][i], valid[i]) for i in scored]
                row.update(abs_rel=float(np.mean([a for a, _ in pairs])),
                           delta1=float(np.mean([b for _, b in pairs])))
                if maps and len(scored) > 1:
                    got = score_sequence(np.stack([published[i] for i in scored]),
                                         d['depth'][scored], valid[scored], d['poses'][scored],
                                         d['K'], kind, maps=True, picture=False)['row']
                    row.update(scale_cv=got['scale_cv'], map_accuracy_cm=got['map_accuracy_cm'],
                               map_completeness_cm=got['map_completeness_cm'],
                               f_score_10cm=got['map_fscore_10cm'])
            rows.setdefault(kind, {}).setdefault(method, []).append(row)
    summary = {}
    for kind, methods in rows.items():
        for method, per_seq in methods.items():
            keys = sorted({k for r in per_seq for k in r})
            summary.setdefault(kind, {})[method] = {
                k: float(np.nanmean([r.get(k, np.nan) for r in per_seq])) for k in keys}
            summary[kind][method]['worst_abs_rel'] = float(np.nanmax(
                [r.get('abs_rel', np.nan) for r in per_seq]))
    return summary


def print_table(title: str, table: dict) -> None:
    print(f'\n{title}')
    for group, methods in table.items():
        for method, row in methods.items():
            text = ', '.join(f'{k} {v:.3f}' if isinstance(v, float) else f'{k} {v}'
                             for k, v in row.items())
            print(f'  {group:8s} {method:50s} {text}')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='mode', required=True)
    s = sub.add_parser('speed')
    s.add_argument('--repeats', type=int, default=20)
    a = sub.add_parser('accuracy')
    a.add_argument('--scenes', type=int, default=16)
    a.add_argument('--trajectories', type=int, default=12)
    a.add_argument('--frames', type=int, default=24)
    a.add_argument('--size', type=int, nargs=2, default=(240, 320), metavar=('H', 'W'))
    a.add_argument('--maps', action='store_true', help='fuse maps (Open3D)')
    a.add_argument('--cache', type=Path, default=ROOT / 'runs' / 'scale_correction_cache')
    a.add_argument('--shared', default=str(ROOT.parent / 'shared' / 'data'))
    for p in (s, a):
        p.add_argument('--output', type=Path, default=None, help='write the figures as JSON')
    args = parser.parse_args(argv)
    if args.mode == 'speed':
        result = speed(args)
    else:
        predict = predictor()
        result = {'single_frames': sparse_rows(single_frames(args, predict)),
                  'trajectories': sequence_rows(trajectories(args, predict), args.maps)}
        print_table('single frames (AbsRel, delta1; N true points a frame)',
                    result['single_frames'])
        print_table('trajectories (true poses as odometry; held frames not scored)',
                    result['trajectories'])
    if args.output is not None:
        from metricgold_core.io_utils import save_text
        save_text(args.output, json.dumps(result, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
