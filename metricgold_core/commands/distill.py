"""`metricgold distill`: give a checkpoint its light decoder head (the `fast` mode)."""
from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="distil a checkpoint's light decoder (fast mode)",
                       description='Train the light decoder head of CHECKPOINT on its own '
                       '1-step latents of procedural scenes and write it into the checkpoint '
                       '(light_decoder.safetensors + a record in metricgold.json), in place or '
                       'to --output; prints the held-out errors of the exact and light '
                       'decoders.')
    p.add_argument('--checkpoint', required=True, help='checkpoint directory')
    p.add_argument('--output', default=None, help='where to write (default: in place)')
    p.add_argument('--scenes', type=int, default=256,
                   help='training scenes per size (seed stream 0)')
    p.add_argument('--val-scenes', type=int, default=48, help='held-out scenes per size')
    p.add_argument('--sizes', type=int, nargs='+', default=(96, 128, 240, 320),
                   metavar='H W', help='scene sizes as H W pairs (default 96 128 240 320)')
    p.add_argument('--channels', type=int, default=32, help='head width')
    p.add_argument('--steps', type=int, default=1500)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default cpu)')
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training.distill import distill

    if len(args.sizes) % 2:
        LOG.error('--sizes takes H W pairs, got %d numbers.', len(args.sizes))
        return 2
    sizes = list(zip(args.sizes[::2], args.sizes[1::2]))
    try:
        distill(args.checkpoint, args.output, scenes=args.scenes, val_scenes=args.val_scenes,
                sizes=sizes, channels=args.channels, steps=args.steps, batch=args.batch,
                lr=args.lr, seed=args.seed, device=args.device)
    except (OSError, ValueError) as exc:   # CheckpointError is a ValueError
        LOG.error('%s', exc)
        return 2
    return 0
