"""The multi-process path for real: `accelerate launch` starts two CPU processes (gloo backend)
that train the `depth` stage of the tiny model on 32x32 fake scenes.

Both ranks draw different micro-batches of the one global stream, DDP averages their gradients,
both end with the same weights, and these equal one process that accumulates the same two
micro-batches per step. A two-process checkpoint resumes exactly, with two processes and with
one. All of it bit for bit: with two processes DDP's mean (a + b) / 2 and the one process's
accumulated a / 2 + b / 2 round alike, halving being exact (other process counts would agree
to float rounding only).
"""
import json
import os
from pathlib import Path
import socket
import subprocess
import sys

import pytest
import torch

from ddp_worker import install_recorder
from metricgold_core.training import trainer
from metricgold_core.training.config import ConfigError, load_config
from metricgold_core.training.trainer import run
from training_fakes import recipe

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('fakes_importable')]
pytest.importorskip('accelerate')

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
# 4 steps of 2 micro-batches of 2 samples; checkpoints at steps 2 and 4, both kept.
COMMON = dict(stage='depth', max_steps=4, data__micro_batch=2, data__val_count=0,
              log__every=1, checkpoint__every=2, checkpoint__keep=4)


def _recipe(tmp_path, name, **changes) -> Path:
    folder = tmp_path / f'cfg_{name}'
    folder.mkdir()
    return recipe(folder, output_dir=str(tmp_path / name), **COMMON, **changes)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _launch_two(tmp_path, *commands):
    """One `accelerate launch` (its own launcher, torchrun underneath) of two processes that
    run the `metricgold train` commands in turn (ddp_worker.py)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]),
               OMP_NUM_THREADS='1', HF_HOME=str(tmp_path / 'hf'))  # no user accelerate config
    cmd = [sys.executable, '-m', 'accelerate.commands.launch', '--multi_gpu',
           '--num_processes', '2', '--num_machines', '1', '--mixed_precision', 'no',
           '--dynamo_backend', 'no', '--main_process_port', str(_free_port()),
           str(HERE / 'ddp_worker.py'), str(tmp_path / 'record')]
    for i, command in enumerate(commands):
        cmd += (['--then'] if i else []) + ['train', *command]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _records(tmp_path, name, ranks=(0, 1)):
    return [torch.load(tmp_path / 'record' / f'{name}_rank{r}.pt', weights_only=True)
            for r in ranks]


def _train_metrics(out: Path) -> list[dict]:
    lines = [json.loads(line) for line in open(out / 'metrics.jsonl', encoding='utf-8')]
    return [m for m in lines if 'train/loss' in m]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_split_the_batch_average_gradients_and_resume(tmp_path, monkeypatch):
    # Two processes, grad_accum 1 (effective batch 2 x 1 x 2 = 4), 4 steps; then, in the same
    # processes, a new run resumed from the step-2 checkpoint of the first.
    step_2 = tmp_path / 'two' / 'checkpoints' / 'step_0000002'
    two = _launch_two(tmp_path, ['--config', str(_recipe(tmp_path, 'two'))],
                      ['--config', str(_recipe(tmp_path, 'two_resumed')), '--resume', str(step_2)])
    assert 'batch 2 x accum 1 x 2 process(es) = effective batch 4' in two.stderr
    rank0, rank1 = _records(tmp_path, 'two')
    # Different micro-batches: rank r takes global micro-batches r, r + 2, ... of one stream.
    assert rank0[4]['indices'] == [0, 1, 4, 5, 8, 9, 12, 13]
    assert rank1[4]['indices'] == [2, 3, 6, 7, 10, 11, 14, 15]
    # Identical weights on both ranks at every checkpoint, and they did train.
    assert _same(rank0[2]['weights'], rank1[2]['weights'])
    assert _same(rank0[4]['weights'], rank1[4]['weights'])
    assert not _same(rank0[2]['weights'], rank0[4]['weights'])

    # The resumed run drew the rest of each rank's stream and ended where the first run did.
    assert 'resumed test from' in two.stderr and str(step_2) in two.stderr
    for before, after in zip((rank0, rank1), _records(tmp_path, 'two_resumed')):
        assert after[4]['indices'] == before[4]['indices'][len(before[2]['indices']):]
        assert _same(after[4]['weights'], before[4]['weights'])

    # One process, grad_accum 2: the same global batch of 4, as two micro-batches.
    install_recorder(tmp_path / 'record', monkeypatch.setattr)
    run(load_config([_recipe(tmp_path, 'one', optim__grad_accum=2)]))
    (one,) = _records(tmp_path, 'one', ranks=(0,))
    assert one[4]['indices'] == list(range(16))
    assert _same(one[2]['weights'], rank0[2]['weights'])
    assert _same(one[4]['weights'], rank0[4]['weights'])
    # Averaged, not summed: the gradient norm before clipping is the one process's, whose
    # accumulation divides by grad_accum; the logged loss is the mean over both ranks.
    m_two, m_one = _train_metrics(tmp_path / 'two'), _train_metrics(tmp_path / 'one')
    assert [m['step'] for m in m_two] == [m['step'] for m in m_one] == [1, 2, 3, 4]
    for a, b in zip(m_two, m_one):
        assert a['train/effective_batch'] == b['train/effective_batch'] == 4
        assert a['train/grad_norm'] == pytest.approx(b['train/grad_norm'], rel=1e-6)
        assert a['train/loss'] == pytest.approx(b['train/loss'], rel=1e-6)

    # The two-process checkpoint resumed by one process: the data position counts global
    # micro-batches, so it goes on with micro-batches 4..7 and ends where both others did.
    run(load_config([_recipe(tmp_path, 'one_resumed', optim__grad_accum=2)]),
        resume=str(step_2))
    (one_resumed,) = _records(tmp_path, 'one_resumed', ranks=(0,))
    assert one_resumed[4]['indices'] == list(range(8, 16))
    assert _same(one_resumed[4]['weights'], rank0[4]['weights'])


class _OtherProcessAhead:
    """A one-process accelerator posing as two, the other having resumed at step 2."""

    num_processes = 2

    def __init__(self, real):
        self._real = real

    def gather(self, tensor):
        return torch.cat([tensor, torch.tensor([2])])

    def __getattr__(self, name):
        return getattr(self._real, name)


def test_processes_that_resume_at_different_steps_stop_with_an_error(tmp_path, monkeypatch):
    # e.g. several machines whose `output_dir` is not shared storage: one finds no checkpoint
    real = trainer.make_accelerator
    monkeypatch.setattr(trainer, 'make_accelerator', lambda cfg: _OtherProcessAhead(real(cfg)))
    with pytest.raises(ConfigError, match=r'resumed at different steps \(\[0, 2\]'):
        run(load_config([_recipe(tmp_path, 'split')]))
    assert not (tmp_path / 'split' / 'checkpoints').exists()
