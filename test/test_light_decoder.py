"""The distilled light decoder: training script, storage in the checkpoint, use in the pipeline."""
import shutil
import sys

import numpy as np
import pytest
import torch

from metricgold_core.data.procedural import ProceduralScenes
from metricgold_core.light_decoder import LightDepthHead, WEIGHTS_FILE
from metricgold_core.model import CheckpointError, default_model_path, MetricGoldModel
from metricgold_core.pipeline import DepthEstimator

sys.path.insert(0, 'training')


@pytest.fixture(scope='module')
def distilled(tmp_path_factory):
    # distilled from the packaged (trained) model: a random decoder's output is noise
    from distill_light_decoder import main
    source = tmp_path_factory.mktemp('light') / 'source'
    shutil.copytree(default_model_path(), source)
    (source / WEIGHTS_FILE).unlink(missing_ok=True)
    out = source.parent / 'ck'
    assert main(['--checkpoint', str(source), '--output', str(out), '--scenes', '24',
                 '--val-scenes', '4', '--steps', '150', '--size', '72', '96']) == 0
    assert not (source / WEIGHTS_FILE).exists()  # --output leaves the source alone
    return out


def test_distillation_stores_the_head_in_the_checkpoint(distilled):
    assert (distilled / WEIGHTS_FILE).is_file()
    model = MetricGoldModel.load(distilled)
    head = model.light_head
    assert isinstance(head, LightDepthHead)
    assert head.cut_block == 2 and head.conv.in_channels == 32
    assert model.meta['light_decoder']['steps'] == 150
    # a save/load round trip keeps the head's weights
    again_path = distilled.parent / 'again'
    model.save(again_path)
    again = MetricGoldModel.load(again_path).light_head
    for key, value in head.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])


def test_light_decoder_approximates_the_exact_one(distilled):
    model = MetricGoldModel.load(distilled)
    exact = DepthEstimator(model, device='cpu')
    light = DepthEstimator(model, device='cpu', decoder='light')
    errors, spreads = [], []
    for scene in ProceduralScenes(3, 72, 96, seed=123):
        a = exact(scene['rgb'], seed=0, processing_resolution=0).normalized
        b = light(scene['rgb'], seed=0, processing_resolution=0).normalized
        assert b.shape == a.shape and np.isfinite(b).all()
        errors.append(np.abs(a - b).mean())
        spreads.append(np.abs(a - a.mean()).mean())
    # it follows the exact decoder far better than that decoder's own mean value would
    assert np.mean(errors) < 0.5 * np.mean(spreads)


def test_light_decoder_needs_a_head(tiny_model):
    with pytest.raises(ValueError, match='light decoder'):
        DepthEstimator(tiny_model, device='cpu', decoder='light')
    with pytest.raises(ValueError, match='`decoder`'):
        DepthEstimator(tiny_model, device='cpu', decoder='tiny')


def test_damaged_head_file_names_the_file(distilled, tmp_path):
    copy = tmp_path / 'ck'
    shutil.copytree(distilled, copy)
    (copy / WEIGHTS_FILE).write_bytes(b'garbage')
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        MetricGoldModel.load(copy)
