"""Checkpoint format: atomic save, safetensors-only load, clear errors, Marigold directories."""
import json
import shutil

import numpy as np
import pytest
import torch

from metricgold_core.model.codec import LogDepthCodec
from metricgold_core.model.network import CheckpointError, MetricGoldModel, widen_unet_conv_in
from metricgold_core.model.pipeline import DepthEstimator


def _image():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _predict(model, steps=1):
    est = DepthEstimator(model, device='cpu')
    return est(_image(), steps=steps, seed=4, processing_resolution=0).depth


def test_layout_and_metadata(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {'model_index.json', 'unet', 'vae', 'scheduler', 'metricgold.json',
            'empty_text_embedding.safetensors'} <= names
    for sub in ('unet', 'vae'):
        assert (tiny_checkpoint / sub / 'diffusion_pytorch_model.safetensors').exists()
        assert (tiny_checkpoint / sub / 'config.json').exists()
    meta = json.loads((tiny_checkpoint / 'metricgold.json').read_text())
    assert meta['format_version'] == 1
    assert meta['codec'] == {'type': 'log', 'd_min': 0.1, 'd_max': 100.0}
    assert meta['canonical_focal_px'] is None
    assert isinstance(meta['processing_resolution'], int)
    assert not list(tiny_checkpoint.parent.glob('.*tmp*'))  # no temp dirs left behind


def test_round_trip_gives_identical_outputs(tiny_model, tiny_checkpoint):
    loaded = MetricGoldModel.load(tiny_checkpoint)
    assert loaded.codec == tiny_model.codec
    assert loaded.meta['processing_resolution'] == tiny_model.meta['processing_resolution']
    for name in ('unet', 'vae'):
        ours, theirs = getattr(tiny_model, name).state_dict(), getattr(loaded, name).state_dict()
        assert ours.keys() == theirs.keys()
        for key in ours:  # bit-identical weights
            assert torch.equal(ours[key], theirs[key]), key
    np.testing.assert_array_equal(loaded.empty_text_embedding.numpy(),
                                  tiny_model.empty_text_embedding.numpy())
    # outputs agree to float rounding (oneDNN may pick other kernels for other allocations)
    for steps in (1, 2):
        np.testing.assert_allclose(_predict(loaded, steps), _predict(tiny_model, steps),
                                   rtol=2e-5)


def test_codec_range_travels_in_checkpoint(tmp_path):
    model = MetricGoldModel.from_preset('tiny', seed=1, codec=LogDepthCodec(0.5, 20.0))
    model.save(tmp_path / 'ck')
    assert MetricGoldModel.load(tmp_path / 'ck').codec == LogDepthCodec(0.5, 20.0)


def test_diffusers_reads_our_directory(tiny_checkpoint):
    from diffusers import MarigoldDepthPipeline
    pipe = MarigoldDepthPipeline.from_pretrained(str(tiny_checkpoint), text_encoder=None,
                                                 tokenizer=None)
    assert pipe.unet.config.in_channels == 8
    assert pipe.scheduler.config.prediction_type == 'v_prediction'
    assert pipe.scheduler.config.timestep_spacing == 'trailing'
    model = MetricGoldModel.load(tiny_checkpoint)
    pipe.empty_text_embedding = model.empty_text_embedding
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(_image(), num_inference_steps=1, processing_resolution=0, output_type='np',
               generator=torch.Generator('cpu').manual_seed(4)).prediction[0, :, :, 0]
    ours = DepthEstimator(model, device='cpu', dtype='float32')(_image(), seed=4,
                                                                processing_resolution=0)
    np.testing.assert_allclose(ours.normalized, ref, atol=1e-4)


def test_save_replaces_existing_atomically(tmp_path, tiny_model, monkeypatch):
    target = tmp_path / 'ck'
    tiny_model.save(target)
    before = (target / 'unet' / 'diffusion_pytorch_model.safetensors').read_bytes()

    def boom(*args, **kwargs):
        raise OSError('disk full')
    monkeypatch.setattr(tiny_model.scheduler, 'save_pretrained', boom)
    with pytest.raises(OSError, match='disk full'):
        tiny_model.save(target)
    # the old checkpoint is untouched and no temporary directory is left
    assert (target / 'unet' / 'diffusion_pytorch_model.safetensors').read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ['ck']
    MetricGoldModel.load(target)


@pytest.fixture()
def ckpt_copy(tmp_path, tiny_checkpoint):
    path = tmp_path / 'copy'
    shutil.copytree(tiny_checkpoint, path)
    return path


@pytest.mark.parametrize('name', ['pytorch_model.bin', 'model.ckpt', 'weights.pt'])
def test_pickled_weights_are_refused(ckpt_copy, name):
    target = ckpt_copy / 'unet' / name
    torch.save({'x': torch.zeros(1)}, target)
    with pytest.raises(CheckpointError, match='pickled weights are refused') as err:
        MetricGoldModel.load(ckpt_copy)
    assert name in str(err.value)


def test_bin_only_component_is_refused(ckpt_copy):
    (ckpt_copy / 'vae' / 'diffusion_pytorch_model.safetensors').unlink()
    torch.save({}, ckpt_copy / 'vae' / 'diffusion_pytorch_model.bin')
    with pytest.raises(CheckpointError, match='pickled'):
        MetricGoldModel.load(ckpt_copy)


@pytest.mark.parametrize('relpath,damage,message', [
    ('unet/diffusion_pytorch_model.safetensors', b'not a safetensors file',
     'cannot read safetensors'),
    ('vae/config.json', b'{broken', 'not valid JSON'),
    ('metricgold.json', b'[1, 2]', 'expected a JSON object'),
    ('empty_text_embedding.safetensors', b'\x00' * 16, 'empty-text embedding'),
    ('scheduler/scheduler_config.json', None, 'is missing'),
    ('unet/diffusion_pytorch_model.safetensors', None, 'is missing'),
])
def test_corrupt_or_missing_parts_name_the_file(ckpt_copy, relpath, damage, message):
    target = ckpt_copy / relpath
    if damage is None:
        target.unlink()
    else:
        target.write_bytes(damage)
    with pytest.raises(CheckpointError, match=message) as err:
        MetricGoldModel.load(ckpt_copy)
    assert str(target) in str(err.value)


def test_mismatched_weights_and_bad_meta(ckpt_copy):
    meta_path = ckpt_copy / 'metricgold.json'
    meta = json.loads(meta_path.read_text())
    meta['codec'] = {'type': 'log', 'd_min': 5, 'd_max': 1}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='codec'):
        MetricGoldModel.load(ckpt_copy)
    meta['codec'] = {'type': 'log', 'd_min': 0.1, 'd_max': 10}
    meta['format_version'] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match='format_version'):
        MetricGoldModel.load(ckpt_copy)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        MetricGoldModel.load(tmp_path / 'nope')


def _write_tiny_text_encoder(root, hidden):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    vocab = {'<|startoftext|>': 0, '<|endoftext|>': 1, 'a</w>': 2}
    (root / 'vocab.json').write_text(json.dumps(vocab))
    (root / 'merges.txt').write_text('#version: 0.2\n')
    tok = CLIPTokenizer(str(root / 'vocab.json'), str(root / 'merges.txt'), model_max_length=77)
    tok.save_pretrained(root / 'tokenizer')
    torch.manual_seed(0)
    config = CLIPTextConfig(vocab_size=3, hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                            bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPTextModel(config).save_pretrained(root / 'text_encoder', safe_serialization=True)
    (root / 'vocab.json').unlink()
    (root / 'merges.txt').unlink()


def test_marigold_directory_loads_and_caches_embedding(ckpt_copy, tiny_model):
    pytest.importorskip('transformers')
    (ckpt_copy / 'metricgold.json').unlink()
    (ckpt_copy / 'empty_text_embedding.safetensors').unlink()
    _write_tiny_text_encoder(ckpt_copy, tiny_model.unet.config.cross_attention_dim)
    model = MetricGoldModel.load(ckpt_copy)
    assert model.meta['source'] == 'marigold'
    assert model.empty_text_embedding.shape == (1, 2, tiny_model.unet.config.cross_attention_dim)
    cached = ckpt_copy / 'empty_text_embedding.safetensors'
    assert cached.exists()
    # the cache is used next time: the text encoder is no longer needed
    shutil.rmtree(ckpt_copy / 'text_encoder')
    again = MetricGoldModel.load(ckpt_copy)
    torch.testing.assert_close(again.empty_text_embedding, model.empty_text_embedding)
    # and diffusers, running its own text encoder, gets the same normalised prediction
    assert _predict(again).shape == (48, 64)


def test_widened_conv_in_reproduces_the_four_channel_unet():
    from diffusers import UNet2DConditionModel
    from metricgold_core.model.presets import get_preset
    config = get_preset('tiny')['unet']
    config['in_channels'] = 4
    torch.manual_seed(0)
    unet4 = UNet2DConditionModel(**config).eval()
    conv4 = unet4.conv_in
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        expected = conv4(x)
        unet8 = widen_unet_conv_in(unet4, 8)
        got = unet8.conv_in(torch.cat([x, x], dim=1))
    assert unet8.config.in_channels == 8
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(unet8.conv_in.weight[:, :4], unet8.conv_in.weight[:, 4:])


def test_from_stable_diffusion_local_directory(tmp_path, tiny_model):
    pytest.importorskip('transformers')
    from diffusers import UNet2DConditionModel
    from metricgold_core.model.presets import get_preset
    sd = tmp_path / 'sd'
    config = get_preset('tiny')['unet']
    config['in_channels'] = 4
    UNet2DConditionModel(**config).save_pretrained(sd / 'unet', safe_serialization=True)
    tiny_model.vae.save_pretrained(sd / 'vae', safe_serialization=True)
    _write_tiny_text_encoder(sd, config['cross_attention_dim'])
    model = MetricGoldModel.from_stable_diffusion(str(sd), processing_resolution=64)
    assert model.unet.config.in_channels == 8
    assert model.meta['initialised_from'] == str(sd)
    assert _predict(model).shape == (48, 64)
