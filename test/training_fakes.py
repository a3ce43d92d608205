"""A stand-in for ProceduralScenes in the training tests: tiny, fast, learnable scenes, and the
tiny CPU recipe that trains on them.

Same interface (length, height, width, seed, kinds) and sample dicts; depth is a floor plane
plus one box whose shade tells its depth, so a few dozen steps visibly lower any loss. The
recipe names the scenes as `training_fakes:FakeScenes`: the test folder must be importable
(the `fakes_importable` fixture of conftest.py).
"""
import json
from pathlib import Path

import numpy as np
import torch
import yaml

# The tiny CPU recipe of the training tests: the tiny preset on 32x32 FakeScenes.
RECIPE = {
    'name': 'test',
    'seed': 1,
    'device': 'cpu',
    # One thread: on a shared 2-core machine two OpenMP threads stall on each other.
    'num_threads': 1,
    'model': {'init': 'preset:tiny'},
    'data': {'height': 32, 'width': 32, 'micro_batch': 4, 'num_workers': 0,
             'train': [{'type': 'training_fakes:FakeScenes',
                        'kwargs': {'length': 10 ** 6, 'height': 32, 'width': 32}}],
             'val_type': 'training_fakes:FakeScenes', 'val_count': 2},
    'optim': {'lr': 1e-3, 'grad_accum': 1, 'warmup_steps': 2, 'decay_steps': 100,
              'ema_decay': 0.9},
    'log': {'every': 5, 'progress': False, 'tensorboard': False},
    'val': {'every': 0, 'images': 1},
    'checkpoint': {'every': 0, 'keep': 2},
}


def recipe(folder: Path, **changes) -> Path:
    """RECIPE with `changes` (dotted paths written with __: data__micro_batch=2) as
    folder/recipe.yaml; its path."""
    cfg = json.loads(json.dumps(RECIPE))
    for dotted, value in changes.items():
        node = cfg
        *parents, leaf = dotted.split('__')
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    path = folder / 'recipe.yaml'
    path.write_text(yaml.safe_dump(cfg))
    return path


class FakeScenes(torch.utils.data.Dataset):
    def __init__(self, length, height, width, seed=0, kinds=('indoor', 'outdoor')):
        self.length, self.height, self.width, self.seed = length, height, width, seed
        self.kinds = tuple(kinds)

    def __len__(self):
        return self.length

    def __getitem__(self, i):
        rng = np.random.default_rng([self.seed, i])
        h, w = self.height, self.width
        rows = np.linspace(0.2, 1.0, h, dtype=np.float32)[:, None]
        depth = np.repeat(1.5 / rows, w, axis=1)  # floor: nearer at the bottom
        y0, x0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        box_depth = float(rng.uniform(1.0, 8.0))
        depth[y0:y0 + h // 3, x0:x0 + w // 3] = box_depth
        valid = np.ones((h, w), dtype=bool)
        valid[: h // 8] = False  # 'sky'
        depth[~valid] = np.nan
        shade = np.clip(255 - 30 * np.log(np.nan_to_num(depth, nan=100.0)), 0, 255)
        rgb = np.stack([shade, shade * 0.8, 255 - shade], axis=-1).astype(np.uint8)
        K = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1]], dtype=np.float64)
        kind = self.kinds[i % len(self.kinds)]
        return {'rgb': rgb, 'depth': depth.astype(np.float32), 'valid': valid, 'K': K,
                'name': f'fake_{i}', 'kind': kind}
