"""Distil the light decoder of a checkpoint (`fast` mode): a small conv head on the VAE decoder's
mid-block features, trained to reproduce the exact VAE decoder's output on the model's own 1-step
latents of procedural scenes (several sizes, so it holds across processing resolutions).

    python training/distill_light_decoder.py --checkpoint DIR [--output DIR] [--scenes 384]

Writes the checkpoint (to --output, default: in place, atomically) with
`light_decoder.safetensors`; prints the held-out code error of the head and the metric AbsRel of
the exact and the light decoder on held-out scenes.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a source checkout

from metricgold_core.data.procedural import ProceduralScenes  # noqa: E402
from metricgold_core.image_processing import to_model_input  # noqa: E402
from metricgold_core.light_decoder import LightDepthHead  # noqa: E402
from metricgold_core.metrics import compute_metrics  # noqa: E402
from metricgold_core.model import MetricGoldModel  # noqa: E402
from metricgold_core.pipeline import DepthEstimator, FAST_KV_POOL  # noqa: E402

LOG = logging.getLogger('distill_light_decoder')


@torch.no_grad()
def collect(est: DepthEstimator, scenes, seed: int, batch: int = 16):
    """(fast-mode mid-block features [N, C, h, w], exact decoded code [N, 1, H, W], depth
    [N, H, W]) of the model's 1-step latents for `scenes`."""
    features, codes, depths = [], [], []
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(scenes), batch):
        items = [scenes[i] for i in range(start, min(start + batch, len(scenes)))]
        x, _ = to_model_input(np.stack([s['rgb'] for s in items]), 0, est.vae_factor,
                              est.device, est.dtype)
        latent_rgb = est._encode(x.contiguous(memory_format=est.vae_format))
        latent = est._denoise(latent_rgb, est._noise(latent_rgb, generator), 1, False)[-1]
        latent = latent.contiguous(memory_format=est.vae_format)
        features.append(est.fast_decoder.mid_features(latent, FAST_KV_POOL).float().cpu())
        codes.append(est.fast_decoder.decode_mean(latent).float().cpu())
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


def write_into(source: Path, target: Path, head: LightDepthHead, record: dict) -> None:
    """Add the head (and its record in metricgold.json) to a copy of `source` at `target`.

    The other files are copied byte for byte, so weights keep their stored dtype.
    """
    import json
    import shutil
    import tempfile

    from metricgold_core.io_utils import save_text
    from metricgold_core.model import META_FILE
    if target.resolve() != source.resolve():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f'.{target.name}.tmp-', dir=target.parent))
        shutil.copytree(source, tmp, dirs_exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    head.save(target)
    meta = json.loads((target / META_FILE).read_text())
    meta['light_decoder'] = record
    save_text(target / META_FILE, json.dumps(meta, indent=2, sort_keys=True) + '\n')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--output', default=None, help='where to write (default: in place)')
    p.add_argument('--scenes', type=int, default=256,
                   help='training scenes per size (seed stream 0)')
    p.add_argument('--val-scenes', type=int, default=48, help='held-out scenes per size')
    p.add_argument('--sizes', type=int, nargs='+', default=(96, 128, 240, 320),
                   metavar='H W', help='scene sizes as H W pairs (default 96 128 240 320)')
    p.add_argument('--channels', type=int, default=32, help='head width')
    p.add_argument('--steps', type=int, default=1500)
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N (default cpu)')
    args = p.parse_args(argv)
    if len(args.sizes) % 2:
        p.error('--sizes takes H W pairs')
    sizes = list(zip(args.sizes[::2], args.sizes[1::2]))
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', datefmt='%H:%M:%S')
    torch.manual_seed(args.seed)

    model = MetricGoldModel.load(args.checkpoint)
    est = DepthEstimator(model, device=args.device)
    head = LightDepthHead.for_vae(model.vae, args.channels)
    LOG.info('light decoder head: %d parameters', sum(p.numel() for p in head.parameters()))
    train, val = [], []
    for h, w in sizes:
        train.append(collect(est, ProceduralScenes(args.scenes, h, w, seed=0), 1))
        val.append(collect(est, ProceduralScenes(args.val_scenes, h, w, seed=9_000_000), 2))
        LOG.info('collected %dx%d', h, w)

    head.to(est.device).train()
    optimizer = torch.optim.Adam(head.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps):
        features, codes, _ = train[step % len(train)]  # sizes take turns
        idx = torch.randint(0, len(features), (args.batch,), generator=generator)
        loss = F.l1_loss(head(features[idx].to(est.device).contiguous()),
                         codes[idx].to(est.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 250 == 0 or step == args.steps - 1:
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
    write_into(Path(args.checkpoint), Path(args.output or args.checkpoint), head,
               dict(head.config(), distilled_scenes_per_size=args.scenes,
                    steps=args.steps, held_out=held_out))
    LOG.info('wrote %s', args.output or args.checkpoint)
    return 0


if __name__ == '__main__':
    sys.exit(main())
