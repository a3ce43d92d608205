"""`metricgold train`: run a training recipe, resumably (under `accelerate launch --multi_gpu
--num_processes N -m metricgold_core.cli train ...` for N processes: docs/TRAINING.md)."""
from __future__ import annotations

import argparse
import logging
import sys

LOG = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument('--config', action='append', required=True, metavar='YAML',
                   help='recipe; repeat to overlay (e.g. --config tiny_cpu.yaml '
                        '--config debug.yaml)')
    p.add_argument('overrides', nargs='*', metavar='KEY=VALUE',
                   help='config overrides, e.g. optim.lr=1e-4 stages.1.max_steps=200')
    p.add_argument('--resume', default='auto',
                   help='auto (newest complete checkpoint in the output folder, if any), '
                        'none (start over), a checkpoints folder (its newest), or one '
                        'checkpoint (.../checkpoints/step_0001200)')
    p.add_argument('--only', default=None, metavar='STAGE_NAME',
                   help='run only this entry of `stages` (earlier stages must be finished)')
    p.add_argument('--print-config', action='store_true',
                   help='print the merged, validated config and exit')


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help='train or fine-tune a model from a YAML recipe')
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..training.config import ConfigError, load_config, stage_configs, to_yaml
    from ..training.trainer import run as run_training, TrainingInterrupted

    try:
        cfg = load_config(args.config, args.overrides)
        stages = stage_configs(cfg)
    except ConfigError as exc:
        print(f'config error: {exc}', file=sys.stderr)
        return 2
    if args.print_config:
        print(to_yaml(cfg if len(stages) == 1 else {'stages': stages}))
        return 0
    try:
        exported = run_training(cfg, resume=args.resume, only=args.only)
    except ConfigError as exc:
        print(f'config error: {exc}', file=sys.stderr)
        return 2
    except TrainingInterrupted as exc:
        LOG.warning('%s', exc)
        return 128 + int(exc.signum)
    for path in exported:
        LOG.info('model: %s', path)
    return 0
