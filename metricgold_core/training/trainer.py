"""The training loop: data, forward, loss, backward, step, log, save, for every stage.

    train(cfg, resume='auto')   one stage (cfg['stage']) -> path of the exported checkpoint
    run(cfg, resume='auto')     every entry of cfg['stages'] in order (or cfg itself)

`train` reads top to bottom: `build_run` makes a `Run` (the model, stage, optimizer, EMA
and counters of one stage), `restore` loads the latest checkpoint into it,
`open_data_and_logs` starts the data where the counters say, and one flat loop calls
`train_step`, `log`, `validate` and `save` as they fall due; `export` writes the EMA weights
as an inference checkpoint at the end.

Schedules and budgets: schedule.py; logs, progress and signals: monitor.py.

The trainer state is one plain dict (see `trainer_state`), saved and restored whole, so a run
killed at any moment and resumed with `resume='auto'` ends with the same weights, bit for bit on
CPU, as one that was never interrupted. `accelerate` provides DDP and mixed precision; run under
`accelerate launch` for several processes (GPUs, machines, or CPU processes with gloo), or
plainly for CPU / one GPU.

Several processes split one global stream of micro-batches: micro-batch g of the run is the data
of `ResumableBatchSampler` index g and the noise of `diffusion.noise_generator(seed, g)`; at
each step rank r takes g = consumed + i * world + r for its accumulation slot i. So N processes
with `grad_accum` A train on exactly the micro-batches, and the noise, of one process with
`grad_accum` N * A, and DDP's gradient mean equals that process's accumulated mean: the
weights agree within float rounding, and a checkpoint resumes with any number of processes.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
import json
import logging
from pathlib import Path
import signal
import time
from typing import Any

import torch

from .checkpoint import EMA, load_latest, rng_state, save_checkpoint, set_rng_state
from .config import ConfigError, stage_configs, to_yaml
from .data import build_loader, build_train_dataset, to_training_sample, validation_samples
from .diffusion import noise_generator
from .monitor import format_values, open_progress, open_tensorboard, record, SignalFlag
from .schedule import lr_at, shortened_schedule, StepBudget
from .stages import build_stage
from .validation import eval_copy, EXPORTED_MODEL_KEYS, run_validation
from ..io_utils import save_text
from ..model.codec import LogDepthCodec
from ..model.network import MetricGoldModel

LOG = logging.getLogger(__name__)
DONE_FILE = 'DONE.json'


class TrainingInterrupted(RuntimeError):
    """SIGTERM/SIGINT arrived; a checkpoint was written. `signum` says which."""

    def __init__(self, signum: int, checkpoint: Path):
        super().__init__(f'stopped by signal {signum}; resume from {checkpoint}')
        self.signum, self.checkpoint = signum, checkpoint


def run(cfg: dict, resume: str = 'auto', only: str | None = None) -> list[Path]:
    """Train each stage of the recipe in order; a finished stage is skipped when resuming."""
    exported, previous = [], None
    for stage_cfg in stage_configs(cfg):
        if only is not None and stage_cfg['name'] != only and len(cfg['stages']) > 0:
            previous = Path(stage_cfg['output_dir']) / 'model'
            continue
        previous = train(stage_cfg, resume=resume, previous=previous)
        exported.append(previous)
    if only is not None and not exported:
        raise ConfigError(f'`--only {only}` matches no stage name.')
    return exported


def build_model(cfg: dict, previous: Path | None) -> MetricGoldModel:
    """The model a stage starts from: a preset, Stable Diffusion, or a checkpoint."""
    mcfg = cfg['model']
    codec = LogDepthCodec(mcfg['d_min'], mcfg['d_max'])
    kind, _, where = mcfg['init'].partition(':')
    if mcfg['init'] == 'previous':
        if previous is None:
            raise ConfigError('`model.init` is "previous" but no stage ran before this one.')
        kind, where = 'checkpoint', str(previous)
    if kind == 'preset':
        return MetricGoldModel.from_preset(where, seed=cfg['seed'], codec=codec)
    if kind == 'stable_diffusion':
        return MetricGoldModel.from_stable_diffusion(where, codec=codec)
    model = MetricGoldModel.load(where)
    if model.codec != codec:
        raise ConfigError(f'`model.d_min`/`d_max` ({codec}) differ from the codec of the '
                          f'checkpoint {where} ({model.codec}); a stage cannot change the codec.')
    return model


def make_accelerator(cfg: dict):
    try:
        from accelerate import Accelerator
    except ImportError as exc:
        raise RuntimeError('training needs `accelerate` (pip install accelerate, or the '
                           '`train` extra: pip install -e .[train]).') from exc
    cuda = torch.cuda.is_available() and cfg['device'] != 'cpu'
    if cfg['device'] == 'cuda' and not torch.cuda.is_available():
        raise ConfigError('`device` is cuda but CUDA is not available on this machine.')
    precision = cfg['mixed_precision']
    if precision == 'auto':
        precision = ('bf16' if torch.cuda.is_bf16_supported() else 'fp16') if cuda else 'no'
    return Accelerator(cpu=not cuda, mixed_precision=precision)


@dataclass
class Run:
    """Everything one stage's training holds; `trainer_state` is the part a checkpoint keeps."""

    cfg: dict
    accelerator: Any
    model: MetricGoldModel
    stage: torch.nn.Module           # wrapped by accelerate once `restore` has run
    named: list                      # [(name, parameter)] of the trainable parameters
    optimizer: Any
    ema: EMA | None
    # ---- counters, saved in every checkpoint
    step: int = 0
    micro_batches: int = 0           # global: consumed by all processes together
    planned_steps: int | None = None  # the last step `max_seconds` chose (None: max_steps)
    history: list = field(default_factory=list)    # [step, mean loss] at each log line
    # ---- data and monitoring, from `open_data_and_logs`
    loader: Any = None
    val_samples: list = field(default_factory=list)
    writer: Any = None
    metrics_log: Any = None
    progress: Any = None
    # ---- the log window: sums since the last log line
    loss_sum: Any = 0.0
    logs_sum: dict = field(default_factory=dict)
    n_logged: int = 0
    t_last: float = 0.0

    @property
    def out(self) -> Path:
        return Path(self.cfg['output_dir'])

    @property
    def export_dir(self) -> Path:
        return self.out / 'model'

    @property
    def params(self) -> list:
        return [p for _, p in self.named]

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def effective_batch(self) -> int:
        return self.cfg['data']['micro_batch'] * self.cfg['optim']['grad_accum'] * self.world


def train(cfg: dict, resume: str = 'auto', previous: Path | None = None) -> Path:
    """Train one stage; returns the exported inference checkpoint (EMA weights)."""
    out = Path(cfg['output_dir'])
    if resume != 'none' and (out / DONE_FILE).is_file() and (out / 'model' / 'unet').is_dir():
        LOG.info('stage %s already finished: %s', cfg['name'], out / 'model')
        return out / 'model'
    run = build_run(cfg, previous)
    restore(run, resume)
    open_data_and_logs(run)
    if run.main and cfg['val']['at_start'] and run.step == 0 and run.val_samples:
        validate(run, 0)

    max_steps = run.planned_steps or cfg['max_steps']
    optim = shortened_schedule(cfg, max_steps)
    budget = (StepBudget(cfg['max_seconds'], run.step)
              if cfg['max_seconds'] > 0 and run.planned_steps is None else None)
    run.stage.train()
    run.t_last = time.perf_counter()
    with SignalFlag() as stop:
        while run.step < max_steps:
            lr = lr_at(run.step, optim)
            for group in run.optimizer.param_groups:
                group['lr'] = lr
            grad_norm = train_step(run)
            run.step = step = run.step + 1
            planned = budget.plan(step, max_steps) if budget is not None else None
            if planned is not None:
                max_steps = run.planned_steps = agree_on_last_step(run, planned)
                optim, budget = shortened_schedule(cfg, max_steps), None
                if run.main:
                    LOG.info('max_seconds %g: this stage ends at step %d (max_steps %d)',
                             cfg['max_seconds'], max_steps, cfg['max_steps'])
            if step % cfg['log']['every'] == 0 or step == max_steps:
                log(run, lr, grad_norm)  # the only place that waits for the device
            if run.progress is not None:
                run.progress.update(1)
            every = cfg['val']['every']
            if run.main and run.val_samples and ((every and step % every == 0)
                                                 or step == max_steps):
                validate(run, step)
            stopping = stop.signum is not None
            if run.world > 1:  # every rank must stop at the same step
                flag = torch.tensor(float(stopping), device=run.accelerator.device)
                stopping = float(run.accelerator.reduce(flag, 'max')) > 0
            every = cfg['checkpoint']['every']
            if stopping or (every and step % every == 0) or step == max_steps:
                path = save(run)
                if stopping:
                    if run.progress is not None:
                        run.progress.close()
                    raise TrainingInterrupted(stop.signum or signal.SIGTERM, path)
    if run.progress is not None:
        run.progress.close()

    run.accelerator.wait_for_everyone()
    if run.main:
        export(run)
        run.metrics_log.close()
        if run.writer is not None:
            run.writer.close()
    run.accelerator.wait_for_everyone()
    return run.export_dir


def agree_on_last_step(run: Run, planned: int) -> int:
    """The smallest of the processes' planned last steps (every rank must stop together)."""
    if run.world == 1:
        return planned
    steps = run.accelerator.gather(torch.tensor([planned], device=run.accelerator.device))
    return int(steps.min())


def build_run(cfg: dict, previous: Path | None) -> Run:
    """The accelerator, model, stage, optimizer and EMA of a fresh stage."""
    if cfg['num_threads'] > 0:
        torch.set_num_threads(cfg['num_threads'])
    accelerator = make_accelerator(cfg)
    if accelerator.device.type == 'cpu':
        # Tiny weights and gradients reach denormal floats, which are ~100x slower on CPU.
        torch.set_flush_denormal(True)
    torch.manual_seed(cfg['seed'])
    model = build_model(cfg, previous)
    stage = build_stage(model, cfg)
    named = [(n, p) for n, p in stage.named_parameters() if p.requires_grad]
    optim = cfg['optim']
    optimizer = torch.optim.AdamW([p for _, p in named], lr=optim['lr'],
                                  betas=tuple(optim['betas']),
                                  weight_decay=optim['weight_decay'])
    ema = EMA(named, optim['ema_decay']) if optim['ema_decay'] > 0 else None
    return Run(cfg, accelerator, model, stage, named, optimizer, ema)


def restore(run: Run, resume: str) -> None:
    """Load the latest checkpoint into `run`, then hand stage and optimizer to accelerate.

    `resume`: 'auto' (this stage's own checkpoints, if any), 'none' (start fresh), a folder of
    checkpoints (its newest complete one) or one checkpoint folder `.../step_NNNNNNN`.
    """
    scaler_state = None
    if resume != 'none':
        folder = run.out / 'checkpoints' if resume == 'auto' else Path(resume)
        loaded = load_latest(folder)
        if loaded is not None:
            saved, path = loaded
            with torch.no_grad():
                for name, p in run.named:
                    p.copy_(saved['trainable'][name])
            run.optimizer.load_state_dict(saved['optimizer'])
            if run.ema is not None:
                run.ema.load_state_dict(saved['ema'])
            set_rng_state(saved['rng'])
            run.step, run.micro_batches = saved['step'], saved['micro_batches']
            run.planned_steps = saved.get('planned_steps')
            run.history = saved['history']
            if run.main:
                LOG.info('resumed %s from %s (step %d)', run.cfg['name'], path, run.step)
            scaler_state = saved.get('scaler')
        elif resume != 'auto':
            raise ConfigError(f'`--resume {resume}`: no complete checkpoint there.')
    if run.world > 1:
        device = run.accelerator.device
        steps = run.accelerator.gather(torch.tensor([run.step], device=device)).tolist()
        if len(set(steps)) > 1:
            raise ConfigError(f'the processes resumed at different steps ({steps}, one per '
                              'process): on several machines `output_dir` must be on storage '
                              'they all see.')
    run.stage, run.optimizer = run.accelerator.prepare(run.stage, run.optimizer)
    if run.ema is not None:
        run.ema.to(run.accelerator.device)
    if scaler_state is not None and run.accelerator.scaler is not None:
        run.accelerator.scaler.load_state_dict(scaler_state)


def open_data_and_logs(run: Run) -> None:
    """The loader (from `run.micro_batches` on), validation samples, output folder and logs."""
    cfg, main, out = run.cfg, run.main, run.out
    dataset = build_train_dataset(cfg)
    run.loader = iter(build_loader(dataset, cfg, run.micro_batches, run.rank, run.world))
    run.val_samples = validation_samples(cfg) if main and cfg['data']['val_count'] > 0 else []
    run.writer = open_tensorboard(cfg, out) if main else None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        save_text(out / 'config.yaml', to_yaml(cfg))
        LOG.info('stage %s: %s trainable parameters, batch %d x accum %d x %d process(es) = '
                 'effective batch %d', cfg['stage'], f'{sum(p.numel() for p in run.params):,}',
                 cfg['data']['micro_batch'], cfg['optim']['grad_accum'], run.world,
                 run.effective_batch)
        run.metrics_log = open(out / 'metrics.jsonl', 'a', encoding='utf-8')
    run.progress = open_progress(cfg, run.step, main)


def train_step(run: Run):
    """Forward/backward over `grad_accum` micro-batches, clip, step, EMA; no device sync.

    Adds the loss and logs to the run's log window and counts the micro-batches; returns the
    gradient norm before clipping (None when `max_grad_norm` is 0).
    """
    optim, accelerator = run.cfg['optim'], run.accelerator
    accum = optim['grad_accum']
    for i in range(accum):
        batch = _to_device(next(run.loader), accelerator.device)
        generator = noise_generator(run.cfg['seed'], run.micro_batches + i * run.world + run.rank)
        sync = contextlib.nullcontext() if i == accum - 1 else accelerator.no_sync(run.stage)
        with sync:
            with accelerator.autocast():
                loss, logs = run.stage(batch, generator, run.step / run.cfg['max_steps'])
            accelerator.backward(loss / accum)
        run.loss_sum = run.loss_sum + loss.detach().float() / accum
        for k, v in logs.items():
            run.logs_sum[k] = run.logs_sum.get(k, 0.0) + v.float() / accum
    grad_norm = None
    if optim['max_grad_norm'] > 0:
        grad_norm = accelerator.clip_grad_norm_(run.params, optim['max_grad_norm'])
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    if run.ema is not None:
        run.ema.update(run.named, run.step)
    run.micro_batches += accum * run.world
    run.n_logged += 1
    return grad_norm


def log(run: Run, lr: float, grad_norm) -> None:
    """Means over the log window to metrics.jsonl, TensorBoard and the progress bar."""
    now, n = time.perf_counter(), run.n_logged
    mean_loss = float(run.accelerator.reduce(run.loss_sum, 'mean')) / n
    logs = run.accelerator.reduce(run.logs_sum, 'mean') if run.logs_sum else {}
    scalars = {'train/loss': mean_loss, 'train/lr': lr,
               'train/s_per_step': (now - run.t_last) / n,
               'train/effective_batch': run.effective_batch}
    scalars.update({f'train/{k}': float(v) / n for k, v in logs.items()})
    if grad_norm is not None:
        scalars['train/grad_norm'] = float(grad_norm)
    run.history.append([run.step, mean_loss])
    record(run.metrics_log, run.writer, run.step, scalars)
    if run.progress is not None:
        run.progress.set_postfix(loss=f'{mean_loss:.4f}', lr=f'{lr:.2e}')
    run.t_last, run.loss_sum, run.logs_sum, run.n_logged = now, 0.0, {}, 0


def validate(run: Run, step: int) -> None:
    """Validation metrics (and a prediction panel) of the EMA weights, on the main process."""
    cfg = run.cfg
    weights = run.ema.shadow if run.ema is not None else {n: p.detach() for n, p in run.named}
    model = eval_copy(run.model, weights, cfg['model'])
    values, panel = run_validation(model, cfg['stage'], run.val_samples, run.accelerator.device,
                                   cfg['val']['images'])
    record(run.metrics_log, run.writer, step, {f'val/{k}': v for k, v in values.items()})
    if run.writer is not None and panel is not None:
        run.writer.add_image('val/rgb_pred_truth', panel, step, dataformats='HWC')
    LOG.info('step %d validation: %s', step, format_values(values))


def trainer_state(run: Run) -> dict:
    """What a checkpoint holds: enough to continue bit for bit (see `restore`)."""
    scaler = run.accelerator.scaler
    return {'step': run.step, 'micro_batches': run.micro_batches,
            'planned_steps': run.planned_steps, 'history': run.history,
            'stage': run.cfg['stage'], 'config': run.cfg,
            'trainable': {n: p.detach().cpu() for n, p in run.named},
            'optimizer': run.optimizer.state_dict(),
            'ema': run.ema.state_dict() if run.ema is not None else None,
            'scaler': scaler.state_dict() if scaler else None, 'rng': rng_state()}


def save(run: Run) -> Path | None:
    """A checkpoint, written by the main process once every process got here."""
    run.accelerator.wait_for_everyone()
    if run.main:
        return save_checkpoint(run.out / 'checkpoints', trainer_state(run),
                               run.cfg['checkpoint']['keep'])
    return None


def export(run: Run) -> None:
    """The EMA weights in the inference checkpoint format, and the stage's DONE file."""
    cfg, model = run.cfg, run.model
    if run.ema is not None:
        run.ema.copy_to(run.named)
    stage = getattr(run.stage, 'module', run.stage)
    if cfg['stage'] == 'autoencoder' and cfg['loss']['fit_latent_scale'] and run.val_samples:
        codec = LogDepthCodec(cfg['model']['d_min'], cfg['model']['d_max'])
        device = next(stage.parameters()).device
        batch = _collate([to_training_sample(s, codec) for s in run.val_samples], device)
        scale = stage.fit_latent_scale([batch])
        LOG.info('VAE scaling_factor set from data: %.4f', scale)
    data = cfg['data']
    model.meta['processing_resolution'] = (cfg['model']['processing_resolution']
                                           or max(data['height'], data['width']))
    for key in EXPORTED_MODEL_KEYS:
        model.meta[key] = cfg['model'][key]
    model.meta['training_data'] = [
        {k: v for k, v in e.items() if k != 'kwargs'} for e in data['train']]
    history = model.meta.setdefault('training', [])
    history.append({'stage': cfg['stage'], 'name': cfg['name'], 'steps': run.step,
                    'resolution_hw': [data['height'], data['width']]})
    for module in (model.unet, model.vae):
        module.to('cpu')
    model.eval().save(run.export_dir)
    done = {'step': run.step, 'export': str(run.export_dir)}
    save_text(run.out / DONE_FILE, json.dumps(done) + '\n')
    LOG.info('exported %s', run.export_dir)


# ---------------------------------------------------------------- small helpers


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _collate(samples: list[dict], device) -> dict:
    keys = ('rgb', 'depth_code', 'valid')
    return {k: torch.stack([s[k] for s in samples]).to(device) for k in keys}
