"""`metricgold make-test-checkpoint`: write a randomly initialised (untrained) checkpoint."""
from __future__ import annotations

import logging

LOG = logging.getLogger(__name__)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help='write an untrained checkpoint of a preset (for tests/demos)')
    p.add_argument('output', help='checkpoint directory to write (replaced atomically)')
    p.add_argument('--preset', default='tiny', help='tiny or sd2')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--d-min', type=float, default=0.1, help='codec minimum depth (m)')
    p.add_argument('--d-max', type=float, default=100.0, help='codec maximum depth (m)')
    p.add_argument('--processing-resolution', type=int, default=None)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..model.codec import LogDepthCodec
    from ..model.network import MetricGoldModel

    model = MetricGoldModel.from_preset(args.preset, seed=args.seed,
                                        codec=LogDepthCodec(args.d_min, args.d_max))
    model.meta['untrained'] = True
    if args.processing_resolution is not None:
        model.meta['processing_resolution'] = args.processing_resolution
    path = model.save(args.output)
    LOG.info('wrote UNTRAINED %s checkpoint (%s parameters) to %s', args.preset,
             model.num_parameters(), path)
    return 0
