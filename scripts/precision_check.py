#!/usr/bin/env python3
"""Does a reduced dtype keep the answer? Depth per dtype against float32 (not a test: prints).

    python scripts/precision_check.py [--checkpoint DIR] [--scenes 16] [--steps 1]
        [--variants float32,bfloat16:none,bfloat16,float16:none,float16] [--json out.json]

Frames: every RGB frame of the real sets under --root (tum, icl_nuim, redwood, kinect_ch5) and
--scenes procedural scenes (480x640, scene seeds 5,000,000 on). A variant is DTYPE (with the
pipeline's default float32 parts, precision.DEFAULT_PARTS), DTYPE:none (the whole model in
DTYPE: what `dtype` did before the parts) or DTYPE:part+part (those parts of precision.PARTS).
Per variant: the relative difference of its depth to float32's, |d / d_float32 - 1| over the
pixels valid in both, mean and 99th percentile over all pixels of all frames, and the worst
frame's mean; the demosaicing probe (each real frame sent as bayer_bggr8, demosaiced as the
node does, against the same frame as rgb8: AbsRel between the two depths, mean and worst frame);
and the median ms per frame (the estimator's total, --threads torch threads). The variants run
frame by frame in turn, so a change in the machine's load reaches them alike.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETS = ('tum', 'icl_nuim', 'redwood', 'kinect_ch5')


def real_frames(root: Path) -> list:
    """[(name, uint8 RGB (H, W, 3))] of every real set's rgb/ folder."""
    import cv2

    frames = []
    for name in SETS:
        for path in sorted((root / name / 'rgb').glob('*')):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is not None:
                frames.append((f'{name}/{path.name}', np.ascontiguousarray(bgr[..., ::-1])))
    return frames


def procedural_frames(count: int, height: int = 480, width: int = 640) -> list:
    from metricgold_core.data.procedural import render_scene

    return [(f'procedural/{seed}', render_scene(seed, height, width)['rgb'])
            for seed in range(5_000_000, 5_000_000 + count)]


def through_bayer(rgb: np.ndarray) -> np.ndarray:
    """The frame as a camera with a BGGR mosaic sends it, decoded as the node decodes it."""
    from metricgold_core.ros_format.images import image_to_rgb8

    height, width = rgb.shape[:2]
    mosaic = np.empty((height, width), np.uint8)
    mosaic[0::2, 0::2] = rgb[0::2, 0::2, 2]   # B
    mosaic[0::2, 1::2] = rgb[0::2, 1::2, 1]   # G
    mosaic[1::2, 0::2] = rgb[1::2, 0::2, 1]   # G
    mosaic[1::2, 1::2] = rgb[1::2, 1::2, 0]   # R
    msg = SimpleNamespace(encoding='bayer_bggr8', height=height, width=width, step=width,
                          is_bigendian=0, data=mosaic.tobytes())
    return np.ascontiguousarray(image_to_rgb8(msg))


def relative_difference(depth: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|depth / reference - 1| over the pixels valid in both (1-D)."""
    ok = np.isfinite(depth) & np.isfinite(reference) & (reference > 0)
    return np.abs(depth[ok] / reference[ok] - 1.0)


def parse_variant(text: str) -> tuple:
    """'bfloat16' -> ('bfloat16', DEFAULT_PARTS); 'bfloat16:none' -> (.., ()); 'x:a+b'."""
    from metricgold_core.model.precision import check_parts, DEFAULT_PARTS

    dtype, _, parts = text.partition(':')
    if not parts:
        return dtype, DEFAULT_PARTS
    return dtype, () if parts == 'none' else check_parts(parts.split('+'))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', default=None, help='default: the packaged model')
    p.add_argument('--root', default=str(ROOT.parent / 'shared' / 'data' / 'real'))
    p.add_argument('--scenes', type=int, default=16)
    p.add_argument('--real', type=int, default=0, help='only the first N real frames (0: all)')
    p.add_argument('--steps', type=int, default=1)
    p.add_argument('--mode', default='exact', choices=('exact', 'fast'))
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--no-bayer', action='store_true', help='skip the demosaicing probe')
    p.add_argument('--variants', default='float32,bfloat16:none,bfloat16,float16:none,float16')
    p.add_argument('--json', default=None)
    args = p.parse_args()

    import torch

    from metricgold_core.model.network import load_default_or
    from metricgold_core.model.pipeline import DepthEstimator

    torch.set_num_threads(args.threads)
    variants = ['float32'] + [v for v in args.variants.split(',') if v and v != 'float32']
    real = real_frames(Path(args.root))
    real = real[:args.real] if args.real else real
    frames = [(name, rgb, True) for name, rgb in real] + [
        (name, rgb, False) for name, rgb in procedural_frames(args.scenes)]
    print(f'{len(real)} real frames, {args.scenes} procedural scenes, {args.steps} step(s), '
          f'{args.mode} mode, {args.threads} thread(s)')

    def estimator(variant: str) -> DepthEstimator:
        dtype, parts = parse_variant(variant)
        # one model each: the estimator casts the model it is given
        return DepthEstimator(load_default_or(args.checkpoint), device='cpu', dtype=dtype,
                              mode=args.mode, float32_parts=parts)

    estimators = {}
    for variant in variants:
        est = estimator(variant)
        try:   # a dtype this CPU / torch build does not run is left out, with why
            est(np.full((32, 32, 3), 127, np.uint8), processing_resolution=0, seed=0)
        except (RuntimeError, NotImplementedError) as exc:
            print(f'{variant}: not run on this machine ({exc})')
            continue
        estimators[variant] = est
    variants = list(estimators)
    diffs = {v: [] for v in variants}
    frame_means = {v: [] for v in variants}
    probe = {v: [] for v in variants}
    ms = {v: [] for v in variants}
    for i, (name, rgb, is_real) in enumerate(frames):
        reference = None
        bayer = through_bayer(rgb) if is_real and not args.no_bayer else None
        for variant, est in estimators.items():
            pred = est(rgb, steps=args.steps, seed=0)
            ms[variant].append(pred.timings['total'])
            if reference is None:
                reference = pred.depth
            diff = relative_difference(pred.depth, reference)
            diffs[variant].append(diff)
            frame_means[variant].append(float(diff.mean()))
            if bayer is not None:
                other = est(bayer, steps=args.steps, seed=0).depth
                probe[variant].append(float(relative_difference(other, pred.depth).mean()))
        print(f'  {i + 1}/{len(frames)} {name}: ' + ', '.join(
            f'{v} {100 * frame_means[v][-1]:.2f} %' for v in variants[1:]), flush=True)

    rows = {}
    for v in variants:
        pooled = np.concatenate(diffs[v])
        rows[v] = {'mean': float(pooled.mean()), 'p99': float(np.percentile(pooled, 99)),
                   'worst_frame_mean': max(frame_means[v]),
                   'bayer_absrel_mean': float(np.mean(probe[v])) if probe[v] else None,
                   'bayer_absrel_max': max(probe[v]) if probe[v] else None,
                   'ms_per_frame': float(np.median(ms[v]))}
    print('\n| dtype (float32 parts) | mean rel. diff | p99 | worst frame mean | '
          'Bayer-vs-rgb8 AbsRel mean / max | ms per frame |')
    print('|---|---:|---:|---:|---:|---:|')
    for v, r in rows.items():
        dtype, parts = parse_variant(v)
        label = dtype if dtype == 'float32' else f'{dtype} ({"+".join(parts) or "none"})'
        bayer = '-' if r['bayer_absrel_mean'] is None else \
            f'{r["bayer_absrel_mean"]:.4f} / {r["bayer_absrel_max"]:.4f}'
        print(f'| {label} | {100 * r["mean"]:.2f} % | {100 * r["p99"]:.2f} % | '
              f'{100 * r["worst_frame_mean"]:.2f} % | {bayer} | {r["ms_per_frame"]:.0f} |')
    if args.json:
        Path(args.json).write_text(json.dumps({'args': vars(args), 'rows': rows}, indent=1))


if __name__ == '__main__':
    main()
