"""The training loop: data, forward, loss, backward, step, log, save, for every stage.

    train(cfg, resume='auto')   one stage (cfg['stage']) -> path of the exported checkpoint
    run(cfg, resume='auto')     every entry of cfg['stages'] in order (or cfg itself)

The trainer state is one plain dict (see `trainer_state`), saved and restored whole, so a run
killed at any moment and resumed with `resume='auto'` ends with the same weights, bit for bit on
CPU, as one that was never interrupted. `accelerate` provides DDP and mixed precision; run under
`accelerate launch` for several GPUs, or plainly for CPU / one GPU.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
import signal
import time

import torch

from .checkpoint import EMA, load_latest, rng_state, save_checkpoint, set_rng_state
from .config import ConfigError, stage_configs, to_yaml
from .data import build_loader, build_train_dataset, to_training_sample, validation_samples
from .stages import build_stage
from .validation import eval_copy, run_validation
from ..codec import LogDepthCodec
from ..model import MetricGoldModel

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


def lr_at(step: int, optim: dict) -> float:
    """Linear warm-up, then exponential decay to lr * final_lr_ratio over decay_steps."""
    warm = min(1.0, (step + 1) / optim['warmup_steps']) if optim['warmup_steps'] > 0 else 1.0
    decay_steps = max(1, optim['decay_steps'])
    done = min(max(step - optim['warmup_steps'], 0), decay_steps) / decay_steps
    return optim['lr'] * warm * optim['final_lr_ratio'] ** done


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


def train(cfg: dict, resume: str = 'auto', previous: Path | None = None) -> Path:
    """Train one stage; returns the exported inference checkpoint (EMA weights)."""
    out = Path(cfg['output_dir'])
    export_dir = out / 'model'
    if resume != 'none' and (out / DONE_FILE).is_file() and (export_dir / 'unet').is_dir():
        LOG.info('stage %s already finished: %s', cfg['name'], export_dir)
        return export_dir
    if cfg['num_threads'] > 0:
        torch.set_num_threads(cfg['num_threads'])
    accelerator = make_accelerator(cfg)
    if accelerator.device.type == 'cpu':
        # Tiny weights and gradients reach denormal floats, which are ~100x slower on CPU.
        torch.set_flush_denormal(True)
    rank, world = accelerator.process_index, accelerator.num_processes
    main = accelerator.is_main_process
    torch.manual_seed(cfg['seed'])

    # ---- model, stage, optimizer, trainer state
    model = build_model(cfg, previous)
    stage = build_stage(model, cfg)
    named = [(n, p) for n, p in stage.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    optim = cfg['optim']
    optimizer = torch.optim.AdamW(params, lr=optim['lr'], betas=tuple(optim['betas']),
                                  weight_decay=optim['weight_decay'])
    ema = EMA(named, optim['ema_decay']) if optim['ema_decay'] > 0 else None
    generator = torch.Generator().manual_seed(cfg['seed'] * 1000 + rank)  # noise, timesteps
    state = {'step': 0, 'micro_batches': 0, 'history': []}
    scaler_state = None

    if resume != 'none':
        folder = out / 'checkpoints' if resume == 'auto' else Path(resume)
        loaded = load_latest(folder)
        if loaded is not None:
            saved, path = loaded
            with torch.no_grad():
                for name, p in named:
                    p.copy_(saved['trainable'][name])
            optimizer.load_state_dict(saved['optimizer'])
            if ema is not None:
                ema.load_state_dict(saved['ema'])
            generator.set_state(saved['generator'])
            set_rng_state(saved['rng'])
            state.update(step=saved['step'], micro_batches=saved['micro_batches'],
                         history=saved['history'])
            if main:
                LOG.info('resumed %s from %s (step %d)', cfg['name'], path, state['step'])
            scaler_state = saved.get('scaler')
        elif resume != 'auto':
            raise ConfigError(f'`--resume {resume}`: no complete checkpoint there.')
    stage, optimizer = accelerator.prepare(stage, optimizer)
    if ema is not None:
        ema.to(accelerator.device)
    if resume != 'none' and scaler_state is not None and accelerator.scaler is not None:
        accelerator.scaler.load_state_dict(scaler_state)

    def trainer_state() -> dict:
        return {'step': state['step'], 'micro_batches': state['micro_batches'],
                'history': state['history'], 'stage': cfg['stage'], 'config': cfg,
                'trainable': {n: p.detach().cpu() for n, p in named},
                'optimizer': optimizer.state_dict(),
                'ema': ema.state_dict() if ema is not None else None,
                'scaler': accelerator.scaler.state_dict() if accelerator.scaler else None,
                'generator': generator.get_state(), 'rng': rng_state()}

    # ---- data and monitoring
    accum, micro = optim['grad_accum'], cfg['data']['micro_batch']
    dataset = build_train_dataset(cfg)
    loader = iter(build_loader(dataset, cfg, state['micro_batches'], rank, world))
    val_samples = validation_samples(cfg) if main and cfg['data']['val_count'] > 0 else []
    writer = _tensorboard(cfg, out) if main else None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / 'config.yaml').write_text(to_yaml(cfg), encoding='utf-8')
        LOG.info('stage %s: %s trainable parameters, batch %d x accum %d x %d process(es) = '
                 'effective batch %d', cfg['stage'], f'{sum(p.numel() for p in params):,}',
                 micro, accum, world, micro * accum * world)
    metrics_log = open(out / 'metrics.jsonl', 'a', encoding='utf-8') if main else None
    progress = _progress(cfg, state['step'], main)
    stop = _SignalFlag()

    def validate(step):
        weights = ema.shadow if ema is not None else {n: p.detach() for n, p in named}
        values, panel = run_validation(eval_copy(model, weights), cfg['stage'], val_samples,
                                       accelerator.device, cfg['val']['images'],
                                       cfg['model']['canonical_focal_px'])
        _record(metrics_log, writer, step, {f'val/{k}': v for k, v in values.items()})
        if writer is not None and panel is not None:
            writer.add_image('val/rgb_pred_truth', panel, step, dataformats='HWC')
        LOG.info('step %d validation: %s', step, _fmt(values))

    def checkpoint():
        accelerator.wait_for_everyone()
        if main:
            return save_checkpoint(out / 'checkpoints', trainer_state(),
                                   cfg['checkpoint']['keep'])
        return None

    if main and cfg['val']['at_start'] and state['step'] == 0 and val_samples:
        validate(0)
    stage.train()
    t_last, loss_sum, logs_sum, n_logged = time.perf_counter(), 0.0, {}, 0
    max_steps = cfg['max_steps']
    with stop:
        while state['step'] < max_steps:
            step = state['step']
            lr = lr_at(step, optim)
            for group in optimizer.param_groups:
                group['lr'] = lr
            # ---- forward / backward over `accum` micro-batches
            for i in range(accum):
                batch = _to_device(next(loader), accelerator.device)
                sync = contextlib.nullcontext() if i == accum - 1 else accelerator.no_sync(stage)
                with sync:
                    with accelerator.autocast():
                        loss, logs = stage(batch, generator, step / max_steps)
                    accelerator.backward(loss / accum)
                loss_sum = loss_sum + loss.detach().float() / accum
                for k, v in logs.items():
                    logs_sum[k] = logs_sum.get(k, 0.0) + v.float() / accum
            grad_norm = None
            if optim['max_grad_norm'] > 0:
                grad_norm = accelerator.clip_grad_norm_(params, optim['max_grad_norm'])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(named, step)
            state['step'] = step = step + 1
            state['micro_batches'] += accum
            n_logged += 1

            # ---- log (the only place that waits for the device)
            if step % cfg['log']['every'] == 0 or step == max_steps:
                now = time.perf_counter()
                mean_loss = float(accelerator.reduce(loss_sum, 'mean')) / n_logged
                scalars = {'train/loss': mean_loss, 'train/lr': lr,
                           'train/s_per_step': (now - t_last) / n_logged,
                           'train/effective_batch': micro * accum * world}
                scalars.update({f'train/{k}': float(v) / n_logged for k, v in logs_sum.items()})
                if grad_norm is not None:
                    scalars['train/grad_norm'] = float(grad_norm)
                state['history'].append([step, mean_loss])
                _record(metrics_log, writer, step, scalars)
                if progress is not None:
                    progress.set_postfix(loss=f'{mean_loss:.4f}', lr=f'{lr:.2e}')
                t_last, loss_sum, logs_sum, n_logged = now, 0.0, {}, 0
            if progress is not None:
                progress.update(1)
            every = cfg['val']['every']
            if main and val_samples and ((every and step % every == 0) or step == max_steps):
                validate(step)
            stopping = stop.signum is not None
            if world > 1:  # every rank must stop at the same step
                flag = torch.tensor(float(stopping), device=accelerator.device)
                stopping = float(accelerator.reduce(flag, 'max')) > 0
            every = cfg['checkpoint']['every']
            if stopping or (every and step % every == 0) or step == max_steps:
                path = checkpoint()
                if stopping:
                    if progress is not None:
                        progress.close()
                    raise TrainingInterrupted(stop.signum or signal.SIGTERM, path)
    if progress is not None:
        progress.close()

    # ---- export the EMA weights in the inference checkpoint format
    accelerator.wait_for_everyone()
    if main:
        _export(model, stage, named, ema, cfg, val_samples, export_dir, state)
        if metrics_log is not None:
            metrics_log.close()
        if writer is not None:
            writer.close()
    accelerator.wait_for_everyone()
    return export_dir


def _export(model, stage, named, ema, cfg, val_samples, export_dir, state) -> None:
    if ema is not None:
        ema.copy_to(named)
    stage = getattr(stage, 'module', stage)
    if cfg['stage'] == 'autoencoder' and cfg['loss']['fit_latent_scale'] and val_samples:
        codec = LogDepthCodec(cfg['model']['d_min'], cfg['model']['d_max'])
        device = next(stage.parameters()).device
        batch = _collate([to_training_sample(s, codec) for s in val_samples], device)
        scale = stage.fit_latent_scale([batch])
        LOG.info('VAE scaling_factor set from data: %.4f', scale)
    data = cfg['data']
    model.meta['processing_resolution'] = (cfg['model']['processing_resolution']
                                           or max(data['height'], data['width']))
    model.meta['canonical_focal_px'] = cfg['model']['canonical_focal_px']
    model.meta['training_data'] = [
        {k: v for k, v in e.items() if k != 'kwargs'} for e in data['train']]
    history = model.meta.setdefault('training', [])
    history.append({'stage': cfg['stage'], 'name': cfg['name'], 'steps': state['step'],
                    'resolution_hw': [data['height'], data['width']]})
    for module in (model.unet, model.vae):
        module.to('cpu')
    model.eval().save(export_dir)
    done = {'step': state['step'], 'export': str(export_dir)}
    (Path(cfg['output_dir']) / DONE_FILE).write_text(json.dumps(done) + '\n', encoding='utf-8')
    LOG.info('exported %s', export_dir)


# ---------------------------------------------------------------- small helpers


class _SignalFlag:
    """Within `with`, SIGTERM/SIGINT only set `signum`; the loop saves and stops at step end."""

    def __init__(self):
        self.signum, self._old = None, {}

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: the user insists
            raise KeyboardInterrupt
        self.signum = signum
        LOG.warning('signal %d: saving a checkpoint at the end of this step', signum)

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


def _to_device(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in batch.items()}


def _collate(samples: list[dict], device) -> dict:
    keys = ('rgb', 'depth_code', 'valid')
    return {k: torch.stack([s[k] for s in samples]).to(device) for k in keys}


def _tensorboard(cfg, out: Path):
    if not cfg['log']['tensorboard']:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        LOG.warning('tensorboard is not installed: no TensorBoard logs (pip install tensorboard)')
        return None
    return SummaryWriter(str(out / 'tensorboard'))


def _progress(cfg, start: int, main: bool):
    if not (main and cfg['log']['progress']):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=cfg['max_steps'], initial=start, desc=cfg['name'], dynamic_ncols=True)


def _record(metrics_log, writer, step: int, scalars: dict) -> None:
    if metrics_log is not None:
        metrics_log.write(json.dumps({'step': step, **scalars}) + '\n')
        metrics_log.flush()
    if writer is not None:
        for key, value in scalars.items():
            if math.isfinite(value):
                writer.add_scalar(key, value, step)


def _fmt(values: dict) -> str:
    return ', '.join(f'{k} {v:.4f}' for k, v in values.items())
