"""Log-depth codec: metres <-> code in [-1, 1] (docs/CORE.md "Log-depth codec", paper equation 3).

    n    = log(clip(d, d_min, d_max) / d_min) / log(d_max / d_min)   in [0, 1]
    code = 2 n - 1                                                   in [-1, 1]

Invalid depths (0, negative, NaN, inf) are reported by the validity mask and never clipped into
range: their code is 0 (mid-range) so they do not bias a masked loss, and a caller must mask them.
"""
from __future__ import annotations

import math

import numpy as np
import torch

DEFAULT_D_MIN_M = 0.1
DEFAULT_D_MAX_M = 100.0


def _is_torch(x) -> bool:
    return isinstance(x, torch.Tensor)


class LogDepthCodec:
    """Maps metric depth to a log-spaced code in [-1, 1] and back; numpy or torch, any shape."""

    def __init__(self, d_min: float = DEFAULT_D_MIN_M, d_max: float = DEFAULT_D_MAX_M):
        d_min = float(d_min)
        d_max = float(d_max)
        if not (math.isfinite(d_min) and d_min > 0):
            raise ValueError(f'`d_min` must be a finite depth > 0 m, got {d_min}.')
        if not (math.isfinite(d_max) and d_max > d_min):
            raise ValueError(f'`d_max` must be finite and > `d_min` ({d_min} m), got {d_max}.')
        self.d_min = d_min
        self.d_max = d_max
        self._log_d_min = math.log(d_min)
        self._log_range = math.log(d_max / d_min)

    def __repr__(self) -> str:
        return f'LogDepthCodec(d_min={self.d_min}, d_max={self.d_max})'

    def __eq__(self, other) -> bool:
        return (isinstance(other, LogDepthCodec)
                and (self.d_min, self.d_max) == (other.d_min, other.d_max))

    def to_dict(self) -> dict:
        return {'type': 'log', 'd_min': self.d_min, 'd_max': self.d_max}

    @classmethod
    def from_dict(cls, data: dict) -> 'LogDepthCodec':
        if not isinstance(data, dict) or data.get('type') != 'log':
            raise ValueError('codec must be {"type": "log", "d_min": .., "d_max": ..}, '
                             f'got {data!r}.')
        return cls(data['d_min'], data['d_max'])

    @staticmethod
    def valid_mask(depth_m):
        """True where depth is a usable measurement: finite and > 0."""
        if _is_torch(depth_m):
            return torch.isfinite(depth_m) & (depth_m > 0)
        depth_m = np.asarray(depth_m)
        with np.errstate(invalid='ignore'):
            return np.isfinite(depth_m) & (depth_m > 0)

    def depth_to_normalized(self, depth_m):
        """Depth (metres) -> n in [0, 1]; invalid pixels give 0.5. Returns (n, valid)."""
        valid = self.valid_mask(depth_m)
        if _is_torch(depth_m):
            safe = torch.where(valid, depth_m, torch.full_like(depth_m, self.d_min))
            safe = safe.clamp(self.d_min, self.d_max)
            n = (torch.log(safe) - self._log_d_min) / self._log_range
            n = torch.where(valid, n, torch.full_like(n, 0.5))
            return n, valid
        depth_m = np.asarray(depth_m)
        dtype = depth_m.dtype if np.issubdtype(depth_m.dtype, np.floating) else np.float32
        safe = np.where(valid, depth_m, self.d_min).astype(dtype, copy=False)
        safe = np.clip(safe, self.d_min, self.d_max)
        n = (np.log(safe) - self._log_d_min) / self._log_range
        n = np.where(valid, n, 0.5).astype(dtype, copy=False)
        return n, valid

    def normalized_to_depth(self, n):
        """n in [0, 1] (clipped) -> depth in metres; NaN stays NaN."""
        if _is_torch(n):
            n = n.clamp(0.0, 1.0)
            return torch.exp(n * self._log_range + self._log_d_min)
        n = np.clip(np.asarray(n), 0.0, 1.0)
        return np.exp(n * self._log_range + self._log_d_min).astype(
            n.dtype if np.issubdtype(n.dtype, np.floating) else np.float32, copy=False)

    def encode(self, depth_m):
        """Depth (metres) -> (code in [-1, 1], valid mask). Invalid pixels get code 0."""
        n, valid = self.depth_to_normalized(depth_m)
        return n * 2.0 - 1.0, valid

    def decode(self, code):
        """Code in [-1, 1] (clipped) -> depth in metres."""
        return self.normalized_to_depth((code + 1.0) * 0.5)
