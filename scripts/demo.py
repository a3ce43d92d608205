"""Main job demo (until the trained default model lands): depth for a generated image.

Writes an untrained tiny checkpoint, a generated test image, and runs `metricgold infer` on it.
"""
from pathlib import Path
import sys

import numpy as np

from metricgold_core.cli import main as cli
from metricgold_core.io_utils import save_png

OUT = Path('demo_output')


def main() -> int:
    OUT.mkdir(exist_ok=True)
    h, w = 240, 320
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], axis=-1).astype(np.uint8)
    save_png(OUT / 'generated.png', image)
    print('NOTE: this demo uses an UNTRAINED tiny checkpoint: the depth it prints is '
          'meaningless; it shows the pipeline running end to end.')
    status = cli(['make-test-checkpoint', str(OUT / 'untrained_tiny')])
    status = status or cli(['infer', '--checkpoint', str(OUT / 'untrained_tiny'), '--output',
                            str(OUT), str(OUT / 'generated.png')])
    print(f'outputs in {OUT.resolve()}')
    return status


if __name__ == '__main__':
    sys.exit(main())
