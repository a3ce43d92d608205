"""Image <-> tensor conversions for the pipeline: normalise, resize, pad, and back.

Resizing and padding follow the diffusers Marigold image processor (bilinear with antialias to
the processing resolution, replicate-padding to a multiple of the VAE factor, bilinear without
antialias back to the input size) so predictions match diffusers on the same weights.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def check_rgb(image) -> np.ndarray:
    """Validate an RGB uint8 image (H, W, 3) or batch (B, H, W, 3); returns a 4-D array."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError('`image` must be a numpy array of uint8 RGB, '
                         f'got {type(image).__name__}.')
    if image.dtype != np.uint8:
        raise ValueError(f'`image` must have dtype uint8 (RGB 0..255), got {image.dtype}.')
    if image.ndim == 3:
        image = image[None]
    if image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError('`image` must have shape (H, W, 3) or (B, H, W, 3), '
                         f'got {tuple(image.shape)}.')
    if image.shape[1] < 8 or image.shape[2] < 8:
        raise ValueError(f'`image` must be at least 8x8 pixels, got {image.shape[1]}x'
                         f'{image.shape[2]}.')
    return image


def processing_size(height: int, width: int, processing_resolution: int) -> tuple[int, int]:
    """(h, w) the image is resized to: long side = processing_resolution (0 = native)."""
    if not processing_resolution:
        return height, width
    long_side = max(height, width)
    new_h = height * processing_resolution // long_side
    new_w = width * processing_resolution // long_side
    if new_h == 0 or new_w == 0:
        raise ValueError(f'extreme aspect ratio {width}x{height} for processing resolution '
                         f'{processing_resolution}.')
    return new_h, new_w


def normalize_exposure(x: torch.Tensor, normalization: dict | None) -> torch.Tensor:
    """Each image brought to one mean grey level by a single gain: [..., 3, H, W] in [-1, 1].

    `normalization` is the checkpoint's {'mean': m} (the target mean of all channels, in
    [-1, 1] units; None: x unchanged). An exposure or gain change multiplies the display values
    by one factor (linear light x g is display x g^(1/2.2)), so the gain that brings the mean
    to m undoes it exactly, up to clipped highlights; values are clipped to [-1, 1] again, as
    the camera clips. Colour balance, contrast and tone curves are kept (they carry depth cues
    the model uses: standardising each channel's mean and spread cost 0.23 -> 0.41 validation
    AbsRel, one gain for all channels 0.23 -> 0.24, untrained); robustness to those changes is
    trained (data.photometric). With {'mean': m, 'spread': s} the image's standard deviation
    (over all pixels and channels) is then brought to s around its mean by one factor for all
    channels, which undoes contrast changes and most of a tone curve's and keeps colour ratios.
    With {'white_balance': w} (0 < w <= 1), first each channel is multiplied by
    (mean of the channel means / its mean) ** w: the grey-world white balance at strength w. A
    white-balance change multiplies each channel by one factor (in linear light, so in display
    values too), which w = 1 undoes up to clipping. Measured on the packaged model v3, not
    trained with it (w = 1; scripts/photometric_robustness.py and 64 held-out scenes): depth
    moved 0.032 -> 0.002 under R x1.15, B x0.85, but held-out AbsRel went 0.254 -> 0.288 and
    close range 0.91 -> 1.30 (a close view of one coloured surface is pushed towards grey), so
    v3 ships without it: a lever for a fine-tune that trains with it. Gains are capped to
    [1 / MAX_BALANCE_GAIN, MAX_BALANCE_GAIN].
    Statistics over the image at the size the network sees, identically in training and
    inference.
    """
    if not normalization:
        return x
    y = (x + 1.0) * 0.5
    balance = float(normalization.get('white_balance') or 0.0)
    if balance > 0:
        channel = y.mean(dim=(-2, -1), keepdim=True).clamp_min(1e-3)
        grey = channel.mean(dim=-3, keepdim=True)
        y = (y * ((grey / channel) ** balance).clamp(1.0 / MAX_BALANCE_GAIN, MAX_BALANCE_GAIN)
             ).clamp(0.0, 1.0)
    target = (float(normalization['mean']) + 1.0) * 0.5
    mean = y.mean(dim=(-3, -2, -1), keepdim=True)
    gain = (target / mean.clamp_min(1e-3)).clamp(1.0 / MAX_EXPOSURE_GAIN, MAX_EXPOSURE_GAIN)
    y = (y * gain).clamp(0.0, 1.0)
    if normalization.get('spread') is not None:
        spread = float(normalization['spread']) * 0.5
        mean = y.mean(dim=(-3, -2, -1), keepdim=True)
        std = y.std(dim=(-3, -2, -1), keepdim=True).clamp_min(1e-3)
        factor = (spread / std).clamp(1.0 / MAX_EXPOSURE_GAIN, MAX_EXPOSURE_GAIN)
        y = (mean + (y - mean) * factor).clamp(0.0, 1.0)
    return y * 2.0 - 1.0


MAX_EXPOSURE_GAIN = 8.0   # a black frame (covered lens) is not amplified into noise beyond this
MAX_BALANCE_GAIN = 2.0    # a scene of one colour (a red wall) is not turned grey beyond this


def to_model_input(image_u8: np.ndarray, processing_resolution: int, align: int,
                   device, dtype, normalization: dict | None = None
                   ) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 (B, H, W, 3) -> float [B, 3, PH, PW] in [-1, 1], padded to `align`; and padding.

    `image_u8` is a numpy array or a uint8 tensor already on `device` (the pipeline's upload).
    With the checkpoint's input `normalization`, the exposure is normalised after the resize
    (`normalize_exposure`)."""
    if isinstance(image_u8, torch.Tensor):
        x = image_u8.to(device)
    else:
        pixels = np.ascontiguousarray(image_u8)
        if not pixels.flags.writeable:  # a view of a ROS message: torch wants writable memory
            pixels = pixels.copy()
        x = torch.from_numpy(pixels).to(device)
    x = x.permute(0, 3, 1, 2).to(dtype=torch.float32) / 255.0  # [B, 3, H, W]
    x = x * 2.0 - 1.0
    h, w = x.shape[-2:]
    new_h, new_w = processing_size(h, w, processing_resolution)
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, (new_h, new_w), mode='bilinear', antialias=True)
    x = normalize_exposure(x, normalization)
    pad_h, pad_w = -new_h % align, -new_w % align
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
    return x.to(dtype=dtype), (pad_h, pad_w)


UPSAMPLING = ('bilinear', 'guided')
# Guided upsampling: window radius at the processing resolution and the regulariser (in
# squared [0, 1] units of the normalised map); measured on held-out procedural scenes.
GUIDED_RADIUS = 8
GUIDED_EPS = 1e-3


def from_model_output(pred: torch.Tensor, padding: tuple[int, int],
                      size_hw: tuple[int, int] | None, upsampling: str = 'bilinear',
                      guide_u8: np.ndarray | None = None) -> torch.Tensor:
    """[B, 1, PH, PW] -> unpadded and (if size_hw) resized to [B, 1, H, W].

    `upsampling` 'guided' (needs `guide_u8`, the input RGB (B, H, W, 3)) puts the depth edges
    on the full-resolution image's edges (`guided_upsample`); 'bilinear' blurs them.
    """
    pad_h, pad_w = padding
    pred = pred[:, :, :pred.shape[2] - pad_h, :pred.shape[3] - pad_w]
    if size_hw is None or tuple(pred.shape[-2:]) == tuple(size_hw):
        return pred
    if upsampling == 'guided':
        return guided_upsample(pred, grey_guide(guide_u8), GUIDED_RADIUS, GUIDED_EPS)
    return F.interpolate(pred, size_hw, mode='bilinear', antialias=False)


def grey_guide(image_u8: np.ndarray) -> torch.Tensor:
    """uint8 RGB (B, H, W, 3) -> luma [B, 1, H, W] float32 in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(image_u8)).float()
    luma = x @ torch.tensor([0.299, 0.587, 0.114])  # [B, H, W]
    return (luma / 255.0)[:, None]


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided_upsample(low: torch.Tensor, guide: torch.Tensor, radius: int = GUIDED_RADIUS,
                    eps: float = GUIDED_EPS) -> torch.Tensor:
    """Upsample `low` [B, 1, h, w] to the size of `guide` [B, 1, H, W] with edges from guide.

    The fast guided filter (He & Sun 2015): per-window linear models low ~ a * guide + b are
    fitted at low resolution, their coefficients upsampled bilinearly and applied to the
    full-resolution guide, so a depth step lands on the image edge it belongs to instead of
    being smeared over the upsampling factor.
    """
    h, w = low.shape[-2:]
    guide = guide.to(low)
    guide_low = F.interpolate(guide, (h, w), mode='bilinear', antialias=True)
    mean_i, mean_p = _box(guide_low, radius), _box(low, radius)
    cov = _box(guide_low * low, radius) - mean_i * mean_p
    var = _box(guide_low * guide_low, radius) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    size = tuple(guide.shape[-2:])
    a = F.interpolate(_box(a, radius), size, mode='bilinear', antialias=False)
    b = F.interpolate(_box(b, radius), size, mode='bilinear', antialias=False)
    return (a * guide + b).clamp(0.0, 1.0)
