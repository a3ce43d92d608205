"""Distil the `light` decoder of a checkpoint: a small head on the VAE decoder's half-resolution
features, trained to reproduce the exact decoder's depth code on the model's own 1-step latents.

    python training/distill_light_decoder.py --checkpoint DIR [--output DIR] [--scenes 384]

Writes the checkpoint (to --output, default: in place, atomically) with
`light_decoder.safetensors`; prints the held-out code error of the head.
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
from metricgold_core.model import MetricGoldModel  # noqa: E402
from metricgold_core.pipeline import DepthEstimator  # noqa: E402

LOG = logging.getLogger('distill_light_decoder')


@torch.no_grad()
def collect(est: DepthEstimator, head: LightDepthHead, scenes, seed: int, batch: int = 16):
    """(features at the cut [N, C, h, w], exact mean decoded code [N, 1, H, W]) for `scenes`."""
    feats, targets = [], []
    generator = torch.Generator().manual_seed(seed)
    images = np.stack([s['rgb'] for s in scenes])
    for start in range(0, len(images), batch):
        x, _ = to_model_input(images[start:start + batch], 0, est.vae_factor, est.device,
                              est.dtype)
        latent_rgb = est._encode(x.contiguous(memory_format=est.vae_format))
        latent = est._denoise(latent_rgb, est._noise(latent_rgb, generator), 1, False)[-1]
        latent = latent.contiguous(memory_format=est.vae_format)
        feats.append(est.fast_decoder.features(latent, head.cut_block).float().contiguous())
        targets.append(est.fast_decoder.decode_mean(latent).float().contiguous())
    return torch.cat(feats), torch.cat(targets)


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


def head_output(head, features, size):
    return F.interpolate(head(features), size=size, mode='bilinear', align_corners=False)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', required=True)
    p.add_argument('--output', default=None, help='where to write (default: in place)')
    p.add_argument('--scenes', type=int, default=384, help='training scenes (seed stream 0)')
    p.add_argument('--val-scenes', type=int, default=64)
    p.add_argument('--size', type=int, nargs=2, default=None, metavar=('H', 'W'),
                   help="scene size (default: the checkpoint's processing size, 3:4)")
    p.add_argument('--steps', type=int, default=600)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--seed', type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s', datefmt='%H:%M:%S')
    torch.manual_seed(args.seed)

    model = MetricGoldModel.load(args.checkpoint)
    res = model.processing_resolution or 128
    h, w = args.size or (res * 3 // 4, res)
    est = DepthEstimator(model, device='cpu')
    head = LightDepthHead.for_vae(model.vae)
    LOG.info('head on block %d features (%d channels): %d parameters', head.cut_block,
             head.conv.in_channels, sum(p.numel() for p in head.parameters()))
    train_x, train_y = collect(est, head, ProceduralScenes(args.scenes, h, w, seed=0), 1)
    val_x, val_y = collect(est, head, ProceduralScenes(args.val_scenes, h, w, seed=9_000_000), 2)
    size = tuple(train_y.shape[-2:])

    head.train()
    optimizer = torch.optim.Adam(head.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    generator = torch.Generator().manual_seed(args.seed)
    for step in range(args.steps):
        idx = torch.randint(0, len(train_x), (32,), generator=generator)
        loss = F.l1_loss(head_output(head, train_x[idx], size), train_y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps - 1:
            LOG.info('step %d: train L1 (code) %.4f', step, loss.item())
    head.eval()
    with torch.no_grad():
        val_l1 = F.l1_loss(head_output(head, val_x, size), val_y).item()
    LOG.info('held-out L1 between light and exact decoder codes: %.4f (code range [-1, 1])',
             val_l1)
    write_into(Path(args.checkpoint), Path(args.output or args.checkpoint), head,
               dict(head.config(), distilled_scenes=args.scenes, steps=args.steps,
                    val_code_l1=round(val_l1, 5)))
    LOG.info('wrote %s', args.output or args.checkpoint)
    return 0


if __name__ == '__main__':
    sys.exit(main())
