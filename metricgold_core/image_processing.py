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


def to_model_input(image_u8: np.ndarray, processing_resolution: int, align: int,
                   device, dtype) -> tuple[torch.Tensor, tuple[int, int]]:
    """uint8 (B, H, W, 3) -> float [B, 3, PH, PW] in [-1, 1], padded to `align`; and padding."""
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
    pad_h, pad_w = -new_h % align, -new_w % align
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode='replicate')
    return x.to(dtype=dtype), (pad_h, pad_w)


def from_model_output(pred: torch.Tensor, padding: tuple[int, int],
                      size_hw: tuple[int, int] | None) -> torch.Tensor:
    """[B, 1, PH, PW] -> unpadded and (if size_hw) resized bilinearly to [B, 1, H, W]."""
    pad_h, pad_w = padding
    pred = pred[:, :, :pred.shape[2] - pad_h, :pred.shape[3] - pad_w]
    if size_hw is not None and tuple(pred.shape[-2:]) != tuple(size_hw):
        pred = F.interpolate(pred, size_hw, mode='bilinear', antialias=False)
    return pred
