"""Exact rewrites of the VAE passes for depth inference (diffusers' maths with less compute),
and the pooled attention that the approximate `fast` mode passes in (kv_pool > 1).

Up-sampling: the VAE decoder up-samples with nearest 2x interpolation followed by a 3x3 conv. That
pair is one transposed conv (stride 2, 4x4 kernel, padding 1) whose taps are sums of the 3x3 taps:
each output pixel then reads a 2x2 low-resolution neighbourhood (4 multiply-adds per channel pair
instead of 9) and the 4x larger interpolated map is never written. The result equals the diffusers
decoder up to float rounding; with channels_last it is the decoder's largest saving.

Residual blocks (no time embedding in a VAE): SiLU and the residual add run in place, the
division by an `output_scale_factor` of 1 is skipped, and a 1x1 shortcut conv on a channels_last
map runs as one matrix product (PyTorch's CPU path for that case is a slow fallback).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# 3x3 kernel rows (offsets -1, 0, +1 = index 0, 1, 2) summed by each 4-tap transposed index.
_TAPS = ((2,), (1, 2), (0, 1), (0,))


def upsample_conv_as_transposed(conv: torch.nn.Conv2d) -> torch.Tensor:
    """Transposed-conv weight [I, O, 4, 4] equal to nearest-2x up-sampling + 3x3 `conv`."""
    w = conv.weight.detach()  # [O, I, 3, 3]
    rows = torch.stack([w[:, :, list(t)].sum(dim=2) for t in _TAPS], dim=2)  # [O, I, 4, 3]
    k = torch.stack([rows[..., list(t)].sum(dim=-1) for t in _TAPS], dim=-1)  # [O, I, 4, 4]
    return k.transpose(0, 1).contiguous()


def _is_nearest_upsample_conv(up) -> bool:
    conv = getattr(up, 'conv', None)
    return (getattr(up, 'use_conv', False) and not getattr(up, 'use_conv_transpose', False)
            and getattr(up, 'interpolate', True) and getattr(up, 'norm', None) is None
            and isinstance(conv, torch.nn.Conv2d) and conv.kernel_size == (3, 3)
            and conv.padding == (1, 1) and conv.stride == (1, 1))


def _conv1x1(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    if conv.kernel_size == (1, 1) and x.is_contiguous(memory_format=torch.channels_last) \
            and x.device.type == 'cpu':
        y = F.linear(x.permute(0, 2, 3, 1), conv.weight[:, :, 0, 0], conv.bias)  # [B, H, W, O]
        return y.permute(0, 3, 1, 2)  # a channels_last view, no copy
    return conv(x)


def _is_plain_resnet(resnet) -> bool:
    return (resnet.upsample is None and resnet.downsample is None
            and resnet.time_emb_proj is None and isinstance(resnet.norm1, torch.nn.GroupNorm)
            and isinstance(resnet.nonlinearity, torch.nn.SiLU))


def resnet_forward(resnet, x: torch.Tensor) -> torch.Tensor:
    """ResnetBlock2D(x, temb=None) in inference, with less memory traffic (same maths)."""
    if torch.is_grad_enabled() or not _is_plain_resnet(resnet):
        return resnet(x, None)
    h = F.silu(resnet.norm1(x), inplace=True)
    h = resnet.conv1(h)
    h = F.silu(resnet.norm2(h), inplace=True)
    h = resnet.conv2(h)
    shortcut = _conv1x1(resnet.conv_shortcut, x) if resnet.conv_shortcut is not None else x
    h = h.add_(shortcut)
    if resnet.output_scale_factor != 1.0:
        h = h.div_(resnet.output_scale_factor)
    return h


def pooled_attention(attn, x: torch.Tensor, kv_pool: int) -> torch.Tensor:
    """The VAE's spatial self-attention with keys and values from a `kv_pool`-times smaller map.

    Every pixel still queries, but against `kv_pool`^2 times fewer tokens (2x2 average pooling
    for 2): attention cost falls by that factor. An approximation (token down-sampling of keys
    and values, as ToDo does for Stable Diffusion); `kv_pool` 1 is the exact attention.
    """
    if attn.spatial_norm is not None or attn.norm_q is not None or attn.norm_k is not None:
        raise ValueError('pooled attention supports the plain VAE attention block only.')
    b, c, height, width = x.shape
    h = attn.group_norm(x) if attn.group_norm is not None else x
    kv = F.avg_pool2d(h, kv_pool, ceil_mode=True) if kv_pool > 1 else h
    tokens = h.flatten(2).transpose(1, 2)  # [B, HW, C]
    kv_tokens = kv.flatten(2).transpose(1, 2)  # [B, hw, C]
    q, k, v = attn.to_q(tokens), attn.to_k(kv_tokens), attn.to_v(kv_tokens)
    heads = attn.heads
    q, k, v = (t.reshape(b, -1, heads, t.shape[-1] // heads).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, d]
    out = attn.to_out[0](out.transpose(1, 2).reshape(b, height * width, -1))
    out = out.transpose(1, 2).reshape(b, c, height, width)
    if attn.residual_connection:
        out = out + x
    return out / attn.rescale_output_factor


def mid_block_forward(block, x: torch.Tensor, kv_pool: int = 1) -> torch.Tensor:
    """UNetMidBlock2D(x, temb=None) with the rewritten residual blocks (`kv_pool` > 1: pooled
    attention, approximate)."""
    x = resnet_forward(block.resnets[0], x)
    for attn, resnet in zip(block.attentions, block.resnets[1:]):
        if attn is not None:
            x = attn(x, temb=None) if kv_pool == 1 else pooled_attention(attn, x, kv_pool)
        x = resnet_forward(resnet, x)
    return x


def encode_mean(vae, image: torch.Tensor, kv_pool: int = 1) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> scaled latent mean (`latent_dist.mode()`) [B, 4, H/8, W/8].

    `kv_pool` > 1 runs the mid-block attention with pooled keys and values (approximate).
    """
    enc = vae.encoder
    x = enc.conv_in(image)
    for block in enc.down_blocks:
        for resnet in block.resnets:
            x = resnet_forward(resnet, x)
        if block.downsamplers:
            x = block.downsamplers[0](x)
    x = mid_block_forward(enc.mid_block, x, kv_pool)
    x = enc.conv_out(F.silu(enc.conv_norm_out(x), inplace=True))  # [B, 2L, h, w]
    if getattr(vae, 'quant_conv', None) is not None:
        x = vae.quant_conv(x)
    return x[:, :vae.config.latent_channels] * vae.config.scaling_factor


class RewrittenVAEDecoder:
    """`decode_mean(latent)`: mean of the decoded channels, as diffusers' VAE decode (exact).

    Build it after the VAE is on its device, dtype and memory format: the kernels are derived
    from the weights as they are then.
    """

    def __init__(self, vae, memory_format=torch.contiguous_format):
        self.vae = vae
        self.scaling_factor = float(vae.config.scaling_factor)
        self.up_kernels = {}
        for i, block in enumerate(vae.decoder.up_blocks):
            if block.upsamplers and _is_nearest_upsample_conv(block.upsamplers[0]):
                kernel = upsample_conv_as_transposed(block.upsamplers[0].conv)
                self.up_kernels[i] = kernel.contiguous(memory_format=memory_format)

    def mid_features(self, latent: torch.Tensor, kv_pool: int = 1) -> torch.Tensor:
        """Decoder activations after its mid block (latent resolution); `kv_pool` > 1: pooled
        attention (approximate)."""
        vae = self.vae
        z = latent / self.scaling_factor
        if getattr(vae, 'post_quant_conv', None) is not None:
            z = vae.post_quant_conv(z)
        x = vae.decoder.conv_in(z)
        return mid_block_forward(vae.decoder.mid_block, x, kv_pool)

    def features(self, latent: torch.Tensor) -> torch.Tensor:
        """Decoder activations before its output norm and conv (full resolution)."""
        x = self.mid_features(latent)
        for i, block in enumerate(self.vae.decoder.up_blocks):
            for resnet in block.resnets:
                x = resnet_forward(resnet, x)
            if i in self.up_kernels:
                up = block.upsamplers[0]
                x = F.conv_transpose2d(x, self.up_kernels[i], up.conv.bias, stride=2, padding=1)
            elif block.upsamplers:
                x = block.upsamplers[0](x)
        return x

    def decode_mean(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latent [B, 4, h, w] -> mean of the decoded RGB channels [B, 1, 8h, 8w]."""
        dec = self.vae.decoder
        x = self.features(latent)
        x = dec.conv_out(F.silu(dec.conv_norm_out(x), inplace=True))  # [B, 3, H, W]
        return x.mean(dim=1, keepdim=True)
