"""Photometric changes of a camera image: what exposure, gain, white balance, tone curves and
the sensor do to the same scene. Used to train depth that does not follow them (random
augmentation of the input image only; labels unchanged) and to measure that it does not
(scripts/photometric_robustness.py applies each change alone, at fixed sizes).

Images are uint8 RGB (H, W, 3). Exposure and white balance act in linear light (the display
values are decoded with a 2.2 gamma, scaled, re-encoded and clipped, so over-exposure clips
highlights as a camera does); gamma and contrast act on the display values.
"""
from __future__ import annotations

import numpy as np

DISPLAY_GAMMA = 2.2
_TO_LINEAR = (np.arange(256, dtype=np.float32) / 255.0) ** DISPLAY_GAMMA


def _to_u8(display: np.ndarray) -> np.ndarray:
    return np.clip(display * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


def _from_linear(linear: np.ndarray) -> np.ndarray:
    return _to_u8(np.clip(linear, 0.0, 1.0) ** (1.0 / DISPLAY_GAMMA))


def exposure(rgb: np.ndarray, gain: float) -> np.ndarray:
    """Exposure time or analogue gain x `gain`: linear light scaled, highlights clipped."""
    return _from_linear(_TO_LINEAR[rgb] * np.float32(gain))


def white_balance(rgb: np.ndarray, gains) -> np.ndarray:
    """Per-channel gains (r, g, b) in linear light, as a white-balance change."""
    return _from_linear(_TO_LINEAR[rgb] * np.asarray(gains, np.float32))


def gamma(rgb: np.ndarray, g: float) -> np.ndarray:
    """Tone curve v ** g on display values in [0, 1] (g < 1 brightens the shadows)."""
    lut = _to_u8((np.arange(256, dtype=np.float32) / 255.0) ** np.float32(g))
    return lut[rgb]


def contrast(rgb: np.ndarray, c: float) -> np.ndarray:
    """Display values stretched by `c` around the image's mean grey."""
    x = rgb.astype(np.float32) / 255.0
    m = x.mean()
    return _to_u8((x - m) * np.float32(c) + m)


def yuv_range_swap(rgb: np.ndarray) -> np.ndarray:
    """A frame whose YUV was decoded with the wrong range convention (limited 16-235 read as
    full range): contrast shrinks by 219/255 (~14 %) around grey 16."""
    x = rgb.astype(np.float32)
    return _to_u8((16.0 + x * (219.0 / 255.0)) / 255.0)


def vignetting_falloff(height: int, width: int, strength: float) -> np.ndarray:
    """(H, W, 1) linear-light factor of vignetting: 1 at the centre, 1 - `strength` in the
    corners."""
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    return (1.0 - np.float32(strength) * 0.5 * (x * x + y * y))[..., None]


def vignetting(rgb: np.ndarray, strength: float) -> np.ndarray:
    """Linear light darkened towards the corners by up to `strength` (0 = none)."""
    return _from_linear(_TO_LINEAR[rgb] * vignetting_falloff(*rgb.shape[:2], strength))


def sensor_noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise of `sigma` grey levels on every value."""
    noise = rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(sigma)
    return np.clip(rgb.astype(np.float32) + noise + 0.5, 0.0, 255.0).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encoded and decoded as JPEG at `quality` (OpenCV)."""
    import cv2
    ok, buf = cv2.imencode('.jpg', np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError('OpenCV could not encode the JPEG.')
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy()


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of `sigma` px (defocus, motion), OpenCV."""
    import cv2
    return cv2.GaussianBlur(rgb, (0, 0), float(sigma))


# Training augmentation: each change is applied with probability AUGMENT_P, parameters drawn
# from these ranges (wider than the benchmark's, so the benchmark's changes lie inside them).
AUGMENT_P = 0.7
GAIN_RANGE = (0.4, 2.2)             # exposure / gain, log-uniform
WB_RANGE = (0.75, 1.33)             # red and blue gains relative to green, log-uniform
GAMMA_RANGE = (0.65, 1.5)           # tone curve exponent, log-uniform
CONTRAST_RANGE = (0.65, 1.35)
VIGNETTING_MAX = 0.5
NOISE_MAX = 6.0                     # grey levels


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_photometric(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random camera-like change of `rgb`: linear-light gain and white balance, vignetting,
    a tone curve, contrast and sensor noise, each with probability AUGMENT_P; deterministic in
    the generator's state."""
    linear = _TO_LINEAR[rgb]
    changed = False
    if rng.random() < AUGMENT_P:
        linear = linear * np.float32(_log_uniform(rng, *GAIN_RANGE))
        changed = True
    if rng.random() < AUGMENT_P:
        gains = [_log_uniform(rng, *WB_RANGE), 1.0, _log_uniform(rng, *WB_RANGE)]
        linear = linear * np.asarray(gains, np.float32)
        changed = True
    if rng.random() < AUGMENT_P * 0.5:
        linear = linear * vignetting_falloff(*rgb.shape[:2], rng.uniform(0.0, VIGNETTING_MAX))
        changed = True
    out = _from_linear(linear) if changed else rgb
    if rng.random() < AUGMENT_P:
        out = gamma(out, _log_uniform(rng, *GAMMA_RANGE))
    if rng.random() < AUGMENT_P:
        out = contrast(out, float(rng.uniform(*CONTRAST_RANGE)))
    if rng.random() < AUGMENT_P * 0.5:
        out = sensor_noise(out, float(rng.uniform(0.0, NOISE_MAX)), rng)
    return out
