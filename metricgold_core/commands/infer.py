"""`metricgold infer`: images -> <stem>_depth.npy (m), _depth.png (uint16 mm), _colored.png."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import add_mode_argument

LOG = logging.getLogger('metricgold.infer')


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help='predict metric depth for image files',
                       description='Predict metric depth for each IMAGE and write '
                       '<stem>_depth.npy (float32 metres, NaN = invalid), <stem>_depth.png '
                       '(uint16 millimetres, 0 = invalid) and <stem>_depth_colored.png.')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='input image files')
    p.add_argument('--checkpoint', default=None,
                   help='checkpoint directory (default: the packaged default model)')
    p.add_argument('--output', required=True, help='output directory (created if missing)')
    p.add_argument('--steps', type=int, choices=(1, 2), default=1, help='DDIM steps')
    p.add_argument('--processing-resolution', type=int, default=None,
                   help="long side the network sees (0 = native; default: the checkpoint's)")
    p.add_argument('--seed', type=int, default=0, help='noise seed (deterministic output)')
    p.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    p.add_argument('--dtype', default='auto', help='auto, float32, float16 or bfloat16')
    add_mode_argument(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..io_utils import depth_to_mm_png, read_rgb, save_npy, save_png
    from ..model import load_default_or
    from ..pipeline import DepthEstimator
    from ..visualize import colorize_depth

    model = load_default_or(args.checkpoint)
    if model.meta.get('untrained'):
        LOG.warning('this checkpoint is UNTRAINED (random weights): its depth is meaningless; '
                    'it only exercises the pipeline.')
    est = DepthEstimator(model, device=args.device, dtype=args.dtype, mode=args.mode)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for name in args.images:
        try:
            rgb = read_rgb(name)
        except ValueError as exc:
            LOG.error('skipping %s', exc)
            failed += 1
            continue
        pred = est(rgb, steps=args.steps, processing_resolution=args.processing_resolution,
                   seed=args.seed)
        stem = out_dir / Path(name).stem
        save_npy(f'{stem}_depth.npy', pred.depth)
        save_png(f'{stem}_depth.png', depth_to_mm_png(pred.depth))
        save_png(f'{stem}_depth_colored.png', colorize_depth(pred.depth))
        valid = pred.depth[np.isfinite(pred.depth)]
        LOG.info('%s: %dx%d, depth %.2f..%.2f m (median %.2f m), %.0f ms -> %s_depth.*', name,
                 rgb.shape[1], rgb.shape[0], valid.min(), valid.max(), np.median(valid),
                 pred.timings['total'], stem)
    if failed:
        LOG.error('%d of %d images failed', failed, len(args.images))
    return 1 if failed else 0
