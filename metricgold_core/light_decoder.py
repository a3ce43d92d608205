"""The `fast` decoder: the VAE decoder cut before its full-resolution block, plus a small head.

The VAE decoder spends about half its time at full resolution (the last up-sampling conv and the
last block of residual convs). The light decoder stops one block earlier, at half resolution,
and a learned head (GroupNorm, SiLU, 3x3 conv to one channel) predicts the mean decoded depth
code there; a bilinear 2x up-sampling gives the full-resolution map. The head is distilled from
the exact decoder on the model's own 1-step latents (`training/distill_light_decoder.py`) and
stored beside the checkpoint's weights as `light_decoder.safetensors`.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

WEIGHTS_FILE = 'light_decoder.safetensors'


class LightDepthHead(torch.nn.Module):
    """GroupNorm + SiLU + 3x3 conv: decoder features [B, C, h, w] -> depth code [B, 1, h, w]."""

    def __init__(self, channels: int, groups: int, cut_block: int):
        super().__init__()
        self.cut_block = int(cut_block)
        self.norm = torch.nn.GroupNorm(groups, channels, eps=1e-6)
        self.conv = torch.nn.Conv2d(channels, 1, 3, padding=1)

    def config(self) -> dict:
        return {'channels': self.conv.in_channels, 'groups': self.norm.num_groups,
                'cut_block': self.cut_block}

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(F.silu(self.norm(features)))

    @classmethod
    def for_vae(cls, vae) -> 'LightDepthHead':
        """A head cut before the decoder's last up-sampling (the half-resolution features)."""
        blocks = vae.decoder.up_blocks
        cut = max(i for i, block in enumerate(blocks) if block.upsamplers)
        channels = blocks[cut].resnets[-1].out_channels
        return cls(channels, vae.config.norm_num_groups, cut)

    def save(self, folder: Path) -> None:
        import json

        from safetensors.torch import save_file
        from .io_utils import atomic_path
        with atomic_path(Path(folder) / WEIGHTS_FILE) as tmp:
            save_file({k: v.detach().float().cpu().contiguous()
                       for k, v in self.state_dict().items()}, str(tmp),
                      metadata={'config': json.dumps(self.config())})

    @classmethod
    def load(cls, folder: Path) -> 'LightDepthHead | None':
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
            from .model import CheckpointError
            raise CheckpointError(f'{path}: cannot read the light decoder ({exc}).') from exc
        return head.eval()


def light_decode_mean(fast_decoder, head: LightDepthHead, latent: torch.Tensor) -> torch.Tensor:
    """Scaled latent [B, 4, h, w] -> approximate mean decoded code [B, 1, f h, f w].

    `fast_decoder` is the FastVAEDecoder of the model's VAE; f is the VAE's down-sampling factor.
    """
    code = head(fast_decoder.features(latent, head.cut_block))  # [B, 1, f h / 2, f w / 2]
    factor = 2 ** sum(1 for block in fast_decoder.vae.decoder.up_blocks if block.upsamplers)
    size = (latent.shape[2] * factor, latent.shape[3] * factor)
    return F.interpolate(code, size=size, mode='bilinear', align_corners=False)
