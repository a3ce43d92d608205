"""The four training stages as modules: forward(batch) -> loss, for one loop and DDP.

    autoencoder   train the whole VAE on RGB and log-depth codes (models built from scratch)
    depth_vae     fine-tune the VAE decoder on depth codes, encoder frozen (the 'Depth VAE'):
                  the UNet's latent space stays as it is, only decoding gets better
    depth         the paper's stage: v-prediction on depth latents, pyramid noise, masked loss
    single_step   end-to-end fine-tuning at t = 999 with the loss on decoded log-depth codes,
                  through exactly the computation of 1-step inference; optionally plus the
                  distance to a frozen copy of the starting UNet's prediction on the image
                  before its photometric change (loss.teacher_weight)

Each stage is a torch Module whose only trainable parameters are the ones it trains, so
`accelerate`/DDP can wrap it whole and the loop stays the same for every stage.
"""
from __future__ import annotations

import copy

import torch

from .diffusion import (add_noise, ddim_single_step, latent_valid_mask, masked_mean,
                        pyramid_noise, v_target)
from ..model.image_processing import normalize_exposure

NUM_TRAIN_TIMESTEPS = 1000


class Stage(torch.nn.Module):
    """Shared parts: the model's UNet and VAE, the frozen empty-text embedding, the schedule."""

    def __init__(self, model, cfg: dict):
        super().__init__()
        self.unet = model.unet
        self.vae = model.vae
        self.cfg = cfg
        self.register_buffer('text', model.empty_text_embedding.detach().clone().float(),
                             persistent=False)  # [1, tokens, dim]
        self.register_buffer('alphas_cumprod', model.scheduler.alphas_cumprod.clone().float(),
                             persistent=False)
        self.final_alpha_cumprod = float(model.scheduler.final_alpha_cumprod)
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.requires_grad_(False)
        for module in self.trainable_modules():
            module.requires_grad_(True)
        if cfg['model']['gradient_checkpointing']:
            self.unet.enable_gradient_checkpointing()
            self.vae.enable_gradient_checkpointing()

    def trainable_modules(self) -> list:
        raise NotImplementedError

    def train(self, mode: bool = True):
        # Frozen parts stay in eval mode (no gradient checkpointing, no dropout there).
        super().train(False)
        for module in self.trainable_modules():
            module.train(mode)
        return self

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    def encode_mean(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> scaled latent mean [B, 4, H/8, W/8]."""
        return self.vae.encode(image).latent_dist.mode() * self.scaling_factor

    def decode_code(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> depth code [B, 1, H, W]: mean of the 3 channels, as inference."""
        return self.vae.decode(latent / self.scaling_factor).sample.mean(dim=1, keepdim=True)

    def code_loss(self, pred, target, valid) -> torch.Tensor:
        err = (pred - target).abs() if self.cfg['loss']['decoded_loss'] == 'l1' \
            else (pred - target) ** 2
        return masked_mean(err, valid)


def _code3(batch) -> torch.Tensor:
    return batch['depth_code'].expand(-1, 3, -1, -1)  # [B, 3, H, W], the VAE sees 3 channels


class AutoencoderStage(Stage):
    def trainable_modules(self):
        return [self.vae]

    def forward(self, batch, generator, progress: float):
        rgb, code, valid = batch['rgb'], batch['depth_code'], batch['valid']
        b = rgb.shape[0]
        posterior = self.vae.encode(torch.cat([rgb, _code3(batch)]))
        latent = posterior.latent_dist.sample(generator=generator)  # [2B, 4, h, w]
        recon = self.vae.decode(latent).sample  # [2B, 3, H, W]
        loss_cfg = self.cfg['loss']
        rgb_loss = (recon[:b] - rgb).abs().mean()
        depth_loss = self.code_loss(recon[b:].mean(dim=1, keepdim=True), code, valid)
        kl = posterior.latent_dist.kl().mean()
        loss = (loss_cfg['rgb_weight'] * rgb_loss + loss_cfg['depth_weight'] * depth_loss
                + loss_cfg['kl_weight'] * kl)
        return loss, {'rgb_l1': rgb_loss.detach(), 'depth_code_loss': depth_loss.detach(),
                      'kl': kl.detach()}

    @torch.no_grad()
    def fit_latent_scale(self, batches) -> float:
        """Set the VAE's scaling_factor to 1 / std of its latent means (unit-variance latents).

        SD's 0.18215 belongs to SD's VAE; a VAE trained here has its own latent spread, and the
        diffusion schedule assumes unit variance.
        """
        latents = []
        for batch in batches:
            x = torch.cat([batch['rgb'], _code3(batch)])
            latents.append(self.vae.encode(x).latent_dist.mode().float().flatten())
        scale = 1.0 / float(torch.cat(latents).std())
        self.vae.register_to_config(scaling_factor=scale)
        return scale


class DepthVAEStage(Stage):
    def trainable_modules(self):
        vae = self.vae
        return [vae.decoder] + ([vae.post_quant_conv] if vae.post_quant_conv is not None else [])

    def forward(self, batch, generator, progress: float):
        with torch.no_grad():
            latent = self.encode_mean(_code3(batch))  # [B, 4, h, w]
        std = self.cfg['loss']['latent_noise_std']
        if std > 0:
            noise = torch.randn(latent.shape, generator=generator).to(latent)
            latent = latent + std * noise
        pred = self.decode_code(latent)
        loss = self.code_loss(pred, batch['depth_code'], batch['valid'])
        return loss, {'depth_code_loss': loss.detach()}


class DepthStage(Stage):
    def trainable_modules(self):
        return [self.unet]

    def forward(self, batch, generator, progress: float):
        with torch.no_grad():
            latent_rgb = self.encode_mean(batch['rgb'])      # [B, 4, h, w]
            latent_depth = self.encode_mean(_code3(batch))   # [B, 4, h, w]
        b = latent_rgb.shape[0]
        t = torch.randint(0, NUM_TRAIN_TIMESTEPS, (b,), generator=generator)
        strength = self.noise_strength(t, progress)
        diff = self.cfg['diffusion']
        noise = pyramid_noise(latent_depth.shape, strength, diff['pyramid_levels'], generator,
                              latent_depth.device).to(latent_depth.dtype)
        t = t.to(latent_depth.device)
        noisy = add_noise(latent_depth, noise, self.alphas_cumprod, t)
        v = self.unet(torch.cat([latent_rgb, noisy], dim=1), t,
                      encoder_hidden_states=self.text.expand(b, -1, -1)).sample
        target = v_target(latent_depth, noise, self.alphas_cumprod, t)
        mask = latent_valid_mask(batch['valid'], self.vae_factor)  # [B, 1, h, w]
        loss = masked_mean((v.float() - target.float()) ** 2, mask)
        return loss, {'latent_mse': loss.detach()}

    def noise_strength(self, t: torch.Tensor, progress: float) -> torch.Tensor:
        """Pyramid-noise strength per sample [B]: annealed to 0 at t = 0 or at training's end."""
        diff = self.cfg['diffusion']
        strength = torch.full((len(t),), float(diff['pyramid_strength']))
        if diff['pyramid_anneal'] == 'timestep':
            strength = strength * t.float() / NUM_TRAIN_TIMESTEPS
        elif diff['pyramid_anneal'] == 'training':
            strength = strength * (1.0 - progress)
        return strength


class SingleStepStage(Stage):
    """With loss.teacher_weight > 0, a frozen copy of the starting UNet (the teacher) predicts
    from the image before its photometric change (`rgb_clean`, normalised as the starting
    checkpoint normalises its input) with the same noise, and the
    student's prediction from the changed image is pulled to it on every pixel: the change of
    the depth under exposure, white balance or a tone curve is what this term penalises, and
    on unchanged images it keeps the starting model's predictions where labels say nothing.
    loss.label_weight scales the label term; at 0 the stage is a pure consistency distillation:
    the starting model's depth of the unchanged image is the only target."""

    def __init__(self, model, cfg: dict):
        super().__init__(model, cfg)
        self.teacher_weight = float(cfg['loss']['teacher_weight'])
        self.label_weight = float(cfg['loss']['label_weight'])
        self.teacher = None
        if self.teacher_weight > 0:
            self.teacher = copy.deepcopy(model.unet).requires_grad_(False).eval()
            # The teacher sees images normalised as the starting checkpoint was trained to;
            # the student may train with another model.input_normalization.
            self.teacher_normalization = copy.deepcopy(model.input_normalization)

    def trainable_modules(self):
        return [self.unet]

    def predict(self, unet, rgb, noise) -> torch.Tensor:
        """The depth code of 1-step inference from `rgb` with this noise: [B, 1, H, W]."""
        b, t = rgb.shape[0], NUM_TRAIN_TIMESTEPS - 1
        with torch.no_grad():
            latent_rgb = self.encode_mean(rgb)  # [B, 4, h, w]
        timestep = torch.full((b,), t, device=latent_rgb.device, dtype=torch.long)
        v = unet(torch.cat([latent_rgb, noise], dim=1), timestep,
                 encoder_hidden_states=self.text.expand(b, -1, -1)).sample
        latent = ddim_single_step(v, noise, self.alphas_cumprod, self.final_alpha_cumprod, t)
        return self.decode_code(latent)

    def forward(self, batch, generator, progress: float):
        rgb = batch['rgb']
        b, h, w = rgb.shape[0], rgb.shape[2] // self.vae_factor, rgb.shape[3] // self.vae_factor
        # 1-step inference starts from pure Gaussian noise at t = 999: train on exactly that.
        noise = torch.randn((b, self.vae.config.latent_channels, h, w),
                            generator=generator).to(rgb)
        pred = self.predict(self.unet, rgb, noise).float()
        label_loss = self.code_loss(pred, batch['depth_code'], batch['valid'])
        logs = {'depth_code_loss': label_loss.detach()}
        loss = self.label_weight * label_loss
        if self.teacher is not None:
            with torch.no_grad():
                clean = normalize_exposure(batch['rgb_clean'], self.teacher_normalization)
                target = self.predict(self.teacher, clean, noise).float()
            per_sample = (pred - target).abs().mean(dim=(1, 2, 3))            # [B]
            weight = batch['teacher'].reshape(-1).to(per_sample)
            teacher_loss = (per_sample * weight).sum() / weight.sum().clamp(min=1.0)
            loss = loss + self.teacher_weight * teacher_loss
            logs['teacher_loss'] = teacher_loss.detach()
        return loss, logs


STAGE_CLASSES = {
    'autoencoder': AutoencoderStage,
    'depth_vae': DepthVAEStage,
    'depth': DepthStage,
    'single_step': SingleStepStage,
}


def build_stage(model, cfg: dict) -> Stage:
    return STAGE_CLASSES[cfg['stage']](model, cfg)
