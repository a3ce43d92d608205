"""Train MetricGold from a recipe: `python training/train.py --config training/configs/X.yaml`.

Same as `metricgold train`; works under `accelerate launch training/train.py ...` for DDP.
"""
from pathlib import Path
import sys

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from metricgold_core.commands.train import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
