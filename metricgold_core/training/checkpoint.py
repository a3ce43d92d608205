"""Training checkpoints: atomic, verified, pruned; plus the RNG states and EMA they hold.

A checkpoint is a directory `step_0000123/` with `state.pt` (the whole trainer state, a plain
dict of tensors and Python values, read back with `weights_only=True`) and `checkpoint.json`
(step, byte size and CRC32 of state.pt), written last. It is built under a temporary name and
renamed into place (io_utils.atomic_dir), so a crash leaves either a complete checkpoint or a
`.step_*.tmp` directory that is ignored and deleted at the next save; a checkpoint whose size
or checksum does not match is skipped with a warning.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import random
import shutil
import zlib

import numpy as np
import torch

from ..io_utils import atomic_dir, remove_temporaries

LOG = logging.getLogger(__name__)
STATE_FILE = 'state.pt'
INFO_FILE = 'checkpoint.json'
PREFIX = 'step_'


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 22), b''):
            crc = zlib.crc32(chunk, crc)
    return crc


def save_checkpoint(folder: str | os.PathLike, state: dict, keep: int) -> Path:
    """Write `state` as folder/step_NNNNNNN atomically, then keep only the newest `keep`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f'{PREFIX}{state["step"]:07d}'
    remove_temporaries(folder)  # what a killed save left (only the main process saves)
    with atomic_dir(final) as tmp:
        torch.save(state, tmp / STATE_FILE)
        info = {'step': int(state['step']), 'bytes': (tmp / STATE_FILE).stat().st_size,
                'crc32': _crc32(tmp / STATE_FILE)}
        with open(tmp / INFO_FILE, 'w', encoding='utf-8') as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(folder: str | os.PathLike) -> list[Path]:
    """Checkpoint directories in `folder`, oldest first (temporary ones excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(PREFIX)
             and p.name[len(PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


def verify_checkpoint(path: Path) -> str | None:
    """None if `path` is a complete checkpoint, else why it is not."""
    info_path, state_path = path / INFO_FILE, path / STATE_FILE
    if not info_path.is_file():
        return f'{INFO_FILE} is missing (half-written)'
    try:
        info = json.loads(info_path.read_text(encoding='utf-8'))
        expected_bytes, expected_crc = int(info['bytes']), int(info['crc32'])
    except (ValueError, KeyError, TypeError, OSError) as exc:
        return f'{INFO_FILE} is unreadable ({exc})'
    if not state_path.is_file():
        return f'{STATE_FILE} is missing'
    if state_path.stat().st_size != expected_bytes:
        return f'{STATE_FILE} has {state_path.stat().st_size} bytes, expected {expected_bytes}'
    if _crc32(state_path) != expected_crc:
        return f'{STATE_FILE} fails its checksum (corrupt)'
    return None


def load_latest(folder: str | os.PathLike, map_location='cpu') -> tuple[dict, Path] | None:
    """The newest complete checkpoint's state and path; bad ones are skipped with a warning.

    `folder` is a folder of checkpoints, or one checkpoint (`.../step_0001200`): that one."""
    folder = Path(folder)
    one = folder.name.startswith(PREFIX) and folder.name[len(PREFIX):].isdigit()
    for path in [folder] if one else reversed(list_checkpoints(folder)):
        problem = verify_checkpoint(path)
        if problem is None:
            try:
                return torch.load(path / STATE_FILE, map_location=map_location,
                                  weights_only=True), path
            except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped
                problem = f'{STATE_FILE} cannot be read ({exc})'
        LOG.warning('skipping checkpoint %s: %s', path, problem)
    return None


# ---------------------------------------------------------------- RNG states


def rng_state() -> dict:
    """Every RNG the run may draw from, as tensors and plain Python values."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        'torch': torch.get_rng_state(),
        'numpy': {'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                  'has_gauss': int(has_gauss), 'cached_gaussian': float(cached)},
        'python': {'version': version, 'internal': list(internal), 'gauss_next': gauss_next},
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    n = state['numpy']
    np.random.set_state(('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['cached_gaussian']))
    p = state['python']
    random.setstate((p['version'], tuple(p['internal']), p['gauss_next']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


# ---------------------------------------------------------------- EMA


class EMA:
    """Exponential moving average of named parameters, kept in float32 on their device."""

    def __init__(self, named_params, decay: float):
        self.decay = float(decay)
        self.shadow = {name: p.detach().float().clone() for name, p in named_params}

    def to(self, device) -> 'EMA':
        """Keep the shadow beside the parameters (call after they moved to their device)."""
        self.shadow = {name: value.to(device) for name, value in self.shadow.items()}
        return self

    @torch.no_grad()
    def update(self, named_params, step: int) -> None:
        # Warm-up: early weights are mostly noise, so average over ~step samples at first.
        decay = min(self.decay, (1.0 + step) / (10.0 + step))
        for name, p in named_params:
            self.shadow[name].lerp_(p.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def copy_to(self, named_params) -> None:
        for name, p in named_params:
            p.copy_(self.shadow[name].to(p.dtype))

    def state_dict(self) -> dict:
        return {'decay': self.decay, 'shadow': self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state['decay'])
        for name, value in state['shadow'].items():
            self.shadow[name].copy_(value)
