"""The light decoder of `fast` mode: the VAE decoder cut after its mid block, plus a small head.

The VAE decoder spends most of its time up-sampling a latent into three identical full-resolution
channels. The light decoder keeps only its latent-resolution part (conv_in and the mid block,
whose attention carries the image-wide context) and replaces the up-sampling path by two 3x3
convs whose last layer predicts the f x f code values of each latent pixel's block (f = the VAE's
down-sampling factor, 8), put in place by a pixel shuffle: a few milliseconds at 480x640 instead
of hundreds.

The head is distilled from the exact decoder on the model's own 1-step latents
(`metricgold distill`, metricgold_core/training/distill.py) and stored beside the checkpoint's
weights as `light_decoder.safetensors`.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint_format import CheckpointError

WEIGHTS_FILE = 'light_decoder.safetensors'


class LightDecoderHead(torch.nn.Module):
    """Decoder mid-block features [B, C, h, w] -> depth code [B, 1, f h, f w] (the decoded
    channels' mean)."""

    def __init__(self, in_channels: int, channels: int = 32, factor: int = 8):
        super().__init__()
        if min(in_channels, channels, factor) < 1:
            raise ValueError('in_channels, channels and factor must be >= 1.')
        self.factor = int(factor)
        self.conv_in = torch.nn.Conv2d(in_channels, channels, 3, padding=1)
        self.conv_out = torch.nn.Conv2d(channels, self.factor ** 2, 3, padding=1)

    def config(self) -> dict:
        return {'in_channels': self.conv_in.in_channels, 'channels': self.conv_in.out_channels,
                'factor': self.factor}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv_out(F.silu(self.conv_in(features))), self.factor)

    @classmethod
    def for_vae(cls, vae, channels: int = 32) -> 'LightDecoderHead':
        """A head for this VAE's mid-block width and down-sampling factor."""
        factor = 2 ** sum(1 for block in vae.decoder.up_blocks if block.upsamplers)
        return cls(vae.decoder.mid_block.resnets[-1].out_channels, channels, factor)

    def save(self, folder: Path) -> None:
        import json

        from safetensors.torch import save_file
        from ..io_utils import atomic_path
        with atomic_path(Path(folder) / WEIGHTS_FILE) as tmp:
            save_file({k: v.detach().float().cpu().contiguous()
                       for k, v in self.state_dict().items()}, str(tmp),
                      metadata={'config': json.dumps(self.config())})

    @classmethod
    def load(cls, folder: Path) -> 'LightDecoderHead | None':
        """The head stored in a checkpoint folder, or None if it has none."""
        import json

        from safetensors import safe_open
        from safetensors.torch import load_file
        path = Path(folder) / WEIGHTS_FILE
        if not path.exists():
            return None
        try:
            with safe_open(str(path), 'pt') as f:
                config = json.loads(f.metadata()['config'])
            head = cls(**config)
            head.load_state_dict(load_file(str(path)))
        except Exception as exc:  # noqa: BLE001 - any damage: say which file
            raise CheckpointError(f'{path}: cannot read the light decoder ({exc}).') from exc
        return head.eval()
