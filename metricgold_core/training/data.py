"""Training data: a weighted mixture of datasets with a deterministic, resumable sample order.

Every sample is a pure function of its global index: the index picks the dataset (one per
micro-batch, so images of one batch share a size), the item and the flip from
`np.random.default_rng([seed, ...])`. The loader's position is therefore one integer (the
micro-batches consumed), which makes resuming exact with any number of workers, and DDP ranks
take interleaved micro-batches of the same stream.
"""
from __future__ import annotations

import importlib
import itertools
import os

import numpy as np
import torch
import torch.nn.functional as F

from .config import DATASET_DEFAULTS
from ..model.codec import LogDepthCodec
from ..model.image_processing import normalize_exposure


class MixtureDataset(torch.utils.data.Dataset):
    """Index -> training sample from one of several datasets, chosen with fixed probabilities.

    Samples are dicts: `rgb` float32 [3, H, W] in [-1, 1], `depth_code` float32 [1, H, W]
    (log-depth code, 0 where invalid), `valid` bool [1, H, W], `kind` str.

    `photometric` is the probability that a sample's image (only) goes through
    data.photometric.random_photometric; `sky_far` labels items' `sky` pixels with the codec's
    far end instead of leaving them unsupervised; `normalization` is the checkpoint's input
    normalisation (image_processing.normalize_exposure), applied as inference applies it.
    With `clean`, samples also carry `rgb_clean` (the image before the photometric change, same
    resize and flip, without the input normalisation) and `teacher` (1.0 where the sample's
    dataset has the photometric-consistency loss, `teacher_on[dataset]`, else 0.0).
    """

    def __init__(self, datasets, probabilities, sizes_hw, codec: LogDepthCodec,
                 micro_batch: int, seed: int = 0, hflip: bool = True,
                 canonical_focal_px: float | None = None, photometric: float = 0.0,
                 sky_far: bool = False, normalization: dict | None = None,
                 clean: bool = False, teacher_on=None):
        if len(datasets) != len(probabilities) or not datasets:
            raise ValueError('`datasets` and `probabilities` must be non-empty and match.')
        p = np.asarray(probabilities, dtype=np.float64)
        self.datasets = list(datasets)
        self.probabilities = p / p.sum()
        self.sizes_hw = list(sizes_hw)
        self.codec = codec
        self.micro_batch = int(micro_batch)
        self.seed = int(seed)
        self.hflip = hflip
        self.canonical_focal_px = canonical_focal_px
        self.photometric = float(photometric)
        self.sky_far = sky_far
        self.normalization = normalization
        self.clean = clean
        self.teacher_on = list(teacher_on) if teacher_on is not None else [True] * len(datasets)

    def __len__(self) -> int:
        return 2 ** 62  # endless: the step count, not an epoch, ends training

    def dataset_of(self, index: int) -> int:
        batch = index // self.micro_batch
        rng = np.random.default_rng([self.seed, 0, batch])
        return int(rng.choice(len(self.datasets), p=self.probabilities))

    def __getitem__(self, index: int) -> dict:
        which = self.dataset_of(index)
        dataset = self.datasets[which]
        rng = np.random.default_rng([self.seed, 1, index])
        item = dataset[int(rng.integers(len(dataset)))]
        flip = self.hflip and bool(rng.integers(2))
        clean_rgb = item['rgb']
        if self.photometric > 0 and rng.random() < self.photometric:
            from ..data.photometric import random_photometric
            item = dict(item, rgb=random_photometric(item['rgb'], rng))
        sample = to_training_sample(item, self.codec, self.sizes_hw[which], flip,
                                    self.canonical_focal_px, self.sky_far, self.normalization)
        if self.clean:   # not normalised: the teacher normalises it as it was trained to
            sample['rgb_clean'] = rgb_tensor(clean_rgb, self.sizes_hw[which], flip)
            sample['teacher'] = torch.tensor([float(self.teacher_on[which])])
        return sample


def canonical_label_factor(item: dict, width: int, canonical_focal_px: float | None) -> float:
    """f_c / fx with fx at `width` px: the factor from metres to canonical-focal labels."""
    if canonical_focal_px is None:
        return 1.0
    if item.get('K') is None:
        raise ValueError(f'canonical-focal labels need intrinsics, and item '
                         f'{item.get("name", "?")!r} has no `K`.')
    fx_px = float(item['K'][0][0]) * width / item['rgb'].shape[1]
    return float(canonical_focal_px) / fx_px


def to_training_sample(item: dict, codec: LogDepthCodec, size_hw=None, flip=False,
                       canonical_focal_px: float | None = None, sky_far: bool = False,
                       normalization: dict | None = None) -> dict:
    """A dataset item (uint8 RGB, depth metres) -> network-ready tensors (see MixtureDataset).

    With `canonical_focal_px`, depth labels are depth * f_c / fx at the output width. With
    `sky_far`, the item's `sky` pixels (when it has that mask) are labelled with the codec's
    far end (code 1). `normalization`: the input's exposure normalisation, after the resize.
    """
    out_w = size_hw[1] if size_hw is not None else item['rgb'].shape[1]
    label = canonical_label_factor(item, out_w, canonical_focal_px)
    depth = torch.from_numpy(np.ascontiguousarray(item['depth'], dtype=np.float32))[None]
    depth = depth * label if label != 1.0 else depth
    valid = torch.from_numpy(np.ascontiguousarray(item['valid']))[None] & \
        codec.valid_mask(depth)  # [1, H, W]
    if size_hw is not None and tuple(size_hw) != tuple(depth.shape[1:]):
        # Nearest for depth: interpolating across an edge invents depths nobody saw.
        depth = F.interpolate(depth[None], size=tuple(size_hw), mode='nearest')[0]
        valid = F.interpolate(valid[None].float(), size=tuple(size_hw), mode='nearest')[0] > 0.5
    code, code_valid = codec.encode(depth)
    valid = valid & code_valid
    code = torch.where(valid, code, torch.zeros_like(code))
    if sky_far and item.get('sky') is not None:
        sky = torch.from_numpy(np.ascontiguousarray(item['sky']))[None].float()  # [1, H, W]
        if tuple(sky.shape[1:]) != tuple(code.shape[1:]):
            sky = F.interpolate(sky[None], size=tuple(code.shape[1:]), mode='nearest')[0]
        sky = sky > 0.5
        code = torch.where(sky, torch.ones_like(code), code)
        valid = valid | sky
    rgb = rgb_tensor(item['rgb'], size_hw, flip, normalization)
    if flip:
        code, valid = code.flip(-1), valid.flip(-1)
    return {'rgb': rgb, 'depth_code': code.float().contiguous(),
            'valid': valid.contiguous(), 'kind': str(item.get('kind', ''))}


def rgb_tensor(rgb_u8: np.ndarray, size_hw=None, flip: bool = False,
               normalization: dict | None = None) -> torch.Tensor:
    """uint8 (H, W, 3) -> float32 [3, h, w] in [-1, 1]: resized (area-like), normalised as
    inference does, flipped."""
    rgb = torch.from_numpy(np.ascontiguousarray(rgb_u8)).permute(2, 0, 1).float()
    rgb = rgb / 127.5 - 1.0
    if size_hw is not None and tuple(size_hw) != tuple(rgb.shape[1:]):
        rgb = F.interpolate(rgb[None], size=tuple(size_hw), mode='bilinear',
                            align_corners=False, antialias=True)[0]
    rgb = normalize_exposure(rgb, normalization)
    return (rgb.flip(-1) if flip else rgb).contiguous()


class ResumableBatchSampler:
    """Endless micro-batches of global indices, after the `start` all ranks consumed together.

    Rank r of `world` takes global micro-batches start + r, start + r + world, ...; so the same
    seed and step give the same data whatever the number of workers.
    """

    def __init__(self, micro_batch: int, start: int = 0, rank: int = 0, world: int = 1):
        self.micro_batch, self.start, self.rank, self.world = micro_batch, start, rank, world

    def __iter__(self):
        for local in itertools.count():
            batch = self.start + local * self.world + self.rank
            yield list(range(batch * self.micro_batch, (batch + 1) * self.micro_batch))


def build_dataset(entry: dict, cfg: dict):
    """One dataset of `data.train` (procedural or a reader class) as a torch Dataset."""
    entry = {**DATASET_DEFAULTS, **entry}
    height = entry['height'] or cfg['data']['height']
    width = entry['width'] or cfg['data']['width']
    if entry['type'] == 'procedural' and entry['cache']:
        from ..data.scene_cache import open_or_write_cache
        return open_or_write_cache(entry['cache'], entry['length'], height, width,
                                   seed=entry['seed'], kinds=tuple(entry['kinds']),
                                   framing=entry['framing'])
    if entry['type'] == 'procedural':
        from ..data.procedural import ProceduralScenes
        return ProceduralScenes(entry['length'], height, width, seed=entry['seed'],
                                kinds=tuple(entry['kinds']), framing=entry['framing'])
    from ..data.registry import DATASETS, dataset_class
    if entry['type'] in DATASETS:
        cls = dataset_class(entry['type'])
    else:
        module_name, _, class_name = entry['type'].partition(':')
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f'dataset type {entry["type"]!r} cannot be imported '
                             f'({exc}).') from exc
    dataset = cls(**entry['kwargs'])
    return KittiBenchmarkCrop(dataset) if entry['kb_crop'] else dataset


class KittiBenchmarkCrop(torch.utils.data.Dataset):
    """Any dataset's samples through transforms.kitti_benchmark_crop (what Marigold trains
    VKITTI on)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        from ..data.transforms import kitti_benchmark_crop
        return kitti_benchmark_crop(self.dataset[i])


def build_train_dataset(cfg: dict) -> MixtureDataset:
    entries = [{**DATASET_DEFAULTS, **e} for e in cfg['data']['train']]
    datasets = [build_dataset(e, cfg) for e in entries]
    sizes = [(e['height'] or cfg['data']['height'], e['width'] or cfg['data']['width'])
             for e in entries]
    codec = LogDepthCodec(cfg['model']['d_min'], cfg['model']['d_max'])
    return MixtureDataset(datasets, [e['probability'] for e in entries], sizes, codec,
                          cfg['data']['micro_batch'], seed=cfg['seed'],
                          hflip=cfg['data']['hflip'],
                          canonical_focal_px=cfg['model']['canonical_focal_px'],
                          photometric=cfg['data']['photometric'],
                          sky_far=cfg['data']['sky'] == 'far',
                          normalization=cfg['model']['input_normalization'],
                          clean=cfg['loss']['teacher_weight'] > 0,
                          teacher_on=[e['teacher'] for e in entries])


def _seed_worker(worker_id: int) -> None:
    # Samples do not depend on these RNGs, but user readers might: give each worker its own.
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    import random
    random.seed(seed)


def build_loader(dataset, cfg: dict, start_batches: int, rank: int = 0, world: int = 1):
    """DataLoader of micro-batches from `start_batches` on (the resumed data position)."""
    workers = cfg['data']['num_workers']
    if workers < 0:  # auto: rendering scenes is the CPU-side bottleneck next to a GPU
        workers = max(1, min(16, (os.cpu_count() or 2) - 1))
    sampler = ResumableBatchSampler(cfg['data']['micro_batch'], start_batches, rank, world)
    # A private generator: creating the loader iterator must not draw from the global RNG,
    # whose state is part of the checkpoint.
    generator = torch.Generator().manual_seed(cfg['seed'])
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, num_workers=workers, worker_init_fn=_seed_worker,
        generator=generator, persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None, pin_memory=torch.cuda.is_available())


def validation_samples(cfg: dict) -> list[dict]:
    """Held-out scenes (the stream of seed `data.val_seed`), as raw dataset items."""
    data = cfg['data']
    train_seeds = {e.get('seed', 0) for e in data['train']
                   if e.get('type', 'procedural') == data['val_type']}
    if data['val_seed'] in train_seeds:
        raise ValueError(f'`data.val_seed` {data["val_seed"]} is also a training seed: '
                         'validation scenes would not be held out.')
    if data['val_type'] == 'procedural':
        from ..data.procedural import ProceduralScenes as cls
    else:
        module_name, _, class_name = data['val_type'].partition(':')
        cls = getattr(importlib.import_module(module_name), class_name)
    scenes = cls(data['val_count'], data['height'], data['width'], seed=data['val_seed'])
    return [scenes[i] for i in range(len(scenes))]
