#!/usr/bin/env python3
"""Write a contact sheet of procedural scenes: RGB above its colorized depth, 16 samples.

    python scripts/contact_sheet.py [--out docs/procedural_scenes.png] [--seed 0] [--size 240 320]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from metricgold_core.data.procedural import render_scene
from metricgold_core.io_utils import save_png
from metricgold_core.visualize import colorize_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default='docs/procedural_scenes.png')
    parser.add_argument('--seed', type=int, default=0, help='first scene seed')
    parser.add_argument('--count', type=int, default=16)
    parser.add_argument('--columns', type=int, default=4)
    parser.add_argument('--size', type=int, nargs=2, default=(180, 240), metavar=('H', 'W'))
    args = parser.parse_args()
    h, w = args.size
    tiles, elapsed = [], 0.0
    for i in range(args.count):
        start = time.perf_counter()
        scene = render_scene(args.seed + i, h, w, kind=('indoor', 'outdoor')[i % 2])
        elapsed += time.perf_counter() - start
        # one fixed log range for all tiles so colours compare across scenes: 0.5 m .. 150 m
        depth_rgb = colorize_depth(scene['depth'], d_min=0.5, d_max=150.0)
        tiles.append(np.concatenate([scene['rgb'], depth_rgb], axis=0))
    gap = 4
    rows = [np.concatenate([np.pad(t, ((gap, gap), (gap, gap), (0, 0)), constant_values=255)
                            for t in tiles[r:r + args.columns]], axis=1)
            for r in range(0, len(tiles), args.columns)]
    save_png(args.out, np.concatenate(rows, axis=0))
    print(f'wrote {args.out}: {args.count} scenes at {w}x{h}, '
          f'{args.count / elapsed:.1f} frames/s rendering')


if __name__ == '__main__':
    main()
