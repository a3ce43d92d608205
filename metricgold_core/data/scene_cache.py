"""A pre-rendered cache of procedural scenes: rendered once, read by every stage and run.

Ray casting a scene costs far more CPU than a training step of the tiny model, so training
from a cache spends the machine on the network instead of the renderer. The cache is one
folder of plain .npy arrays (memory-mapped on read):

    rgb.npy    uint8   [N, H, W, 3]
    depth.npy  float16 [N, H, W] metres, NaN where invalid (sky)
    K.npy      float32 [N, 3, 3] intrinsics at H x W
    kind.npy   uint8   [N] index into KINDS
    meta.json  count, size, seed, kinds, framing, render seconds (written last: its presence =
               complete)

Items carry `sky` = the pixels without depth: in procedural scenes exactly the rays that hit
nothing.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
import time

import numpy as np
import torch

from .procedural import KINDS, ProceduralScenes
from ..io_utils import atomic_dir

META = 'meta.json'


def _render_range(args) -> tuple:
    length, height, width, seed, kinds, framing, start, stop = args
    scenes = ProceduralScenes(length, height, width, seed=seed, kinds=kinds, framing=framing)
    items = [scenes[i] for i in range(start, stop)]
    return (np.stack([s['rgb'] for s in items]),
            np.stack([s['depth'] for s in items]).astype(np.float16),
            np.stack([s['K'] for s in items]).astype(np.float32),
            np.array([KINDS.index(s['kind']) for s in items], dtype=np.uint8))


def write_scene_cache(path, count: int, height: int, width: int, seed: int = 0,
                      kinds=KINDS, workers: int = 0, framing: str = 'normal') -> dict:
    """Render `count` scenes of ProceduralScenes(seed, framing) at height x width into `path`.

    Written into a temporary folder and renamed, so a cache is either complete or absent.
    Returns the cache's meta dict (with `render_s` and `bytes`).
    """
    path = Path(path)
    if count < 1:
        raise ValueError(f'`count` must be >= 1, got {count}.')
    workers = workers or max(1, os.cpu_count() or 1)
    chunk = 64
    jobs = [(count, height, width, seed, tuple(kinds), framing, a, min(a + chunk, count))
            for a in range(0, count, chunk)]
    t0 = time.perf_counter()
    if workers > 1:
        with multiprocessing.get_context('spawn').Pool(workers) as pool:
            parts = pool.map(_render_range, jobs)
    else:
        parts = [_render_range(job) for job in jobs]
    render_s = time.perf_counter() - t0
    with atomic_dir(path) as tmp:
        for index, name in enumerate(('rgb', 'depth', 'K', 'kind')):
            np.save(tmp / f'{name}.npy', np.concatenate([p[index] for p in parts]))
        meta = {'count': int(count), 'height': int(height), 'width': int(width),
                'seed': int(seed), 'kinds': list(kinds), 'framing': framing,
                'render_s': round(render_s, 1),
                'bytes': sum(f.stat().st_size for f in tmp.glob('*.npy'))}
        (tmp / META).write_text(json.dumps(meta, indent=1) + '\n', encoding='utf-8')
    return meta


class SceneCache(torch.utils.data.Dataset):
    """The scenes of a cache folder as dataset items (same dict as ProceduralScenes)."""

    def __init__(self, path):
        self.path = Path(path)
        meta_file = self.path / META
        if not meta_file.is_file():
            raise FileNotFoundError(f'{self.path} is not a complete scene cache (no {META}).')
        self.meta = json.loads(meta_file.read_text(encoding='utf-8'))
        self._arrays = None

    def _load(self) -> dict:
        # Opened lazily, so each DataLoader worker maps the files itself.
        if self._arrays is None:
            self._arrays = {name: np.load(self.path / f'{name}.npy', mmap_mode='r')
                            for name in ('rgb', 'depth', 'K', 'kind')}
        return self._arrays

    def __len__(self) -> int:
        return int(self.meta['count'])

    def __getitem__(self, i: int) -> dict:
        a = self._load()
        depth = np.asarray(a['depth'][i], dtype=np.float32)
        valid = np.isfinite(depth) & (depth > 0)
        kind = KINDS[int(a['kind'][i])]
        return {'rgb': np.array(a['rgb'][i]), 'depth': depth, 'valid': valid, 'sky': ~valid,
                'K': np.asarray(a['K'][i], dtype=np.float64), 'kind': kind,
                'name': f'cache_{self.meta["seed"]}_{i}'}


def open_or_write_cache(path, count: int, height: int, width: int, seed: int = 0,
                        kinds=KINDS, framing: str = 'normal') -> SceneCache:
    """The cache at `path` if it holds these scenes; otherwise render it first."""
    path = Path(path)
    want = {'count': int(count), 'height': int(height), 'width': int(width), 'seed': int(seed),
            'kinds': list(kinds), 'framing': framing}
    meta_file = path / META
    if meta_file.is_file():
        meta = {'framing': 'normal', **json.loads(meta_file.read_text(encoding='utf-8'))}
        if {k: meta.get(k) for k in want} == want:
            return SceneCache(path)
    write_scene_cache(path, count, height, width, seed, kinds, framing=framing)
    return SceneCache(path)
