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


@pytest.fixture(scope='session')
def checkpoint_with_meta(tmp_path_factory, tiny_checkpoint):
    """make(name, **entries): a copy of the tiny checkpoint whose metricgold.json has these
    entries replaced (e.g. depth_type='affine_invariant', canonical_focal_px=100.0)."""
    import json
    import shutil

    def make(name: str, **entries) -> Path:
        path = tmp_path_factory.mktemp(name) / name
        shutil.copytree(tiny_checkpoint, path)
        meta = json.loads((path / 'metricgold.json').read_text())
        meta.update(entries)
        (path / 'metricgold.json').write_text(json.dumps(meta))
        return path
    return make
