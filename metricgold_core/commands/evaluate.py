"""`metricgold evaluate`: a checkpoint on a dataset -> per-image CSV, summary JSON, markdown table.

    metricgold evaluate --checkpoint DIR --dataset nyuv2 --root DIR [--split FILE]
                        [--alignment none affine] --output DIR [--save-visuals]
    metricgold evaluate --dataset procedural --count 50 --size 240 320 --output DIR
    metricgold evaluate --dataset trajectory --count 8 --frames 24 --output DIR
    metricgold evaluate --dataset redwood --root DIR --sequence --output DIR

Depth is scored in metres (`none`) and, on request, after median or least-squares affine
alignment, inside the dataset's published caps and crop (override with --min/--max-depth).
Sequences (procedural trajectories, or a recording with poses and --sequence) also get TAE,
scale stability and fused maps (evaluate_sequences.py).
"""
from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
import time

import numpy as np

from . import add_ground_plane_arguments, add_model_arguments, add_scale_correction_argument
from . import chosen_anchor, evaluate_sequences, resolve_anchor
from ..data.registry import DATASETS

LOG = logging.getLogger(__name__)
PROCEDURAL_MAX_DEPTH_M = 80.0  # procedural streets reach ~800 m; score the usual outdoor range


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help='score a checkpoint on a depth dataset',
                       description=__doc__.split('\n\n', 1)[1])
    add_model_arguments(p)
    p.add_argument('--dataset', required=True,
                   choices=sorted(DATASETS) + ['procedural', 'trajectory'],
                   help='dataset reader')
    p.add_argument('--root', default=None,
                   help='dataset root folder (for `folder`: its dataset.yaml or the folder)')
    p.add_argument('--split', default=None, help='split file: one frame per line (optional)')
    p.add_argument('--alignment', nargs='+', default=['none'],
                   choices=('none', 'median', 'affine'),
                   help='alignment mode(s); `none` scores metric depth (default)')
    p.add_argument('--output', required=True, help='output directory (created if missing)')
    p.add_argument('--limit', type=int, default=None, help='evaluate the first N frames only')
    p.add_argument('--min-depth', type=float, default=None,
                   help='ground-truth lower cap in metres (default: the dataset protocol)')
    p.add_argument('--max-depth', type=float, default=None,
                   help='ground-truth upper cap in metres (default: the dataset protocol)')
    p.add_argument('--kitti-crop', choices=('garg', 'eigen', 'none'), default='eigen',
                   help='KITTI evaluation crop (default eigen)')
    p.add_argument('--kitti-kb-crop', action='store_true',
                   help='KITTI: cut the 352x1216 benchmark crop first (as Marigold evaluates)')
    p.add_argument('--count', type=int, default=32,
                   help='procedural: number of scenes (trajectory: of trajectories)')
    p.add_argument('--size', type=int, nargs=2, default=(240, 320), metavar=('H', 'W'),
                   help='procedural: image size')
    p.add_argument('--scene-seed', type=int, default=12345,
                   help='procedural: dataset seed (keep it apart from training seeds)')
    p.add_argument('--framing', choices=('normal', 'close'), default='normal',
                   help='procedural: normal views, or close range (the camera 0.3-1.5 m from '
                   'a wall, furniture, the floor or the road)')
    p.add_argument('--sparse-points', type=int, default=0, metavar='N',
                   help='scale source sparse_depth: N ground-truth pixels per frame (fixed seed, '
                   'the depth-completion protocol) anchor the scale (0 = none)')
    add_ground_plane_arguments(
        p, height_type=str, height_metavar='M|gt',
        height_help="scale source ground_plane: the camera's height over the floor in metres, "
        "or `gt` for the dataset's true height (procedural scenes)")
    p.add_argument('--sparse-seed', type=int, default=0, help='seed of the sparse samples')
    add_scale_correction_argument(p)
    p.add_argument('--odometry', action='store_true',
                   help="scale source odometry on posed sequences (--sequence, trajectory): "
                   "each frame's scale from the camera's motion since earlier frames (the "
                   'poses as odometry; metric checkpoints only)')
    p.add_argument('--wait-for-scale', action='store_true',
                   help="--odometry: score only the frames from the first accepted fit of each "
                   "sequence on, as the node publishes them with wait_for_scale (the others are "
                   'counted as held); maps are fused from those frames')
    p.add_argument('--prior-baseline', type=int, default=0, metavar='N',
                   help='score the image-blind baseline instead of a model: the per-pixel mean '
                   'log depth of N procedural training scenes (seed stream 0) at each '
                   "evaluated image's size; a depth model must beat it by a wide margin")
    p.add_argument('--save-visuals', action='store_true',
                   help='write visuals/<frame>.png: RGB | prediction | ground truth | error')
    p.add_argument('--save-predictions', action='store_true',
                   help='write predictions/<frame>.npy (float32 metres, NaN = invalid)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    evaluate_sequences.add_arguments(p)
    p.set_defaults(func=run)


def open_dataset(args):
    """The dataset named by the arguments; raises FileNotFoundError / ValueError for the user."""
    if args.dataset == 'procedural':
        from ..data.procedural import ProceduralScenes
        h, w = args.size
        ds = ProceduralScenes(args.count, h, w, seed=args.scene_seed, framing=args.framing)
        ds.eval_min_depth_m, ds.eval_max_depth_m = 1e-3, PROCEDURAL_MAX_DEPTH_M
        ds.eval_mask = None
        return ds
    if args.dataset == 'trajectory':
        ds = evaluate_sequences.open_trajectories(args)
        ds.eval_min_depth_m, ds.eval_max_depth_m = 1e-3, PROCEDURAL_MAX_DEPTH_M
        ds.eval_mask = None
        return ds
    if args.root is None:
        raise ValueError(f'--root is required for --dataset {args.dataset}: the folder that '
                         f'holds the dataset.')
    from ..data.registry import make_dataset
    kwargs = {}
    if args.dataset == 'kitti':
        kwargs['crop'] = None if args.kitti_crop == 'none' else args.kitti_crop
        kwargs['kb_crop'] = args.kitti_kb_crop
    return evaluate_sequences.posed(
        args, make_dataset(args.dataset, args.root, split=args.split, **kwargs))


def run(args) -> int:
    from tqdm import tqdm

    from ..io_utils import file_stem, save_npy, save_png, save_text
    from ..data.procedural import ProceduralScenes
    from ..metric_depth import estimate_metric_depth, load_estimator
    from ..scale import AnchorError
    from ..evaluation.metrics import aggregate, compute_metrics, markdown_table, METRICS
    from ..visualize import comparison_panel

    try:
        dataset = open_dataset(args)
        recorder = evaluate_sequences.open_recorder(args)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as exc:
        LOG.error('%s', exc.args[0] if exc.args else exc)
        return 2
    if args.odometry and recorder is None:
        LOG.error('--odometry needs posed sequences: --sequence, or --dataset trajectory.')
        return 2
    if args.wait_for_scale and not args.odometry:
        LOG.error('--wait-for-scale goes with --odometry (the scale source with a state across '
                  'frames).')
        return 2
    if args.prior_baseline and (args.sparse_points or args.camera_height is not None
                                or args.odometry):
        LOG.error('--prior-baseline scores the prior as it is: no scale source.')
        return 2
    source, problem = chosen_anchor(args, '--sparse-points', bool(args.sparse_points),
                                    '--odometry', args.odometry)
    if problem:
        LOG.error('%s', problem)
        return 2
    est = model = None
    if not args.prior_baseline:
        try:
            est = load_estimator(args.checkpoint, args.device, args.dtype, args.mode)
        except (FileNotFoundError, ValueError) as exc:  # CheckpointError is a ValueError
            LOG.error('%s', exc)
            return 2
        model = est.model
        try:   # a placeholder height for `gt`: each sample brings its own
            anchor = resolve_anchor(model, args, source, 1.0 if args.camera_height
                                    == 'gt' else args.camera_height)
        except AnchorError as exc:
            LOG.error('%s', exc)
            return 2
    priors = {}   # (h, w) -> prior depth map
    min_depth = args.min_depth if args.min_depth is not None else dataset.eval_min_depth_m
    max_depth = args.max_depth if args.max_depth is not None else dataset.eval_max_depth_m
    max_depth = None if not np.isfinite(max_depth) else float(max_depth)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = len(dataset) if args.limit is None else min(args.limit, len(dataset))
    rows, failed, times, fits, held = [], 0, [], [], 0
    motion = {}   # odometry: the sequence and its ScaleSession
    for i in tqdm(range(count), desc=f'evaluate {args.dataset}', unit='img',
                  disable=args.no_progress):
        try:
            sample = dataset[i]
        except (FileNotFoundError, ValueError, KeyError) as exc:
            LOG.error('skipping frame %d: %s', i, exc)
            failed += 1
            continue
        if args.prior_baseline:
            hw = sample['depth'].shape
            if hw not in priors:
                priors[hw] = mean_log_depth(ProceduralScenes(args.prior_baseline, *hw, seed=0))
            depth_pred, factor, time_ms, fit, anchor_scale = priors[hw], 1.0, 0.0, None, 1.0
        else:
            session, measurement = frame_session(args, anchor, sample, i, motion)
            out = estimate_metric_depth(est, sample['rgb'], sample['K'], steps=args.steps,
                                        processing_resolution=args.processing_resolution,
                                        seed=args.seed, session=session,
                                        measurement=measurement)
            depth_pred, factor, fit, anchor_scale = out.depth, out.focal_factor, out.fit, \
                out.scale
            time_ms = out.timings['total']
            if args.wait_for_scale and session.waiting():
                held += 1   # not published before the first accepted fit
                if fit is not None:
                    fits.append(fit)
                continue
        if fit is not None:
            fits.append(fit)
        times.append(time_ms)
        mask = dataset.eval_mask(sample) if dataset.eval_mask is not None else None
        if recorder is not None:
            recorder.add(sample, depth_pred, mask, min_depth, max_depth)
        for mode in args.alignment:
            metrics = compute_metrics(depth_pred, sample['depth'], mask, min_depth, max_depth,
                                      alignment=mode)
            rows.append({'name': sample['name'], 'alignment': mode, **metrics,
                         'focal_factor': factor, 'time_ms': time_ms,
                         'anchor_scale': anchor_scale, 'anchor_ok': None if fit is None
                         else fit.ok})
        stem = file_stem(sample['name'])
        if args.save_predictions:
            save_npy(out_dir / 'predictions' / f'{stem}.npy', depth_pred)
        if args.save_visuals:
            save_png(out_dir / 'visuals' / f'{stem}.png',
                     comparison_panel(sample['rgb'], depth_pred, sample['depth'], mask))
    summaries = {mode: aggregate([r for r in rows if r['alignment'] == mode])
                 for mode in args.alignment}
    columns = ['name', 'alignment', *METRICS, 'valid_pixels', 'coverage', 'scale', 'shift',
               'focal_factor', 'anchor_scale', 'anchor_ok', 'time_ms']
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction='ignore')
    writer.writeheader()
    writer.writerows(rows)
    save_text(out_dir / 'per_image.csv', buffer.getvalue())
    summary = {
        'dataset': args.dataset, 'root': args.root, 'split': args.split,
        'framing': args.framing if args.dataset == 'procedural' else None,
        'checkpoint': f'prior_baseline({args.prior_baseline} scenes)' if model is None
        else args.checkpoint or 'default',
        'untrained': bool(model is not None and model.meta.get('untrained')),
        'images': count - failed - held, 'failed': failed, 'steps': args.steps,
        'mode': args.mode,
        'processing_resolution': None if model is None else args.processing_resolution
        if args.processing_resolution is not None else model.processing_resolution,
        'min_depth_m': min_depth, 'max_depth_m': max_depth,
        'canonical_focal_px': None if model is None else model.canonical_focal_px,
        'scale_source': source,
        'sparse_points': args.sparse_points, 'camera_height': args.camera_height,
        'scale_fits_failed': sum(1 for f in fits if not f.ok),
        'held_for_scale': held if args.wait_for_scale else None,
        'mean_time_ms': float(np.mean(times)) if times else None,
        'metrics': summaries,
        'date': time.strftime('%Y-%m-%d %H:%M:%S'),
    }
    sequence_table = ''
    if recorder is not None:
        summary['sequences'], sequence_table = recorder.finish()
    save_text(out_dir / 'summary.json', json.dumps(summary, indent=2, allow_nan=True) + '\n')
    close = args.dataset == 'procedural' and args.framing == 'close'
    title = (f'{args.dataset}{" (close range)" if close else ""}: {count - failed - held} images'
             f'{f" ({held} held back before the first accepted fit)" if held else ""}, depth in '
             f'[{min_depth:g}, {max_depth if max_depth is not None else float("inf"):g}] m, '
             f'{args.steps} step(s), {args.mode} mode')
    label = 'prior baseline' if model is None else Path(args.checkpoint or 'default').name
    table = markdown_table({f'{label}, {mode}': summaries[mode]
                            for mode in args.alignment})
    if sequence_table:
        table += ('\nSequences (TAE and scale CV over frames; maps fused along the true poses):'
                  f'\n\n{sequence_table}')
    save_text(out_dir / 'summary.md', f'{title}\n\n{table}')
    print(f'{title}\n\n{table}', end='')
    LOG.info('wrote %s, summary.json and summary.md to %s', 'per_image.csv', out_dir)
    if failed:
        LOG.error('%d of %d frames failed', failed, count)
    return 1 if failed else 0


def mean_log_depth(scenes) -> np.ndarray:
    """Per-pixel mean of log depth over the valid pixels of `scenes` -> depth map (m): the
    image-blind prior of --prior-baseline."""
    total = count = None
    for sample in scenes:
        log_d = np.log(np.where(sample['valid'], sample['depth'], 1.0))
        if total is None:
            total, count = np.zeros_like(log_d, np.float64), np.zeros_like(log_d, np.float64)
        total += np.where(sample['valid'], log_d, 0.0)
        count += sample['valid']
    return np.exp(total / np.maximum(count, 1)).astype(np.float32)


def frame_session(args, anchor, sample: dict, index: int, motion: dict) -> tuple:
    """(scale.ScaleSession, measurement) of one sample: one session per sample, or per
    sequence for odometry (`motion` carries it through the sequence)."""
    import dataclasses

    from ..scale import ScaleSession

    correction = getattr(args, 'scale_correction', 'global')
    if anchor.source == 'odometry':
        if motion.get('sequence') != sample['sequence']:   # a new sequence: start again
            motion.update(sequence=sample['sequence'], session=ScaleSession(anchor, correction))
        stamp_s = sample.get('timestamp', index * 0.1)
        session = motion['session']
        return session, session.motion(sample['pose'], round(stamp_s * 1e9))
    measurement = None
    if args.sparse_points:
        from ..scale import sparse_sample
        measurement = sparse_sample(sample['depth'], sample.get('valid'), args.sparse_points,
                                    args.sparse_seed + index)
    elif args.camera_height == 'gt':
        if 'camera_height_m' not in sample:
            raise ValueError('--camera-height gt needs a dataset that knows the camera '
                             'height (procedural)')
        anchor = dataclasses.replace(anchor, camera_height_m=float(sample['camera_height_m']))
    return ScaleSession(anchor, correction, carry=False), measurement
