"""Tiny training runs end to end: loss goes down, kill -9 + resume is exact, export loads.

The scenes come from `training_fakes.FakeScenes` (the ProceduralScenes interface, cheaper and
easier to learn), 32x32 images and the tiny preset, so each run takes seconds on a CPU.
"""
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from safetensors.torch import load_file
import torch

from metricgold_core.model.network import MetricGoldModel
from metricgold_core.model.pipeline import DepthEstimator
from metricgold_core.training.config import load_config
from metricgold_core.training.trainer import run, TrainingInterrupted
from training_fakes import recipe

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('fakes_importable')]


def test_tiny_run_lowers_the_loss_and_exports_a_working_checkpoint(tmp_path):
    path = recipe(tmp_path, output_dir=str(tmp_path / 'out'), stage='autoencoder',
                  max_steps=24, log__every=4, val__every=24)
    cfg = load_config([path])
    (export,) = run(cfg)
    history = [json.loads(line) for line in open(tmp_path / 'out' / 'metrics.jsonl')]
    losses = [h['train/loss'] for h in history if 'train/loss' in h]
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[0], losses
    assert any('val/abs_rel' in h for h in history)

    model = MetricGoldModel.load(export)
    assert model.meta['processing_resolution'] == 32
    assert model.meta['training'][-1] == {'stage': 'autoencoder', 'name': 'test', 'steps': 24,
                                          'resolution_hw': [32, 32]}
    # The latent scale was fitted to the data, not left at SD's 0.18215.
    assert model.vae.config.scaling_factor != pytest.approx(0.18215)
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    depth = DepthEstimator(model, device='cpu', dtype='float32')(rgb, steps=1, seed=0).depth
    assert depth.shape == (32, 32)
    assert np.isfinite(depth).all() and (depth >= 0.1 - 1e-4).all() and (depth <= 100.01).all()


def test_max_seconds_ends_the_stage_early_and_still_exports(tmp_path):
    path = recipe(tmp_path, output_dir=str(tmp_path / 'budget'), stage='single_step',
                  max_steps=10 ** 6, max_seconds=6.0)
    cfg = load_config([path])
    start = time.perf_counter()
    (export,) = run(cfg)
    took = time.perf_counter() - start
    steps = MetricGoldModel.load(export).meta['training'][-1]['steps']
    # Whatever the machine's speed: the stage stops near its budget, not at max_steps.
    assert 1 <= steps < 10 ** 6
    assert took < 60, took


def test_every_stage_runs_in_sequence_from_the_previous_export(tmp_path):
    names = ('depth_vae', 'depth', 'single_step')
    path = recipe(tmp_path, output_dir=str(tmp_path / 'seq'), max_steps=2,
                  stages=[{'name': n, 'stage': n} for n in names])
    cfg = load_config([path])
    exports = run(cfg)
    assert [p.parent.name for p in exports] == ['0_depth_vae', '1_depth', '2_single_step']
    first, last = load_file(exports[0] / 'vae' / 'diffusion_pytorch_model.safetensors'), \
        load_file(exports[-1] / 'vae' / 'diffusion_pytorch_model.safetensors')
    # depth_vae trained the decoder only; later stages kept that VAE unchanged.
    assert all(torch.equal(first[k], last[k]) for k in first)
    fresh = MetricGoldModel.from_preset('tiny', seed=1).vae.state_dict()
    assert torch.equal(first['encoder.conv_in.weight'], fresh['encoder.conv_in.weight'])
    assert not torch.equal(first['decoder.conv_in.weight'], fresh['decoder.conv_in.weight'])
    stages = [s['stage'] for s in MetricGoldModel.load(exports[-1]).meta['training']]
    assert stages == ['depth_vae', 'depth', 'single_step']
    # Resuming a finished recipe does no work and returns the same exports.
    assert run(cfg) == exports


def test_photometric_consistency_run_keeps_its_teacher_out_of_checkpoints(tmp_path):
    path = recipe(tmp_path, output_dir=str(tmp_path / 'teacher'), stage='single_step',
                  max_steps=4, log__every=2, checkpoint__every=2, data__photometric=1.0,
                  loss__teacher_weight=1.0)
    (export,) = run(load_config([path]))
    history = [json.loads(line) for line in open(tmp_path / 'teacher' / 'metrics.jsonl')]
    assert [h['train/teacher_loss'] > 0 for h in history if 'train/loss' in h] == [True] * 2
    state = torch.load(next((tmp_path / 'teacher' / 'checkpoints').glob('step_*')) / 'state.pt',
                       weights_only=False)
    assert state['trainable'] and all(k.startswith('unet.') for k in state['trainable'])
    # the export is an ordinary checkpoint: one UNet, which moved away from the start
    model = MetricGoldModel.load(export)
    start = MetricGoldModel.from_preset('tiny', seed=1)
    assert not torch.equal(model.unet.conv_in.weight, start.unet.conv_in.weight)


def _train_cmd(path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]))
    cmd = [sys.executable, '-m', 'metricgold_core.cli', 'train', '--config', str(path)]
    return cmd, env


def test_kill_9_then_resume_auto_ends_bit_identical(tmp_path):
    """A run killed with SIGKILL and resumed equals an uninterrupted run, weights and EMA."""
    common = dict(stage='depth', max_steps=8, checkpoint__every=2, data__num_workers=1)
    straight = recipe(tmp_path, output_dir=str(tmp_path / 'straight'), **common)
    cmd, env = _train_cmd(straight)
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)

    killed_dir = tmp_path / 'killed'
    killed = recipe(tmp_path, output_dir=str(killed_dir), **common)
    cmd, env = _train_cmd(killed)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target = killed_dir / 'checkpoints' / 'step_0000004' / 'checkpoint.json'
    deadline = time.monotonic() + 240
    while not target.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed_dir / 'model').exists(), 'the run finished before it could be killed'

    resumed = subprocess.run(cmd + ['--resume', 'auto'], env=env, capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert 'resumed test from' in resumed.stderr

    for name in ('unet/diffusion_pytorch_model.safetensors',
                 'vae/diffusion_pytorch_model.safetensors'):
        a = load_file(tmp_path / 'straight' / 'model' / name)
        b = load_file(killed_dir / 'model' / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    final_a = torch.load(tmp_path / 'straight' / 'checkpoints' / 'step_0000008' / 'state.pt',
                         weights_only=True)
    final_b = torch.load(killed_dir / 'checkpoints' / 'step_0000008' / 'state.pt',
                         weights_only=True)
    for key in final_a['trainable']:
        assert torch.equal(final_a['trainable'][key], final_b['trainable'][key]), key


def test_sigterm_saves_a_checkpoint_and_stops(tmp_path):
    """SIGTERM mid-run: the step finishes, a checkpoint is written, TrainingInterrupted."""
    out = tmp_path / 'term'
    cfg = load_config([recipe(tmp_path, output_dir=str(out), stage='depth', max_steps=10 ** 5,
                              log__every=1)])
    metrics = out / 'metrics.jsonl'

    def send_sigterm():  # from another thread; Python runs the handler in the main thread
        while not (metrics.exists() and metrics.stat().st_size > 0):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=send_sigterm, daemon=True).start()
    with pytest.raises(TrainingInterrupted) as info:
        run(cfg)
    assert info.value.signum == signal.SIGTERM
    (saved,) = list((out / 'checkpoints').iterdir())
    assert info.value.checkpoint == saved
    assert int(saved.name.split('_')[1]) >= 1
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler restored


def test_config_errors_stop_before_training(tmp_path, capsys):
    from metricgold_core.cli import main
    path = recipe(tmp_path, output_dir=str(tmp_path / 'bad'))
    assert main(['train', '--config', str(path), 'optim.lr=-1', 'data.hight=3']) == 2
    assert 'unknown key `data.hight` (did you mean `height`?)' in capsys.readouterr().err
    assert main(['train', '--config', str(path), 'optim.lr=-1']) == 2
    assert '`optim.lr` must be > 0' in capsys.readouterr().err
    assert not (tmp_path / 'bad').exists()
