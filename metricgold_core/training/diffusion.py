"""Diffusion maths for training: pyramid noise, forward process, v-prediction, one DDIM step.

The schedule is the model's own DDIM scheduler's `alphas_cumprod` (the 1000-step DDPM schedule
it was trained with), so training and inference can never disagree about it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def pyramid_noise(shape, strength, levels: int, generator: torch.Generator,
                  device=None) -> torch.Tensor:
    """Multi-resolution Gaussian noise [B, C, h, w], unit std per sample.

    Gaussian noise plus up-sampled coarser noise at ratios drawn in [2, 4) per level, weighted
    strength ** level: low frequencies are corrupted too, so the model cannot recover the coarse
    layout of the depth from the noisy latent alone. `strength` is a float or a [B] tensor
    (per-sample annealing); 0 gives plain Gaussian noise.
    """
    b, c, h, w = shape
    noise = torch.randn(shape, generator=generator).to(device)
    strength = torch.as_tensor(strength, dtype=torch.float32).reshape(-1, 1, 1, 1).to(device)
    for level in range(1, levels + 1):
        ratio = float(torch.rand(1, generator=generator)) * 2.0 + 2.0
        lh, lw = max(1, int(h / ratio ** level)), max(1, int(w / ratio ** level))
        coarse = torch.randn((b, c, lh, lw), generator=generator).to(device)
        noise = noise + F.interpolate(coarse, size=(h, w), mode='bilinear',
                                      align_corners=False) * strength ** level
        if lh == 1 or lw == 1:
            break
    return noise / noise.flatten(1).std(dim=1).reshape(-1, 1, 1, 1)


def add_noise(x0, noise, alphas_cumprod, t):
    """Forward process q(x_t | x_0) at integer timesteps t [B]."""
    a = alphas_cumprod.to(x0.device)[t].reshape(-1, 1, 1, 1).to(x0.dtype)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def v_target(x0, noise, alphas_cumprod, t):
    """The v-prediction target sqrt(a) eps - sqrt(1 - a) x0."""
    a = alphas_cumprod.to(x0.device)[t].reshape(-1, 1, 1, 1).to(x0.dtype)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def ddim_single_step(v, x_t, alphas_cumprod, final_alpha_cumprod, t: int):
    """Latent after one deterministic DDIM step from timestep t to the end, as inference does.

    Equals DDIMScheduler.step(v, t, x_t).prev_sample for a 1-step trailing schedule (eta 0),
    written out so gradients flow through it.
    """
    a = alphas_cumprod[t].to(x_t.device, x_t.dtype)
    a_prev = torch.as_tensor(final_alpha_cumprod).to(x_t.device, x_t.dtype)
    x0 = a.sqrt() * x_t - (1 - a).sqrt() * v
    eps = a.sqrt() * v + (1 - a).sqrt() * x_t
    return a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps


def latent_valid_mask(valid: torch.Tensor, factor: int) -> torch.Tensor:
    """Pixel mask [B, 1, H, W] -> latent mask [B, 1, H/f, W/f]: True where all of a cell is."""
    invalid = (~valid).float()
    return F.max_pool2d(invalid, factor, factor) < 0.5


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` [B, C, h, w] over mask [B, 1, h, w] (broadcast over channels)."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def noise_generator(seed: int, micro_batch: int) -> torch.Generator:
    """The generator of a micro-batch's noise and timesteps: a function of its global index
    only, so it is the same whichever process, accumulation slot or resumed run draws it."""
    state = np.random.SeedSequence([seed, 2, micro_batch]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))
