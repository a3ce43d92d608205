"""`metricgold` command line: one subcommand per module, each with add_parser(sub) + run(args)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand -> module that defines add_parser(subparsers) and run(args) -> exit status
SUBCOMMANDS = {
    'infer': 'metricgold_core.commands.infer',
    'bench': 'metricgold_core.commands.bench',
    'make-test-checkpoint': 'metricgold_core.commands.make_checkpoint',
    'process': 'metricgold_core.commands.process',
    'evaluate': 'metricgold_core.commands.evaluate',
    'train': 'metricgold_core.commands.train',
    'distill': 'metricgold_core.commands.distill',
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='metricgold', description='Metric depth from RGB images with a MetricGold model.')
    parser.add_argument('-v', '--verbose', action='store_true', help='debug logging')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_parser(sub, name)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s',
                        datefmt='%H:%M:%S')
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130
    except ValueError as exc:   # CheckpointError, bad device/dtype/mode: the user's to fix
        logging.getLogger(__name__).debug('details', exc_info=True)
        print(f'metricgold {args.command}: error: {exc}', file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
