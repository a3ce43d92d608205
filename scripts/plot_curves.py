"""Loss and validation AbsRel of a multi-stage run, from its metrics.jsonl files, as one PNG.

    python scripts/plot_curves.py docs/default_model/metrics_*.jsonl --output curves.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
import sys

import numpy as np

from metricgold_core.io_utils import save_png

COLORS = [(200, 60, 60), (60, 140, 60), (60, 90, 200), (200, 140, 30)]


def read_series(paths) -> list:
    """[(stage name, [(global step, loss)], [(global step, val abs_rel)])] in file order."""
    series, offset = [], 0
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line]
        loss = [(offset + r['step'], r['train/loss']) for r in rows if 'train/loss' in r]
        val = [(offset + r['step'], r['val/abs_rel']) for r in rows if 'val/abs_rel' in r]
        name = Path(path).stem.replace('metrics_', '')
        series.append((name, loss, val))
        offset += max([s for s, _ in loss + val] + [0]) - offset if loss or val else 0
    return series


def plot(series, output: Path, width: int = 900, height: int = 560) -> None:
    from PIL import Image, ImageDraw
    image = Image.new('RGB', (width, height), 'white')
    draw = ImageDraw.Draw(image)
    panels = [('training loss (log scale)', 1), ('validation AbsRel (log scale)', 2)]
    top_step = max((s for _, loss, val in series for s, _ in loss + val), default=1)
    for row, (title, index) in enumerate(panels):
        y0, y1 = 40 + row * (height // 2), (row + 1) * (height // 2) - 30
        x0, x1 = 70, width - 20
        points = [v for item in series for _, v in item[index] if v > 0]
        if not points:
            continue
        lo, hi = np.log10(min(points)), np.log10(max(points))
        hi = hi if hi > lo else lo + 1
        draw.text((x0, y0 - 28), title, fill='black')
        draw.rectangle([x0, y0, x1, y1], outline='black')
        for tick in np.linspace(lo, hi, 4):
            y = y1 - (tick - lo) / (hi - lo) * (y1 - y0)
            draw.text((4, y - 6), f'{10 ** tick:.3g}', fill='black')
        for k, item in enumerate(series):
            xy = [(x0 + s / top_step * (x1 - x0), y1 - (np.log10(v) - lo) / (hi - lo) * (y1 - y0))
                  for s, v in item[index] if v > 0]
            color = COLORS[k % len(COLORS)]
            if len(xy) > 1:
                draw.line(xy, fill=color, width=2)
            for x, y in xy:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
            draw.text((x0 + 10 + 160 * k, y1 + 8), item[0], fill=color)
        draw.text((x1 - 60, y1 + 8), f'{top_step} steps', fill='black')
    save_png(output, np.asarray(image))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('metrics', nargs='+', help='metrics.jsonl files, stage order')
    p.add_argument('--output', required=True)
    args = p.parse_args(argv)
    plot(read_series(args.metrics), Path(args.output))
    return 0


if __name__ == '__main__':
    sys.exit(main())
