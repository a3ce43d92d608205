"""A stand-in for ProceduralScenes in the training tests: tiny, fast, learnable scenes.

Same interface (length, height, width, seed, kinds) and sample dicts; depth is a floor plane
plus one box whose shade tells its depth, so a few dozen steps visibly lower any loss.
"""
import numpy as np
import torch


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
