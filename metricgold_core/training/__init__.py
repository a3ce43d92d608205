"""Training: recipes (config), data mixture, the four stages, the loop, checkpoints.

Entry point: `metricgold train --config training/configs/X.yaml` (recipes live there);
in Python, `run(load_config([path]))`.

May import: torch, diffusers, accelerate, and of the core model, data, evaluation, metric_depth
(validation runs the real inference path), visualize and io_utils; never commands.
"""
from .config import ConfigError, load_config, stage_configs  # noqa: F401
from .trainer import run, train, TrainingInterrupted  # noqa: F401
