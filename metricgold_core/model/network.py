"""The MetricGold model: diffusers parts + codec + empty-text embedding, and its checkpoint format.

Checkpoint (docs/CORE.md "Checkpoint format"), a diffusers-layout directory:

    model_index.json                  diffusers pipeline index (MarigoldDepthPipeline)
    unet/, vae/, scheduler/           config.json + diffusion_pytorch_model.safetensors
    metricgold.json                   format version, codec range, processing resolution, ...
    empty_text_embedding.safetensors  the cached embedding of "" ([1, tokens, dim])

Loading accepts safetensors only. A Marigold directory (text_encoder/ + tokenizer/, no
metricgold.json) loads too: the empty-prompt embedding is computed once and cached.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .checkpoint_format import CheckpointError, EMBEDDING_FILE, FORMAT_VERSION  # noqa: F401
from .checkpoint_format import META_FILE, PICKLE_SUFFIXES, read_json
from .checkpoint_format import WEIGHTS_FILE, write_json
from .codec import LogDepthCodec
from .light_decoder import LightDecoderHead
from .presets import get_preset, SCHEDULER_CONFIG
from ..io_utils import atomic_dir, atomic_path

LOG = logging.getLogger(__name__)


def default_meta(codec: LogDepthCodec, processing_resolution: int) -> dict:
    return {
        'format_version': FORMAT_VERSION,
        'codec': codec.to_dict(),
        'processing_resolution': int(processing_resolution),
        'canonical_focal_px': None,
        'training_data': None,
        # 'metric_log' (the log codec's metres) or 'affine_invariant' (Marigold: linear [0, 1],
        # near = 0, relative depth: published as depth/relative unless a scale source anchors it)
        'depth_type': 'metric_log',
    }


class MetricGoldModel:
    """UNet (8 input channels), VAE, DDIM scheduler, codec and the empty-text embedding."""

    def __init__(self, unet, vae, scheduler, codec: LogDepthCodec,
                 empty_text_embedding: torch.Tensor, meta: dict | None = None,
                 light_decoder=None):
        if unet.config.in_channels != 2 * vae.config.latent_channels:
            raise ValueError(f'UNet must take {2 * vae.config.latent_channels} input channels '
                             f'([z_rgb, z_t]), got {unet.config.in_channels}.')
        self.unet = unet
        self.vae = vae
        self.scheduler = scheduler
        self.codec = codec
        self.empty_text_embedding = empty_text_embedding  # [1, tokens, cross_attention_dim]
        self.meta = dict(meta) if meta else default_meta(codec, 768)
        self.meta['codec'] = codec.to_dict()
        self.light_decoder = light_decoder  # optional LightDecoderHead (fast mode's light decoder)

    @property
    def processing_resolution(self) -> int:
        return int(self.meta.get('processing_resolution') or 0)

    @property
    def is_relative(self) -> bool:
        """True for affine-invariant checkpoints (Marigold: linear [0, 1] output, no metres);
        metricgold.json's depth_type says so (older files: affine_invariant)."""
        kind = self.meta.get('depth_type')
        if kind is not None:
            return kind == 'affine_invariant'
        return bool(self.meta.get('affine_invariant'))

    @property
    def canonical_focal_px(self) -> float | None:
        value = self.meta.get('canonical_focal_px')
        return None if value is None else float(value)

    @property
    def input_normalization(self) -> dict | None:
        """{'mean': m}: each input image is brought to mean grey m by one gain before the VAE
        (image_processing.normalize_exposure); None for checkpoints trained without."""
        return self.meta.get('input_normalization') or None

    @property
    def far_limit_m(self) -> float | None:
        """Depth (canonical metres, before the focal rescale) from which a prediction is sky or
        beyond the codec's reach: published as NaN (invalid). None: no limit."""
        value = self.meta.get('far_limit_m')
        return None if value is None else float(value)

    def num_parameters(self) -> dict:
        return {name: sum(p.numel() for p in module.parameters())
                for name, module in (('unet', self.unet), ('vae', self.vae))}

    def eval(self) -> 'MetricGoldModel':
        self.unet.eval()
        self.vae.eval()
        if self.light_decoder is not None:
            self.light_decoder.eval()
        return self

    # ---------------------------------------------------------------- building

    @classmethod
    def from_preset(cls, preset: str = 'tiny', seed: int = 0,
                    codec: LogDepthCodec | None = None) -> 'MetricGoldModel':
        """A randomly initialised model of the named preset (deterministic from `seed`)."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        spec = get_preset(preset)
        codec = codec or LogDepthCodec()
        gen_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            unet = UNet2DConditionModel(**spec['unet'])
            vae = AutoencoderKL(**spec['vae'])
            dim = spec['unet']['cross_attention_dim']
            embedding = torch.randn(1, spec['text_tokens'], dim) * 0.5
        finally:
            torch.random.set_rng_state(gen_state)
        scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
        meta = default_meta(codec, spec['processing_resolution'])
        meta['preset'] = preset
        return cls(unet, vae, scheduler, codec, embedding, meta).eval()

    @classmethod
    def from_stable_diffusion(cls, path_or_hub_id: str, codec: LogDepthCodec | None = None,
                              processing_resolution: int = 768) -> 'MetricGoldModel':
        """Initialise from a Stable Diffusion checkpoint (local dir or hub id): widen the UNet.

        Needs `transformers` (the text encoder is run once for the empty-prompt embedding).
        """
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(path_or_hub_id, subfolder='unet',
                                                    use_safetensors=True)
        vae = AutoencoderKL.from_pretrained(path_or_hub_id, subfolder='vae', use_safetensors=True)
        unet = widen_unet_conv_in(unet, 2 * vae.config.latent_channels)
        embedding = compute_empty_text_embedding(path_or_hub_id)
        codec = codec or LogDepthCodec()
        scheduler = DDIMScheduler(**SCHEDULER_CONFIG)
        meta = default_meta(codec, processing_resolution)
        meta['initialised_from'] = str(path_or_hub_id)
        return cls(unet, vae, scheduler, codec, embedding, meta).eval()

    # ---------------------------------------------------------------- save / load

    def save(self, path: str | os.PathLike) -> Path:
        """Write the checkpoint directory atomically (io_utils.atomic_dir)."""
        path = Path(path).resolve()
        with atomic_dir(path) as tmp:
            self.unet.save_pretrained(tmp / 'unet', safe_serialization=True)
            self.vae.save_pretrained(tmp / 'vae', safe_serialization=True)
            self.scheduler.save_pretrained(tmp / 'scheduler')
            from safetensors.torch import save_file
            save_file({'empty_text_embedding':
                       self.empty_text_embedding.detach().float().cpu().contiguous()},
                      str(tmp / EMBEDDING_FILE))
            if self.light_decoder is not None:
                self.light_decoder.save(tmp)
            write_json(tmp / META_FILE, self.meta)
            write_json(tmp / 'model_index.json', self._model_index())
        return path

    def _model_index(self) -> dict:
        import diffusers
        return {
            '_class_name': 'MarigoldDepthPipeline',
            '_diffusers_version': diffusers.__version__,
            'unet': ['diffusers', 'UNet2DConditionModel'],
            'vae': ['diffusers', 'AutoencoderKL'],
            'scheduler': ['diffusers', 'DDIMScheduler'],
            'text_encoder': [None, None],
            'tokenizer': [None, None],
            'prediction_type': 'depth',
            'scale_invariant': False,
            'shift_invariant': False,
            'default_denoising_steps': 1,
            'default_processing_resolution': self.processing_resolution,
        }

    @classmethod
    def load(cls, path: str | os.PathLike) -> 'MetricGoldModel':
        """Load a MetricGold (or Marigold) checkpoint directory; safetensors only."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f'checkpoint directory {str(path)!r} does not exist '
                                  '(expected a diffusers-layout directory with unet/ and vae/).')
        refuse_pickled_weights(path)
        unet = _load_component(path / 'unet', UNet2DConditionModel)
        vae = _load_component(path / 'vae', AutoencoderKL)
        scheduler_config = read_json(path / 'scheduler' / 'scheduler_config.json')
        try:
            scheduler = DDIMScheduler.from_config(scheduler_config)
        except Exception as exc:  # noqa: BLE001 - report which file is bad
            raise CheckpointError(f'{path / "scheduler" / "scheduler_config.json"}: '
                                  f'not a DDIM scheduler config ({exc}).') from exc

        meta_path = path / META_FILE
        if meta_path.exists():
            meta = read_json(meta_path)
            if meta.get('format_version') != FORMAT_VERSION:
                raise CheckpointError(f'{meta_path}: format_version {meta.get("format_version")!r}'
                                      f' is not supported (this version reads {FORMAT_VERSION}).')
            try:
                codec = LogDepthCodec.from_dict(meta.get('codec'))
            except (ValueError, TypeError, KeyError) as exc:
                raise CheckpointError(f'{meta_path}: bad "codec" entry: {exc}') from exc
        else:
            # A Marigold checkpoint: affine-invariant depth; the codec maps its [0, 1] output.
            index = read_json(path / 'model_index.json') if (
                path / 'model_index.json').exists() else {}
            codec = LogDepthCodec()
            meta = default_meta(codec, index.get('default_processing_resolution') or 768)
            meta['source'] = 'marigold'
            meta['affine_invariant'] = bool(index.get('scale_invariant', True))
            meta['depth_type'] = 'affine_invariant' if meta['affine_invariant'] else 'metric_log'
            if meta['affine_invariant']:
                LOG.warning('%s has no %s: loading it as a Marigold checkpoint; its output is '
                            'affine-invariant (relative) depth, not metres: it needs a scale '
                            'source (sparse depth) to give metres.', path, META_FILE)
            else:
                LOG.warning('%s has no %s: loading it as a Marigold-layout checkpoint whose '
                            'model_index.json says scale_invariant: false; decoding it with the '
                            'default log codec (%g..%g m).', path, META_FILE, codec.d_min,
                            codec.d_max)

        embedding = _load_or_compute_embedding(path)
        return cls(unet, vae, scheduler, codec, embedding, meta,
                   light_decoder=LightDecoderHead.load(path)).eval()


# -------------------------------------------------------------------- helpers


def widen_unet_conv_in(unet, in_channels: int = 8):
    """Widen the UNet's first conv (Marigold recipe): duplicate its weights and halve them.

    With the same latent fed twice, the widened conv gives exactly the original activations.
    """
    conv = unet.conv_in
    if conv.in_channels == in_channels:
        return unet
    if in_channels % conv.in_channels:
        raise ValueError(f'cannot widen conv_in from {conv.in_channels} to {in_channels} '
                         'channels.')
    repeats = in_channels // conv.in_channels
    new = torch.nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight.repeat(1, repeats, 1, 1) / repeats)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=in_channels)
    return unet


def compute_empty_text_embedding(path_or_hub_id) -> torch.Tensor:
    """Embedding of the empty prompt from a checkpoint's text_encoder/ + tokenizer/."""
    try:
        from transformers import AutoTokenizer, CLIPTextModel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise CheckpointError('computing the empty-text embedding needs `transformers` '
                              '(pip install transformers).') from exc
    tokenizer = AutoTokenizer.from_pretrained(str(path_or_hub_id), subfolder='tokenizer')
    encoder = CLIPTextModel.from_pretrained(str(path_or_hub_id), subfolder='text_encoder',
                                            use_safetensors=True)
    ids = tokenizer('', padding='do_not_pad', max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors='pt').input_ids
    with torch.inference_mode():
        return encoder(ids)[0].float().clone()  # [1, tokens, dim]


def refuse_pickled_weights(path: Path) -> None:
    for sub in ('unet', 'vae', 'text_encoder', ''):
        folder = path / sub
        if not folder.is_dir():
            continue
        for item in folder.iterdir():
            if item.suffix.lower() in PICKLE_SUFFIXES:
                raise CheckpointError(
                    f'{item}: pickled weights are refused (loading them can run arbitrary '
                    'code). Convert the checkpoint to safetensors, e.g. load it with diffusers '
                    'in a trusted environment and save_pretrained(safe_serialization=True).')


def _load_component(folder: Path, cls):
    config = read_json(folder / 'config.json')
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        alternatives = sorted(p.name for p in folder.glob('*.safetensors'))
        if len(alternatives) == 1:
            weights = folder / alternatives[0]
        else:
            raise CheckpointError(f'{weights} is missing (the {folder.name} weights).')
    from safetensors.torch import load_file
    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types
        raise CheckpointError(f'{weights}: cannot read safetensors weights ({exc}).') from exc
    try:
        module = cls.from_config(config)
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f'{folder / "config.json"}: not a valid {cls.__name__} config '
                              f'({exc}).') from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f'{weights}: weights do not match {folder / "config.json"} '
                              f'({str(exc).splitlines()[0]}).') from exc
    return module.eval()


def _load_or_compute_embedding(path: Path) -> torch.Tensor:
    emb_path = path / EMBEDDING_FILE
    if emb_path.exists():
        from safetensors.torch import load_file
        try:
            tensors = load_file(str(emb_path))
            embedding = tensors['empty_text_embedding']
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(f'{emb_path}: cannot read the empty-text embedding '
                                  f'({exc}).') from exc
        if embedding.dim() != 3 or embedding.shape[0] != 1:
            raise CheckpointError(f'{emb_path}: expected shape [1, tokens, dim], '
                                  f'got {list(embedding.shape)}.')
        return embedding
    if (path / 'text_encoder').is_dir() and (path / 'tokenizer').is_dir():
        embedding = compute_empty_text_embedding(path)
        _cache_embedding(emb_path, embedding)
        return embedding
    raise CheckpointError(f'{emb_path} is missing and there is no text_encoder/ + tokenizer/ '
                          'to compute it from.')


def _cache_embedding(emb_path: Path, embedding: torch.Tensor) -> None:
    from safetensors.torch import save_file
    try:
        with atomic_path(emb_path) as tmp:
            save_file({'empty_text_embedding': embedding.contiguous()}, str(tmp))
    except OSError as exc:  # read-only checkpoint: recompute next time
        LOG.info('could not cache %s (%s)', emb_path, exc)


# -------------------------------------------------------------------- default model

DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / 'default_model'


def default_model_path() -> Path:
    """The checkpoint shipped inside the package (installed with it)."""
    return DEFAULT_MODEL_DIR


def load_default_or(path: str | os.PathLike | None) -> MetricGoldModel:
    """Load `path`, or the packaged default model when `path` is None or empty."""
    if path:
        return MetricGoldModel.load(path)
    if not (DEFAULT_MODEL_DIR / META_FILE).exists():
        raise CheckpointError(f'no packaged default model in {DEFAULT_MODEL_DIR}; pass a '
                              'checkpoint directory (e.g. one made by `metricgold '
                              'make-test-checkpoint`).')
    return MetricGoldModel.load(DEFAULT_MODEL_DIR)
