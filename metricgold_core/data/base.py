"""One base class for depth datasets; subclasses only say where files are and how to read them.

A dataset is a list of records (dicts of paths and per-frame values) built either from a split
file (Marigold style: one frame per line, whitespace-separated paths relative to the root, then
optional extra columns) or by globbing the root. `__getitem__` returns the common sample dict:
`rgb` uint8 (H, W, 3), `depth` float32 (H, W) metres (NaN = invalid), `valid` bool (H, W),
`K` float64 (3, 3), `name` str.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
import re

import numpy as np
import torch

from ..camera.geometry import make_K
from ..io_utils import read_rgb

LOG = logging.getLogger(__name__)


class DepthDataset(torch.utils.data.Dataset):
    """Base reader. Subclasses set the class attributes and implement the three read hooks.

    Class attributes: `name` (registry name), `eval_min_depth_m` / `eval_max_depth_m` (the
    published evaluation caps), `layout` (one line telling a user what the root must hold).
    Hooks: `discover()` -> records, `read_depth(record)` -> float metres with NaN where invalid,
    `intrinsics(record, height, width)` -> K. `read_rgb` and `eval_crop` have defaults.
    """

    name = 'base'
    eval_min_depth_m = 1e-3
    eval_max_depth_m = float('inf')
    layout = ''
    split_columns = ('rgb', 'depth')  # what the path columns of a split line are

    def __init__(self, root, split=None):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(
                f'{self.name}: dataset root {self.root} is not a directory; pass the folder '
                f'that holds {self.layout or "the dataset"}.')
        if split is not None:
            self.records = self.read_split(split)
        else:
            self.records = self.discover()
        if not self.records:
            where = f'split file {split}' if split is not None else f'{self.root}'
            raise FileNotFoundError(f'{self.name}: no frames found in {where}; expected '
                                    f'{self.layout or "rgb and depth files"}.')

    # --- file list -------------------------------------------------------------------------
    def discover(self) -> list:
        """Records found by globbing the root (subclasses that support it override this)."""
        raise FileNotFoundError(f'{self.name}: this reader needs a split file (--split).')

    def read_split(self, split) -> list:
        """Records from a split file: `split_columns` paths relative to the root, then extras."""
        path = Path(split)
        if not path.is_file():
            raise FileNotFoundError(f'{self.name}: split file {path} does not exist.')
        records = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            cols = line.split()
            n = len(self.split_columns)
            if len(cols) < n:
                raise ValueError(f'{path}:{number}: expected {n} columns '
                                 f'({", ".join(self.split_columns)}), got {len(cols)}.')
            record = {key: self.root / col for key, col in zip(self.split_columns, cols)}
            record['extra'] = cols[n:]
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def record_name(self, record: dict) -> str:
        """A unique, readable frame name: the rgb path relative to the root, without suffix."""
        rel = os.path.relpath(record['rgb'], self.root)
        return str(Path(rel).with_suffix('')).replace(os.sep, '/')

    # --- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        record = self.records[i]
        rgb = self.read_rgb(record)
        depth = np.asarray(self.read_depth(record), dtype=np.float32)
        if depth.shape != rgb.shape[:2]:
            raise ValueError(f'{record["depth"]}: depth is {depth.shape[1]}x{depth.shape[0]} '
                             f'but its image {record["rgb"]} is {rgb.shape[1]}x{rgb.shape[0]}.')
        with np.errstate(invalid='ignore'):
            valid = np.isfinite(depth) & (depth > 0)
        depth = np.where(valid, depth, np.float32(np.nan)).astype(np.float32)
        K = np.asarray(self.intrinsics(record, *depth.shape), dtype=np.float64)
        return {'rgb': rgb, 'depth': depth, 'valid': valid, 'K': K, 'name': record['name']}

    def read_rgb(self, record: dict) -> np.ndarray:
        return read_rgb(_existing(record['rgb']))

    def read_depth(self, record: dict) -> np.ndarray:
        raise NotImplementedError

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        raise NotImplementedError

    def eval_crop(self, height: int, width: int) -> np.ndarray | None:
        """Bool (H, W) region the published protocol evaluates, or None for the whole image."""
        return None

    def eval_mask(self, sample: dict) -> np.ndarray:
        """Pixels that count in evaluation: valid, inside the caps and the protocol's crop."""
        depth = sample['depth']
        with np.errstate(invalid='ignore'):
            mask = sample['valid'] & (depth >= self.eval_min_depth_m) & (
                depth <= self.eval_max_depth_m)
        crop = self.eval_crop(*depth.shape)
        return mask if crop is None else mask & crop


# --- shared file helpers -------------------------------------------------------------------
def _existing(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'{path}: no such file.')
    return path


def read_depth_png(path) -> np.ndarray:
    """16-bit PNG or binary PGM (P5, maxval 65535) -> uint16 (H, W) raw values."""
    from PIL import Image, UnidentifiedImageError
    path = _existing(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ('I;16', 'I;16B', 'I;16L', 'I'):
                raise ValueError(f'{path}: expected a 16-bit single-channel depth image, got '
                                 f'mode {image.mode} (8-bit or colour images cannot hold depth).')
            raw = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f'{path}: not a readable depth image ({exc}).') from exc
    return raw.astype(np.uint16) if raw.dtype != np.uint16 else raw


def scaled_depth(raw: np.ndarray, units_per_metre: float, invalid=(0,)) -> np.ndarray:
    """Raw integer depth -> float32 metres = raw / units_per_metre; `invalid` values -> NaN."""
    depth = raw.astype(np.float32) / np.float32(units_per_metre)
    bad = np.isin(raw, np.asarray(invalid, dtype=raw.dtype))
    depth[bad] = np.nan
    return depth


def load_npy(path) -> np.ndarray:
    path = _existing(path)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f'{path}: not a readable .npy array ({exc}).') from exc


def read_intrinsics_json(path) -> dict:
    """{fx, fy, cx, cy[, depth_scale][, hw]} from a small JSON file (hw = (height, width) when
    the file gives the image size), with a message naming the file."""
    path = _existing(path)
    try:
        data = json.loads(path.read_text())
        values = {key: float(data[key]) for key in ('fx', 'fy', 'cx', 'cy')}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f'{path}: expected JSON with numbers fx, fy, cx, cy ({exc}).') from exc
    if 'depth_scale' in data:
        values['depth_scale'] = float(data['depth_scale'])
    if 'width' in data and 'height' in data:
        values['hw'] = (int(data['height']), int(data['width']))
    return values


def K_from_values(values: dict) -> np.ndarray:
    """K from fx, fy, cx, cy; a negative focal (a y-up convention such as ICL-NUIM) becomes
    positive, because the stored image rows run downwards like every other image here."""
    return make_K(abs(values['fx']), abs(values['fy']), values['cx'], values['cy'])


def pair_by_stem(rgb_dir: Path, depth_dir: Path, rgb_exts, depth_exts) -> list:
    """Records for files of the same stem in rgb_dir and depth_dir (sorted by stem)."""
    depth_by_stem = {}
    for ext in depth_exts:
        for path in depth_dir.glob(f'*{ext}'):
            depth_by_stem.setdefault(path.stem, path)
    records = []
    for ext in rgb_exts:
        for rgb in rgb_dir.glob(f'*{ext}'):
            if rgb.stem in depth_by_stem:
                records.append({'rgb': rgb, 'depth': depth_by_stem[rgb.stem]})
            else:
                LOG.warning('%s has no depth file of the same name in %s; skipped', rgb, depth_dir)
    return sorted(records, key=lambda r: _natural_key(r['rgb'].stem))


def _natural_key(text: str) -> list:
    """Sort '2' before '10'."""
    return [(0, int(part), '') if part.isdigit() else (1, 0, part)
            for part in re.split(r'(\d+)', text) if part]
