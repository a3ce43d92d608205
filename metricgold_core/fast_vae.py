"""Exact, faster VAE paths for depth inference (same maths as diffusers, less compute).

Three rewrites, each an identity of linear algebra, so outputs match the plain diffusers calls up
to float rounding:

* encode: only the latent mean is used (`latent_dist.mode()`), and `quant_conv` is a 1x1 conv
  after `conv_out`; both fold into one 3x3 conv that emits just the 4 mean channels, pre-scaled
  by the VAE scaling factor.
* decode: depth is the mean of the 3 decoded channels; the mean of a conv's outputs is one conv
  with the mean kernel, so `conv_out` becomes a 1-channel conv.
* up-sampling: nearest 2x up-sampling followed by a 3x3 conv equals four 2x2 convs on the
  low-resolution map, one per output phase (sub-pixel decomposition): 16 instead of 36
  multiply-adds per low-resolution pixel and channel pair, and the 4x up-sampled map is never
  materialised.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fold_encoder_mean(vae) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [4, C, 3, 3] and bias [4] of encoder.conv_out followed by quant_conv's mean rows."""
    conv = vae.encoder.conv_out
    latent = vae.config.latent_channels
    scale = float(vae.config.scaling_factor)
    w, b = conv.weight.detach(), conv.bias.detach()  # [2L, C, 3, 3], [2L]
    if getattr(vae, 'quant_conv', None) is not None:
        q_w = vae.quant_conv.weight.detach()[:latent, :, 0, 0]  # [L, 2L]
        q_b = vae.quant_conv.bias.detach()[:latent]
        w = torch.einsum('lk,kchw->lchw', q_w, w)
        b = q_w @ b + q_b
    else:
        w, b = w[:latent], b[:latent]
    return (w * scale).contiguous(), (b * scale).contiguous()


def fold_decoder_mean(vae) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [1, C, 3, 3] and bias [1] giving the mean of decoder.conv_out's channels."""
    conv = vae.decoder.conv_out
    return (conv.weight.detach().mean(dim=0, keepdim=True).contiguous(),
            conv.bias.detach().mean(dim=0, keepdim=True).contiguous())


def subpixel_upsample_weights(conv: torch.nn.Conv2d) -> list[torch.Tensor]:
    """Four 2x2 kernels, phase order (0,0), (0,1), (1,0), (1,1), equal to up2x-nearest + conv."""
    w = conv.weight.detach()  # [O, I, 3, 3]
    # Rows of the 3x3 kernel that land on the low-res rows (-1, 0) for phase 0 and (0, +1) for 1.
    rows = [torch.stack([w[:, :, 0], w[:, :, 1] + w[:, :, 2]], dim=2),
            torch.stack([w[:, :, 0] + w[:, :, 1], w[:, :, 2]], dim=2)]  # [O, I, 2, 3]
    out = []
    for r in rows:
        for cols in ((r[..., 0], r[..., 1] + r[..., 2]), (r[..., 0] + r[..., 1], r[..., 2])):
            out.append(torch.stack(cols, dim=-1).contiguous())  # [O, I, 2, 2]
    return out


class FastVAE(torch.nn.Module):
    """Depth-inference view of an AutoencoderKL: `encode_mean` and `decode_mean` (exact)."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)
        enc_w, enc_b = fold_encoder_mean(vae)
        self.register_buffer('enc_w', enc_w)
        self.register_buffer('enc_b', enc_b)
        dec_w, dec_b = fold_decoder_mean(vae)
        self.register_buffer('dec_w', dec_w)
        self.register_buffer('dec_b', dec_b)
        self.up_weights = torch.nn.ParameterList()
        self._up_index = {}
        for i, block in enumerate(vae.decoder.up_blocks):
            if block.upsamplers:
                up = block.upsamplers[0]
                if not _is_plain_nearest_upsample(up):
                    continue
                self._up_index[i] = len(self.up_weights)
                for k in subpixel_upsample_weights(up.conv):
                    self.up_weights.append(torch.nn.Parameter(k, requires_grad=False))
                self.up_weights.append(torch.nn.Parameter(up.conv.bias.detach().clone(),
                                                          requires_grad=False))

    def encode_mean(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> scaled latent mean [B, 4, H/8, W/8]."""
        enc = self.vae.encoder
        x = enc.conv_in(image)
        for block in enc.down_blocks:
            x = block(x)
        x = enc.mid_block(x)
        x = enc.conv_act(enc.conv_norm_out(x))
        return F.conv2d(x, self.enc_w, self.enc_b, padding=1)

    def decode_mean(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latent [B, 4, h, w] -> mean of the decoded channels [B, 1, 8h, 8w]."""
        vae = self.vae
        z = latent / self.scaling_factor
        if getattr(vae, 'post_quant_conv', None) is not None:
            z = vae.post_quant_conv(z)
        dec = vae.decoder
        x = dec.conv_in(z)
        x = dec.mid_block(x, None)
        for i, block in enumerate(dec.up_blocks):
            for resnet in block.resnets:
                x = resnet(x, None)
            if block.upsamplers:
                if i in self._up_index:
                    x = self._subpixel_up(x, self._up_index[i])
                else:
                    x = block.upsamplers[0](x)
        x = dec.conv_act(dec.conv_norm_out(x))
        return F.conv2d(x, self.dec_w, self.dec_b, padding=1)

    def _subpixel_up(self, x: torch.Tensor, start: int) -> torch.Tensor:
        kernels = [self.up_weights[start + k] for k in range(4)]
        bias = self.up_weights[start + 4]
        b, _, h, w = x.shape
        xp = F.pad(x, (1, 1, 1, 1))  # zero padding, as the 3x3 conv on the up-sampled map
        phases = []
        for a in (0, 1):
            for c in (0, 1):
                phases.append(F.conv2d(xp[:, :, a:a + h + 1, c:c + w + 1], kernels[2 * a + c],
                                       bias))  # [B, O, h, w]
        o = phases[0].shape[1]
        y = torch.stack(phases, dim=2).view(b, o, 2, 2, h, w)  # [B, O, a, c, h, w]
        return y.permute(0, 1, 4, 2, 5, 3).reshape(b, o, 2 * h, 2 * w)


def _is_plain_nearest_upsample(up) -> bool:
    return (getattr(up, 'use_conv', False) and not getattr(up, 'use_conv_transpose', False)
            and getattr(up, 'interpolate', True) and getattr(up, 'norm', None) is None
            and isinstance(getattr(up, 'conv', None), torch.nn.Conv2d)
            and up.conv.kernel_size == (3, 3) and up.conv.padding == (1, 1))
