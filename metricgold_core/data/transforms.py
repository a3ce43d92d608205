"""Training transforms on sample dicts: geometry (crop, resize, flip) that keeps K exact,
photometric jitter that never touches depth, and canonical-focal rescaling of depth labels.

A transform is a callable `(sample, rng) -> sample` (rng: numpy Generator) returning a new dict;
arrays of the input are not modified. Depth is resampled by nearest neighbour only: averaging
depth across an object edge would invent points floating between foreground and background.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from ..geometry import crop_intrinsics, flip_intrinsics_horizontal, scale_intrinsics

GEOMETRIC_KEYS = ('rgb', 'depth', 'valid')


def crop(sample: dict, top: int, left: int, height: int, width: int) -> dict:
    """The window [top:top+height, left:left+width] of every image array, K moved with it."""
    h, w = sample['depth'].shape
    if not (0 <= top and 0 <= left and top + height <= h and left + width <= w):
        raise ValueError(f'crop {height}x{width} at ({top}, {left}) does not fit a {h}x{w} image.')
    out = dict(sample)
    for key in GEOMETRIC_KEYS:
        out[key] = np.ascontiguousarray(sample[key][top:top + height, left:left + width])
    if sample.get('K') is not None:
        out['K'] = crop_intrinsics(sample['K'], top, left)
    return out


KITTI_BENCHMARK_HW = (352, 1216)


def kitti_benchmark_crop(sample: dict) -> dict:
    """The KITTI benchmark crop: the bottom 352 rows and centre 1216 columns (as Marigold trains
    and evaluates on KITTI-like data); a smaller image keeps its size on that side."""
    h, w = sample['depth'].shape
    height, width = min(KITTI_BENCHMARK_HW[0], h), min(KITTI_BENCHMARK_HW[1], w)
    return crop(sample, h - height, (w - width) // 2, height, width)


def resize(sample: dict, height: int, width: int) -> dict:
    """Resize to (height, width): RGB bilinear (antialiased), depth and mask nearest, K scaled."""
    h, w = sample['depth'].shape
    out = dict(sample)
    image = Image.fromarray(sample['rgb'])
    out['rgb'] = np.asarray(image.resize((width, height), Image.BILINEAR))
    # nearest source pixel of each target pixel centre, in the pixel-centre convention that
    # scale_intrinsics uses: source x = (x + 0.5) * w / width - 0.5
    rows = np.clip(np.floor((np.arange(height) + 0.5) * h / height), 0, h - 1).astype(np.int64)
    cols = np.clip(np.floor((np.arange(width) + 0.5) * w / width), 0, w - 1).astype(np.int64)
    out['depth'] = sample['depth'][rows[:, None], cols[None, :]]
    out['valid'] = sample['valid'][rows[:, None], cols[None, :]]
    out['K'] = scale_intrinsics(sample['K'], (h, w), (height, width))
    return out


def hflip(sample: dict) -> dict:
    """Mirror left-right; cx moves to (W - 1) - cx (the scene becomes its mirror image)."""
    out = dict(sample)
    for key in GEOMETRIC_KEYS:
        out[key] = np.ascontiguousarray(sample[key][:, ::-1])
    out['K'] = flip_intrinsics_horizontal(sample['K'], sample['depth'].shape[1])
    return out


class Compose:
    """Apply transforms in order with one numpy Generator."""

    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, sample: dict, rng: np.random.Generator | None = None) -> dict:
        rng = np.random.default_rng() if rng is None else rng
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


class Resize:
    """Resize to a fixed (height, width)."""

    def __init__(self, height: int, width: int):
        self.hw = (int(height), int(width))

    def __call__(self, sample: dict, rng=None) -> dict:
        return resize(sample, *self.hw)


class RandomResizedCrop:
    """Zoom in by a random factor in `scale` (>= 1), then take a random (height, width) window.

    The image is first resized so that the output window covers it at zoom 1 (aspect kept),
    so every output pixel comes from the source image: no padding, no invalid borders.
    """

    def __init__(self, height: int, width: int, scale=(1.0, 1.5)):
        if not 1.0 <= scale[0] <= scale[1]:
            raise ValueError(f'`scale` must satisfy 1 <= min <= max, got {scale}.')
        self.hw, self.scale = (int(height), int(width)), (float(scale[0]), float(scale[1]))

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        h, w = sample['depth'].shape
        out_h, out_w = self.hw
        zoom = max(out_h / h, out_w / w) * rng.uniform(*self.scale)
        new_h, new_w = max(out_h, int(round(h * zoom))), max(out_w, int(round(w * zoom)))
        sample = resize(sample, new_h, new_w)
        top = int(rng.integers(0, new_h - out_h + 1))
        left = int(rng.integers(0, new_w - out_w + 1))
        return crop(sample, top, left, out_h, out_w)


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        return hflip(sample) if rng.random() < self.p else sample


class ColorJitter:
    """Random brightness, contrast, saturation (multiplicative, +-amount) and gamma on RGB only."""

    def __init__(self, brightness=0.2, contrast=0.2, saturation=0.2, gamma=(0.8, 1.25)):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.gamma = gamma

    def __call__(self, sample: dict, rng: np.random.Generator) -> dict:
        x = sample['rgb'].astype(np.float32) / 255.0
        x = x * rng.uniform(1 - self.brightness, 1 + self.brightness)
        mean = x.mean()
        x = (x - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
        grey = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
        x = (x - grey) * rng.uniform(1 - self.saturation, 1 + self.saturation) + grey
        x = np.clip(x, 0.0, 1.0) ** rng.uniform(*self.gamma)
        out = dict(sample)
        out['rgb'] = (x * 255.0 + 0.5).astype(np.uint8)
        return out


class CanonicalFocal:
    """Depth labels as if seen with focal `focal_px`: d * focal_px / fx; K's focal set to match.

    Back-projected x and y stay put (x = d (u - cx) / fx is unchanged), only z is rescaled, so
    a model learns one focal length; at inference multiply by fx / focal_px
    (geometry.focal_rescale_factor). The factor applied is kept as `depth_scale`.
    """

    def __init__(self, focal_px: float):
        if not focal_px > 0:
            raise ValueError(f'`focal_px` must be > 0, got {focal_px}.')
        self.focal_px = float(focal_px)

    def __call__(self, sample: dict, rng=None) -> dict:
        fx, fy = sample['K'][0, 0], sample['K'][1, 1]
        factor = self.focal_px / fx
        out = dict(sample)
        out['depth'] = (sample['depth'] * np.float32(factor)).astype(np.float32)
        K = np.array(sample['K'], dtype=np.float64, copy=True)
        K[0, 0], K[1, 1] = self.focal_px, self.focal_px * fy / fx
        out['K'] = K
        out['depth_scale'] = sample.get('depth_scale', 1.0) * factor
        return out


class TransformedDataset:
    """A dataset whose samples pass through `transform` with a per-item, per-epoch generator.

    Item i in epoch e always sees the same random numbers (seed, e, i), so runs reproduce and
    DataLoader workers need no shared state; call `set_epoch(e)` to draw new augmentations.
    """

    def __init__(self, dataset, transform, seed: int = 0):
        self.dataset, self.transform, self.seed, self.epoch = dataset, transform, int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng((self.seed, self.epoch, int(i)))
        return self.transform(self.dataset[i], rng)
