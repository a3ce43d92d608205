"""Shared fixtures: the ../shared/data folder, a tiny untrained checkpoint, a unique ROS domain."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('METRICGOLD_SHARED_DATA', ROOT.parent / 'shared' / 'data'))


@pytest.fixture(scope='session')
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f'test data folder {SHARED_DATA} is missing (set METRICGOLD_SHARED_DATA)')
    return SHARED_DATA


@pytest.fixture(scope='session')
def tiny_model():
    """A deterministic, untrained tiny MetricGoldModel (same architecture as SD, ~5M params)."""
    import torch
    from metricgold_core.model import MetricGoldModel
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return MetricGoldModel.from_preset('tiny', seed=0)


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    """The tiny model saved in the checkpoint format (shared by the whole session: read only)."""
    path = tmp_path_factory.mktemp('ckpt') / 'tiny'
    tiny_model.save(path)
    return path
