"""Distillation of a checkpoint's light decoder (`mode: fast`): a small conv head on the VAE
decoder's mid-block features, trained to reproduce the exact VAE decoder's depth code on the
model's own 1-step latents of procedural scenes, at several sizes so that it holds across
processing resolutions. `metricgold distill` runs it.

    record = distill(checkpoint, output, scenes=256, sizes=((96, 128), (240, 320)))
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
import shutil

import numpy as np
import torch
import torch.nn.functional as F

from ..data.procedural import ProceduralScenes
from ..evaluation.metrics import compute_metrics
from ..io_utils import atomic_dir, save_text
from ..model.checkpoint_format import META_FILE
from ..model.image_processing import to_model_input
from ..model.light_decoder import LightDecoderHead
from ..model.network import MetricGoldModel
from ..model.pipeline import DepthEstimator, FAST_KV_POOL

LOG = logging.getLogger(__name__)
TRAIN_SEED = 0            # procedural seed streams of the distillation scenes
HELD_OUT_SEED = 9_000_000


@torch.no_grad()
def collect(est: DepthEstimator, scenes, seed: int, batch: int = 16):
    """(fast-mode mid-block features [N, C, h, w], exact decoded code [N, 1, H, W], depth
    [N, H, W]) of the model's 1-step latents for `scenes`."""
    features, codes, depths = [], [], []
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(scenes), batch):
        items = [scenes[i] for i in range(start, min(start + batch, len(scenes)))]
        x, _ = to_model_input(np.stack([s['rgb'] for s in items]), 0, est.vae_factor,
                              est.device, est.dtype, est.model.input_normalization)
        latent = est.predict_latent(x, 1, generator)
        features.append(est.vae_decoder.mid_features(latent, FAST_KV_POOL).float().cpu())
        codes.append(est.vae_decoder.decode_mean(latent).float().cpu())
        depths.extend(s['depth'] for s in items)
    return torch.cat(features), torch.cat(codes), np.stack(depths)


def metric_abs_rel(codec, code: torch.Tensor, depth: np.ndarray, max_depth: float = 80.0):
    """Mean per-image AbsRel of decoded codes [N, 1, H, W] against ground truth, in metres."""
    normalized = ((code.clamp(-1.0, 1.0) + 1.0) * 0.5)[:, 0].numpy()
    values = []
    for pred, gt in zip(codec.normalized_to_depth(normalized), depth):
        valid = np.isfinite(gt) & (gt > 1e-3) & (gt < max_depth)
        values.append(compute_metrics(pred, gt, valid)['abs_rel'])
    return float(np.mean(values))


def write_into(source: Path, target: Path, head: LightDecoderHead, record: dict) -> None:
    """Add the head (and its record in metricgold.json) to a copy of `source` at `target`,
    or in place. The other files are copied byte for byte (weights keep their dtype); a new
    target appears whole or not at all."""
    if target.resolve() != source.resolve():
        with atomic_dir(target) as tmp:
            shutil.copytree(source, tmp, dirs_exist_ok=True)
            _add_head(tmp, head, record)
    else:
        _add_head(target, head, record)


def _add_head(folder: Path, head: LightDecoderHead, record: dict) -> None:
    head.save(folder)   # atomic per file
    meta = json.loads((folder / META_FILE).read_text())
    meta['light_decoder'] = record
    save_text(folder / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + '\n')


def distill(checkpoint, output=None, *, scenes: int = 256, val_scenes: int = 48,
            sizes=((96, 128), (240, 320)), channels: int = 32, steps: int = 1500,
            batch: int = 16, lr: float = 3e-3, seed: int = 0, device: str = 'cpu') -> dict:
    """Train the head on `checkpoint`, write it (to `output`, default in place) and return the
    record stored in metricgold.json (config, steps, held-out errors per size)."""
    torch.manual_seed(seed)
    model = MetricGoldModel.load(checkpoint)
    est = DepthEstimator(model, device=device, dtype='float32')  # the exact decoder's targets
    head = LightDecoderHead.for_vae(model.vae, channels)
    LOG.info('light decoder head: %d parameters', sum(p.numel() for p in head.parameters()))
    train, val = [], []
    for h, w in sizes:
        train.append(collect(est, ProceduralScenes(scenes, h, w, seed=TRAIN_SEED), 1))
        val.append(collect(est, ProceduralScenes(val_scenes, h, w, seed=HELD_OUT_SEED), 2))
        LOG.info('collected %dx%d', h, w)

    head.to(est.device).train()
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        features, codes, _ = train[step % len(train)]  # sizes take turns
        idx = torch.randint(0, len(features), (batch,), generator=generator)
        loss = F.l1_loss(head(features[idx].to(est.device).contiguous()),
                         codes[idx].to(est.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == steps - 1:
            LOG.info('step %d: train L1 (code) %.4f', step, loss.item())
    head.eval()

    held_out = []
    for (h, w), (features, codes, depth) in zip(sizes, val):
        with torch.no_grad():
            light = head(features.to(est.device).contiguous()).cpu()
        row = {'size_hw': [h, w], 'code_l1': round(F.l1_loss(light, codes).item(), 5),
               'abs_rel_exact': round(metric_abs_rel(model.codec, codes, depth), 5),
               'abs_rel_light': round(metric_abs_rel(model.codec, light, depth), 5)}
        LOG.info('held-out %dx%d: L1 between light and exact decoder codes %.4f (code range '
                 '[-1, 1]); metric AbsRel exact %.4f, light %.4f (%+.2f %%)', h, w,
                 row['code_l1'], row['abs_rel_exact'], row['abs_rel_light'],
                 100.0 * (row['abs_rel_light'] / row['abs_rel_exact'] - 1.0))
        held_out.append(row)
    record = dict(head.config(), distilled_scenes_per_size=scenes, steps=steps,
                  held_out=held_out)
    write_into(Path(checkpoint), Path(output or checkpoint), head.cpu(), record)
    LOG.info('wrote %s', output or checkpoint)
    return record
