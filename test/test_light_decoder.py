"""The distilled light decoder: training script, storage in the checkpoint, use in the pipeline."""
import shutil

import numpy as np
import pytest
import torch

from metricgold_core.cli import main
from metricgold_core.data.procedural import ProceduralScenes
from metricgold_core.model.light_decoder import LightDecoderHead, WEIGHTS_FILE
from metricgold_core.model.network import CheckpointError, default_model_path, MetricGoldModel
from metricgold_core.model.pipeline import DepthEstimator


@pytest.fixture(scope='module')
def distilled(tmp_path_factory):
    # distilled from the packaged (trained) model: a random decoder's output is noise
    source = tmp_path_factory.mktemp('light') / 'source'
    shutil.copytree(default_model_path(), source)
    (source / WEIGHTS_FILE).unlink(missing_ok=True)
    out = source.parent / 'ck'
    assert main(['distill', '--checkpoint', str(source), '--output', str(out), '--scenes', '24',
                 '--val-scenes', '4', '--steps', '150', '--sizes', '72', '96', '48', '64']) == 0
    assert not (source / WEIGHTS_FILE).exists()  # --output leaves the source alone
    return out


def test_distillation_stores_the_head_in_the_checkpoint(distilled):
    assert (distilled / WEIGHTS_FILE).is_file()
    model = MetricGoldModel.load(distilled)
    head = model.light_decoder
    assert isinstance(head, LightDecoderHead)
    assert head.config() == {'in_channels': 64, 'channels': 32, 'factor': 8}
    record = model.meta['light_decoder']
    assert record['steps'] == 150
    assert [row['size_hw'] for row in record['held_out']] == [[72, 96], [48, 64]]
    assert all(row['abs_rel_light'] > 0 and row['abs_rel_exact'] > 0
               for row in record['held_out'])
    # a save/load round trip keeps the head's weights
    again_path = distilled.parent / 'again'
    model.save(again_path)
    again = MetricGoldModel.load(again_path).light_decoder
    for key, value in head.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])


def test_light_decoder_approximates_the_exact_one(distilled):
    model = MetricGoldModel.load(distilled)
    exact = DepthEstimator(model, device='cpu')
    light = DepthEstimator(model, device='cpu', mode='fast')
    errors, spreads = [], []
    for scene in ProceduralScenes(3, 72, 96, seed=123):
        a = exact(scene['rgb'], seed=0, processing_resolution=0).normalized
        b = light(scene['rgb'], seed=0, processing_resolution=0).normalized
        assert b.shape == a.shape and np.isfinite(b).all()
        errors.append(np.abs(a - b).mean())
        spreads.append(np.abs(a - a.mean()).mean())
    # it follows the exact decoder far better than that decoder's own mean value would
    assert np.mean(errors) < 0.5 * np.mean(spreads)


def test_head_maps_latent_pixels_to_blocks():
    head = LightDecoderHead(in_channels=16, channels=8, factor=8)
    features = torch.randn(2, 16, 5, 7)
    out = head(features)
    assert out.shape == (2, 1, 40, 56)
    # each 8x8 output block depends on its latent pixel's 2-conv (5x5) neighbourhood only
    changed = features.clone()
    changed[:, :, 0, 0] += 1.0
    diff = (head(changed) - out).abs()[0, 0] > 0
    rows, cols = torch.nonzero(diff, as_tuple=True)
    assert diff.any() and rows.max() < 8 * 3 and cols.max() < 8 * 3


def test_fast_mode_needs_a_head(tiny_model):
    with pytest.raises(ValueError, match='light decoder'):
        DepthEstimator(tiny_model, device='cpu', mode='fast')
    with pytest.raises(ValueError, match='`mode`'):
        DepthEstimator(tiny_model, device='cpu', mode='light')


def test_damaged_head_file_names_the_file(distilled, tmp_path):
    copy = tmp_path / 'ck'
    shutil.copytree(distilled, copy)
    (copy / WEIGHTS_FILE).write_bytes(b'garbage')
    with pytest.raises(CheckpointError, match=WEIGHTS_FILE):
        MetricGoldModel.load(copy)
