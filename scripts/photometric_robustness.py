"""How much the depth of the same frame moves when only the camera's photometry changes.

    python scripts/photometric_robustness.py [--checkpoint DIR] [--count 32] [--close 32]
        [--size 480 640] [--root ../shared/data/real] [--dtype float32] [--output DIR]

For every frame (held-out procedural scenes, seeds from --scene-seed, and the real frames of
tum, icl_nuim, redwood and kinect_ch5 under --root) the depth of the unchanged image is compared
with the depth of the image after one change (data.photometric, sizes below): AbsRel of the
changed depth against the unchanged depth (how far the map moves), and both against ground
truth. The auto-exposure ramp plays a smooth gain sequence (x0.6 .. x1.5 and back, 9 frames)
and scores its worst frame. Also reported: on procedural outdoor scenes, the share of sky
pixels given a finite depth under 80 m; and metric accuracy on close-range scenes (the camera
0.3-1.5 m from a surface, framing 'close', seeds from --close-seed).

Everything goes through metric_depth.estimate_metric_depth, as the node and the CLIs do.
Writes robustness.json and robustness.md to --output (also printed).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REAL_SETS = {'tum': 'tum', 'icl_nuim': 'icl_nuim', 'redwood': 'redwood', 'kinect': 'kinect_ch5'}
# gain of each frame of the auto-exposure ramp: up to x1.5, down to x0.6, back (a sine in log)
AE_RAMP = (1.0, 1.33, 1.5, 1.33, 1.0, 0.7, 0.6, 0.7, 1.0)
SKY_NEAR_M = 80.0


def perturbations(seed: int) -> dict:
    """name -> function(rgb) -> rgb: each change alone, at a fixed size."""
    from metricgold_core.data import photometric as ph

    rng = np.random.default_rng(seed)
    return {
        'exposure x0.7': lambda x: ph.exposure(x, 0.7),
        'exposure x1.3': lambda x: ph.exposure(x, 1.3),
        'white balance (R x1.15, B x0.85)': lambda x: ph.white_balance(x, (1.15, 1.0, 0.85)),
        'gamma 0.8': lambda x: ph.gamma(x, 0.8),
        'contrast x0.8': lambda x: ph.contrast(x, 0.8),
        'YUV range swap': ph.yuv_range_swap,
        'noise sigma 6': lambda x: ph.sensor_noise(x, 6.0, rng),
        'JPEG q40': lambda x: ph.jpeg(x, 40),
        'blur sigma 1.5': lambda x: ph.blur(x, 1.5),
    }


def abs_rel(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """AbsRel of `pred` against `ref` (metrics.masked_abs_rel; nan when nothing overlaps)."""
    from metricgold_core.evaluation.metrics import masked_abs_rel
    return masked_abs_rel(pred, ref, mask)[0]


def frames(args):
    """(set, sample) for the procedural held-out scenes and the real frames."""
    from metricgold_core.data.procedural import render_scene
    from metricgold_core.data.registry import make_dataset

    h, w = args.size
    for i in range(args.count):
        yield 'procedural', render_scene(args.scene_seed + i, h, w)
    root = Path(args.root)
    for name, folder in REAL_SETS.items():
        if not (root / folder).is_dir():
            continue
        dataset = make_dataset(name, root / folder)
        for index in range(len(dataset)):
            yield name, dataset[index]


def score_frame(estimator, sample, changes: dict, steps: int) -> dict:
    from metricgold_core.metric_depth import estimate_metric_depth

    def depth(rgb):
        return estimate_metric_depth(estimator, rgb, sample['K'], steps=steps, seed=0).depth

    gt, valid = sample['depth'], sample['valid']
    base = depth(sample['rgb'])
    out = {'name': sample.get('name', '?'), 'gt_abs_rel': abs_rel(base, gt, valid),
           'moves': {}, 'gt_abs_rel_changed': {}}
    for label, change in changes.items():
        changed = depth(change(sample['rgb']))
        out['moves'][label] = abs_rel(changed, base)
        out['gt_abs_rel_changed'][label] = abs_rel(changed, gt, valid)
    from metricgold_core.data import photometric as ph
    ramp = [depth(ph.exposure(sample['rgb'], g)) for g in AE_RAMP]
    out['moves']['auto-exposure ramp (worst of 9)'] = max(abs_rel(d, base) for d in ramp)
    out['gt_abs_rel_changed']['auto-exposure ramp (worst of 9)'] = max(
        abs_rel(d, gt, valid) for d in ramp)
    if sample.get('sky') is not None and sample['sky'].any():
        with np.errstate(invalid='ignore'):
            near = np.isfinite(base) & (base < SKY_NEAR_M)
        out['sky_pixels'] = int(sample['sky'].sum())
        out['sky_near'] = int((near & sample['sky']).sum())
    flagged = ~np.isfinite(base) & valid
    out['flagged_valid_share'] = float(flagged.sum() / max(valid.sum(), 1))
    return out


def close_range(estimator, args) -> dict:
    from metricgold_core.data.procedural import render_scene
    from metricgold_core.metric_depth import estimate_metric_depth
    from metricgold_core.evaluation.metrics import compute_metrics

    h, w = args.size
    rows = []
    for i in range(args.close):
        s = render_scene(args.close_seed + i, h, w, framing='close')
        d = estimate_metric_depth(estimator, s['rgb'], s['K'], steps=args.steps, seed=0).depth
        mask = s['valid'] & np.isfinite(d)
        rows.append({'name': s['name'],
                     'median_gt_m': float(np.nanmedian(s['depth'])),
                     'abs_rel': compute_metrics(d, s['depth'], mask)['abs_rel'],
                     'abs_rel_median_scaled': compute_metrics(d, s['depth'], mask,
                                                              alignment='median')['abs_rel']})
    values = np.array([r['abs_rel'] for r in rows])
    return {'scenes': len(rows), 'abs_rel': float(values.mean()),
            'abs_rel_median_scaled': float(np.mean([r['abs_rel_median_scaled'] for r in rows])),
            'max_abs_rel': float(values.max()), 'above_1': int((values > 1.0).sum()),
            'per_scene': rows}


def summarise(rows: list) -> dict:
    labels = list(rows[0]['moves'])
    table = {}
    for label in labels:
        moves = np.array([r['moves'][label] for r in rows])
        worst = int(np.nanargmax(moves))
        table[label] = {'median_move': float(np.nanmedian(moves)),
                        'mean_move': float(np.nanmean(moves)),
                        'worst_move': float(moves[worst]), 'worst_frame': rows[worst]['name'],
                        'gt_abs_rel_changed': float(np.nanmean(
                            [r['gt_abs_rel_changed'][label] for r in rows]))}
    return table


def markdown(result: dict) -> str:
    lines = [f'checkpoint: {result["checkpoint"]}; {result["frames"]} frames '
             f'({result["procedural_frames"]} procedural, {result["real_frames"]} real); '
             f'unchanged AbsRel vs truth {result["gt_abs_rel"]:.3f}', '',
             '| change of the image only | depth moves: median | mean | worst (frame) '
             '| AbsRel vs truth after |', '|---|---:|---:|---|---:|']
    for label, row in result['table'].items():
        lines.append(f'| {label} | {row["median_move"]:.3f} | {row["mean_move"]:.3f} | '
                     f'{row["worst_move"]:.3f} ({row["worst_frame"]}) | '
                     f'{row["gt_abs_rel_changed"]:.3f} |')
    sky = result['sky']
    lines += ['', f'sky pixels given a finite depth under {SKY_NEAR_M:.0f} m: '
              f'{sky["near_share"]:.1%} of {sky["pixels"]} (procedural outdoor scenes)',
              f'valid pixels flagged invalid (NaN) by the model: '
              f'{result["flagged_valid_share"]:.2%}']
    close = result.get('close_range')
    if close:
        lines.append(f'close range ({close["scenes"]} scenes): AbsRel {close["abs_rel"]:.3f}, '
                     f'median-scaled {close["abs_rel_median_scaled"]:.3f}, worst '
                     f'{close["max_abs_rel"]:.3f}, scenes above 1.0: {close["above_1"]}')
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', default=None, help='default: the packaged model')
    parser.add_argument('--count', type=int, default=32, help='procedural held-out scenes')
    parser.add_argument('--close', type=int, default=32, help='close-range scenes (0 = none)')
    parser.add_argument('--scene-seed', type=int, default=5_100_000)
    parser.add_argument('--close-seed', type=int, default=5_200_000)
    parser.add_argument('--size', type=int, nargs=2, default=(480, 640), metavar=('H', 'W'))
    parser.add_argument('--steps', type=int, default=1, choices=(1, 2))
    parser.add_argument('--perturbation-seed', type=int, default=77)
    parser.add_argument('--dtype', default='auto',
                        help='auto (float32 on a CPU, float16 on CUDA) | bfloat16 | ...')
    parser.add_argument('--root', default=str(Path(__file__).resolve().parents[2] / 'shared'
                                              / 'data' / 'real'))
    parser.add_argument('--output', default=None, help='folder for robustness.json / .md')
    args = parser.parse_args(argv)

    from metricgold_core.io_utils import save_text
    from metricgold_core.metric_depth import load_estimator

    estimator = load_estimator(args.checkpoint, device='cpu', dtype=args.dtype)
    changes = perturbations(args.perturbation_seed)
    rows, sets = [], []
    for set_name, sample in frames(args):
        row = score_frame(estimator, sample, changes, args.steps)
        if set_name != 'procedural':   # real frames are named within their set only
            row['name'] = f'{set_name}:{row["name"]}'
        rows.append(row)
        sets.append(set_name)
        print(f'{set_name} {rows[-1]["name"]}: ' + ', '.join(
            f'{k} {v:.3f}' for k, v in rows[-1]['moves'].items()), flush=True)
    sky_pixels = sum(r.get('sky_pixels', 0) for r in rows)
    sky_near = sum(r.get('sky_near', 0) for r in rows)
    result = {'checkpoint': args.checkpoint or 'packaged default', 'frames': len(rows),
              'procedural_frames': sets.count('procedural'),
              'real_frames': len(rows) - sets.count('procedural'),
              'gt_abs_rel': float(np.nanmean([r['gt_abs_rel'] for r in rows])),
              'flagged_valid_share': float(np.mean([r['flagged_valid_share'] for r in rows])),
              'table': summarise(rows),
              'sky': {'pixels': sky_pixels, 'near': sky_near,
                      'near_share': sky_near / sky_pixels if sky_pixels else float('nan')},
              'per_frame': [dict(r, set=s) for r, s in zip(rows, sets)]}
    if args.close:
        result['close_range'] = close_range(estimator, args)
    text = markdown(result)
    print(text)
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        save_text(out / 'robustness.json', json.dumps(result, indent=1) + '\n')
        save_text(out / 'robustness.md', text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
