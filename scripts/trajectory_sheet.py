#!/usr/bin/env python3
"""Write a sheet of procedural camera trajectories: one row per (kind, motion), four frames of
each (RGB above its colorized depth) from the first to the last.

    python scripts/trajectory_sheet.py [--out docs/trajectories.png] [--seed 0] [--frames 24]
"""
from __future__ import annotations

import argparse

import numpy as np

from metricgold_core.data.trajectory import MOTIONS, render_trajectory
from metricgold_core.io_utils import save_png
from metricgold_core.visualize import colorize_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='docs/trajectories.png')
    parser.add_argument('--seed', type=int, default=0, help='first layout seed')
    parser.add_argument('--frames', type=int, default=24)
    parser.add_argument('--fps', type=float, default=10.0)
    parser.add_argument('--size', type=int, nargs=2, default=(120, 160), metavar=('H', 'W'))
    args = parser.parse_args()
    h, w = args.size
    rows, gap = [], 3
    for k, (kind, motion) in enumerate((kind, motion) for kind in ('indoor', 'outdoor')
                                       for motion in MOTIONS):
        seq = render_trajectory(args.seed + k, h, w, kind, args.frames, args.fps, motion)
        picks = np.linspace(0, args.frames - 1, 4).round().astype(int)
        tiles = [np.concatenate([seq['rgb'][i], colorize_depth(seq['depth'][i], 0.5, 150.0)])
                 for i in picks]
        rows.append(np.concatenate([np.pad(t, ((gap, gap), (gap, gap), (0, 0)),
                                           constant_values=255) for t in tiles], axis=1))
        print(f'{seq["name"]}: {seq["platform"]} at {seq["speed_mps"]:.2f} m/s, '
              f'{args.frames} frames at {args.fps:g} Hz')
    save_png(args.out, np.concatenate(rows, axis=0))
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
