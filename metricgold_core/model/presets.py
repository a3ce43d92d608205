"""Model shapes: the Stable Diffusion 2 architecture and tiny versions of it for tests and CPU.

Each preset is plain data: the diffusers configs of the UNet and the VAE, the scheduler config and
the shape of the empty-text embedding. `sd2` has the shapes of stabilityai/stable-diffusion-2
(UNet widened to 8 input channels); `tiny` is the same architecture with a few million parameters.
"""
from __future__ import annotations

import copy

# DDIM with v-prediction and trailing spacing: t = 999 for one step; 999, 499 for two.
SCHEDULER_CONFIG = {
    'num_train_timesteps': 1000,
    'beta_start': 0.00085,
    'beta_end': 0.012,
    'beta_schedule': 'scaled_linear',
    'clip_sample': False,
    'set_alpha_to_one': False,
    'steps_offset': 1,
    'prediction_type': 'v_prediction',
    'timestep_spacing': 'trailing',
}

_SD2_UNET = {
    'sample_size': 96,
    'in_channels': 8,
    'out_channels': 4,
    'down_block_types': ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D',
                         'CrossAttnDownBlock2D', 'DownBlock2D'],
    'up_block_types': ['UpBlock2D', 'CrossAttnUpBlock2D', 'CrossAttnUpBlock2D',
                       'CrossAttnUpBlock2D'],
    'block_out_channels': [320, 640, 1280, 1280],
    'layers_per_block': 2,
    'attention_head_dim': [5, 10, 20, 20],
    'cross_attention_dim': 1024,
    'use_linear_projection': True,
    'norm_num_groups': 32,
}

_SD2_VAE = {
    'in_channels': 3,
    'out_channels': 3,
    'down_block_types': ['DownEncoderBlock2D'] * 4,
    'up_block_types': ['UpDecoderBlock2D'] * 4,
    'block_out_channels': [128, 256, 512, 512],
    'layers_per_block': 2,
    'latent_channels': 4,
    'norm_num_groups': 32,
    'sample_size': 768,
    'scaling_factor': 0.18215,
}

_TINY_UNET = {
    'sample_size': 32,
    'in_channels': 8,
    'out_channels': 4,
    'down_block_types': ['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
    'up_block_types': ['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
    'block_out_channels': [32, 64, 128],
    'layers_per_block': 1,
    'attention_head_dim': 8,
    'cross_attention_dim': 64,
    'use_linear_projection': True,
    'norm_num_groups': 8,
}

# Same 8x down-sampling as SD's VAE (4 blocks), narrow channels.
_TINY_VAE = {
    'in_channels': 3,
    'out_channels': 3,
    'down_block_types': ['DownEncoderBlock2D'] * 4,
    'up_block_types': ['UpDecoderBlock2D'] * 4,
    'block_out_channels': [16, 32, 64, 64],
    'layers_per_block': 1,
    'latent_channels': 4,
    'norm_num_groups': 8,
    'sample_size': 256,
    'scaling_factor': 0.18215,
}

PRESETS = {
    'sd2': {'unet': _SD2_UNET, 'vae': _SD2_VAE, 'text_tokens': 2,
            'processing_resolution': 768},
    'tiny': {'unet': _TINY_UNET, 'vae': _TINY_VAE, 'text_tokens': 2,
             'processing_resolution': 256},
}


def get_preset(name: str) -> dict:
    """A deep copy of the named preset (so callers may edit it)."""
    if name not in PRESETS:
        raise ValueError(f'`preset` must be one of {sorted(PRESETS)}, got {name!r}.')
    return copy.deepcopy(PRESETS[name])
