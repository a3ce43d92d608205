"""Validation on held-out procedural scenes: metric depth accuracy and image panels.

Depth stages are measured through `DepthEstimator` (1 step, metric, no alignment), i.e. exactly
what a user of the exported checkpoint gets; VAE stages measure depth reconstruction through the
VAE alone (encode the code, decode it), the bound the VAE puts on any UNet.
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from ..evaluation.metrics import compute_metrics
from ..visualize import comparison_panel


def depth_errors(pred_m: np.ndarray, gt_m: np.ndarray, valid: np.ndarray) -> dict:
    """AbsRel and delta1 of one image over `valid` pixels: metric, no alignment."""
    values = compute_metrics(pred_m, gt_m, valid, alignment='none')
    return {'abs_rel': values['abs_rel'], 'delta1': values['delta1']}


def summarise(per_image: list[dict], kinds: list[str]) -> dict:
    """Mean of per-image metrics, overall and per scene kind: {'abs_rel', 'indoor/abs_rel'...}."""
    out = {}
    for key in ('abs_rel', 'delta1'):
        out[key] = float(np.mean([m[key] for m in per_image]))
        for kind in sorted(set(kinds)):
            values = [m[key] for m, k in zip(per_image, kinds) if k == kind]
            out[f'{kind}/{key}'] = float(np.mean(values))
    return out


EXPORTED_MODEL_KEYS = ('canonical_focal_px', 'input_normalization', 'far_limit_m')


def eval_copy(model, named_weights: dict, model_cfg: dict | None = None):
    """A deep copy of `model` (on CPU) with `named_weights` ('unet.x' / 'vae.y') loaded and
    the recipe's `model` keys that the export stores (EXPORTED_MODEL_KEYS) in its meta, as the
    export will have them."""
    model_copy = copy.deepcopy(model)
    for key in EXPORTED_MODEL_KEYS:
        model_copy.meta[key] = (model_cfg or {}).get(key)
    with torch.no_grad():
        for name, value in named_weights.items():
            part, _, rest = name.partition('.')
            getattr(model_copy, part).get_parameter(rest).copy_(value)
    return model_copy.eval()


@torch.no_grad()
def predict_depth(model, stage_name: str, samples: list[dict], device) -> np.ndarray:
    """Depth (N, H, W) metres for the samples: 1-step inference at the samples' own size
    through the core call (metric_depth.estimate_metric_depth: the focal rescale of a
    canonical-focal model included), or the VAE's reconstruction of the true depth."""
    if stage_name in ('depth', 'single_step'):
        from ..metric_depth import estimate_metric_depth
        from ..model.pipeline import DepthEstimator
        # float32: validation figures stay comparable across machines and earlier logs
        estimator = DepthEstimator(model, device=device, dtype='float32')
        return np.stack([estimate_metric_depth(estimator, s['rgb'], s['K'], steps=1,
                                               processing_resolution=0, seed=0).depth
                         for s in samples])
    vae = model.vae.to(device).float()
    depth = torch.from_numpy(np.stack([s['depth'] for s in samples])).to(device)
    code, _ = model.codec.encode(depth)
    code = code[:, None].expand(-1, 3, -1, -1)  # [N, 3, H, W]
    latent = vae.encode(code).latent_dist.mode()
    recon = vae.decode(latent).sample.mean(dim=1).clamp(-1.0, 1.0)  # [N, H, W]
    return model.codec.decode(recon).float().cpu().numpy()


def run_validation(model, stage_name: str, samples: list[dict], device, panels: int = 4
                   ) -> tuple[dict, np.ndarray | None]:
    """Metrics dict and a uint8 (rows*H, 4*W, 3) image of visualize.comparison_panel rows.

    A model trained on canonical-focal labels must carry `canonical_focal_px` in its meta
    (eval_copy sets it) so that its predictions come out in metres.
    """
    pred = predict_depth(model, stage_name, samples, device)
    per_image = [depth_errors(p, s['depth'], s['valid']) for p, s in zip(pred, samples)]
    metrics = summarise(per_image, [s['kind'] for s in samples])
    rows = [comparison_panel(s['rgb'], p, s['depth'], s['valid'])
            for p, s in list(zip(pred, samples))[:panels]]
    return metrics, (np.concatenate(rows, axis=0) if rows else None)
