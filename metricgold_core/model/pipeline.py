"""DepthEstimator: RGB image -> the model's depth with 1 or 2 DDIM steps.

    est = metric_depth.load_estimator(path, device='auto', dtype='auto')   # or DepthEstimator(m)
    pred = est(rgb_uint8_hwc, steps=1, processing_resolution=None, seed=0)
    pred.depth       # float32 (H, W) metres at input resolution, NaN where invalid
    pred.normalized  # float32 (H, W) in [0, 1]: what diffusers' MarigoldDepthPipeline returns
    pred.timings     # ms per stage: preprocess, encode, denoise, decode, postprocess, total

Metres for a camera (the focal rescale of canonical-focal models, scale anchors) come from
metric_depth.estimate_metric_depth, which every entry point calls with the estimator.

The maths is that of diffusers' MarigoldDepthPipeline (ensemble size 1), so the same weights,
input and seed give the same normalised prediction. The VAE runs through exact rewrites with less
compute (`vae_rewrites`) unless `exact_rewrites=False`.

Precision (`dtype`): 'auto' is float16 on CUDA and float32 on a CPU. Under float16 or
bfloat16 the parts in `float32_parts` (precision.DEFAULT_PARTS: the latents and the decoder's
output) keep float32 weights and maths. float16 then stays within 0.1 % of float32's depth;
bfloat16 (8 bits of mantissa) rounds the whole network, and no float32 part keeps it at
float32's answer (a demosaicing-sized input change moves its depth more), so `auto` never picks
it; ask for it by name where speed counts more (docs/PERFORMANCE.md has the figures).

`compile_mode` (run_options.COMPILE_MODES, default 'off') wraps the encoder, the UNet and the
decoder in `torch.compile` with static shapes: each processing resolution compiles once, at its
first call (`warm_up` does it ahead of time). 'reduce-overhead' replays CUDA graphs on a GPU. On
CUDA the image goes up through pinned host memory on a side stream.

`mode='fast'` trades a little accuracy for time (measured in docs/PERFORMANCE.md): the
checkpoint's distilled light decoder replaces the VAE decoder's up-sampling path, and the VAE's
mid-block attention takes its keys and values from a 2x2-pooled map.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
import threading
import time

import numpy as np
import torch

from . import precision
from .image_processing import (check_rgb, from_model_output, processing_size, to_model_input,
                               UPSAMPLING)
from .network import MetricGoldModel
from .precision import check_parts, DEFAULT_PARTS
from .run_options import check_compile, check_device, MODES
from .vae_rewrites import encode_mean, RewrittenVAEDecoder

STAGES = ('preprocess', 'encode', 'denoise', 'decode', 'postprocess')
FAST_KV_POOL = 2  # fast mode: VAE attention keys/values from a 2x2-pooled map


@dataclass
class DepthPrediction:
    """Depth for one image (or a batch: leading B axis)."""

    depth: np.ndarray                 # float32 metres, NaN where invalid; (H, W) or (B, H, W)
    normalized: np.ndarray            # float32 in [0, 1]; same shape
    uncertainty: np.ndarray | None    # float32 metres (spread of 1- vs 2-step), or None
    timings: dict = field(default_factory=dict)   # ms per stage
    steps: int = 1
    processing_hw: tuple = (0, 0)     # (h, w) the network saw, before padding


def resolve_device(device: str | torch.device = 'auto') -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    check_device(device)
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        raise ValueError(f'`device` is {device!r} but CUDA is not available on this machine.')
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {'float32': torch.float32, 'fp32': torch.float32, 'float16': torch.float16,
             'fp16': torch.float16, 'bfloat16': torch.bfloat16, 'bf16': torch.bfloat16}
    if dtype == 'auto':
        return torch.float16 if device.type == 'cuda' else torch.float32
    if dtype not in names:
        raise ValueError(f'`dtype` must be auto or one of {sorted(names)}, got {dtype!r}.')
    return names[dtype]


class DepthEstimator:
    """Owns a MetricGoldModel on a device and turns RGB images into metric depth."""

    def __init__(self, model: MetricGoldModel, device: str = 'auto', dtype: str = 'auto',
                 channels_last: bool = True, exact_rewrites: bool = True,
                 mode: str = 'exact', upsampling: str = 'guided', compile_mode: str = 'off',
                 float32_parts=DEFAULT_PARTS):
        if upsampling not in UPSAMPLING:
            raise ValueError(f'`upsampling` must be one of {", ".join(UPSAMPLING)}, '
                             f'got {upsampling!r}.')
        # 'guided' puts depth edges on the input image's edges when the processing resolution
        # is below the input's; 'bilinear' is diffusers' Marigold resize (for parity).
        self.upsampling = upsampling
        if mode not in MODES:
            raise ValueError(f'`mode` must be one of {", ".join(MODES)}, got {mode!r}.')
        if mode == 'fast' and model.light_decoder is None:
            raise ValueError('`mode` fast needs a checkpoint with a light decoder '
                             '(`metricgold distill --checkpoint DIR` adds one).')
        self.model = model.eval()
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        # channels_last pays for the VAE (full-resolution convs) everywhere; on CPU it slows the
        # small-latent UNet down (measured), so the UNet keeps NCHW there.
        cl, nchw = torch.channels_last, torch.contiguous_format
        self.vae_format = cl if channels_last else nchw
        self.unet_format = cl if channels_last and self.device.type == 'cuda' else nchw
        self.float32_parts = () if self.dtype == torch.float32 else check_parts(float32_parts)
        precision.apply(model, self.dtype, self.float32_parts)
        for module, fmt in ((model.unet, self.unet_format), (model.vae, self.vae_format)):
            module.requires_grad_(False)
            module.to(device=self.device, memory_format=fmt)
        self.vae_decoder = RewrittenVAEDecoder(model.vae, self.vae_format) \
            if exact_rewrites or mode == 'fast' else None
        self.light_decoder = None
        if mode == 'fast':
            self.light_decoder = model.light_decoder.to(self.device)   # dtype: precision.apply
            self.light_decoder.requires_grad_(False)
        self.mode = mode
        self.kv_pool = FAST_KV_POOL if mode == 'fast' else 1
        self.vae_factor = 2 ** (len(model.vae.config.block_out_channels) - 1)
        self.embedding = model.empty_text_embedding.to(self.device, self.dtype)
        # Its own scheduler (set_timesteps changes state) and a lock: one estimator may be called
        # from several threads, and several estimators may share one model.
        self.scheduler = copy.deepcopy(model.scheduler)
        self._lock = threading.Lock()
        self.codec = model.codec
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == 'cuda' else None
        self._pinned = None   # pinned uint8 host buffer of the upload (the last input's shape)
        self.compile_mode = check_compile(compile_mode)
        self._unet = model.unet
        self._encode_fn, self._decode_fn = self._encode_eager, self._decode_eager
        if compile_mode != 'off':
            # static shapes: one compiled entry per processing resolution (the latency
            # control's ladder has up to 7) and per estimator; past dynamo's recompile limit
            # (8) calls fall back to eager without a word
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
            options = {'dynamic': False,
                       'mode': None if compile_mode == 'default' else compile_mode}
            self._unet = torch.compile(model.unet, **options)
            self._encode_fn = torch.compile(self._encode_eager, **options)
            self._decode_fn = torch.compile(self._decode_eager, **options)
        # CUDA graphs reuse their output memory at the next replay: outputs are copied out.
        self._graphs = compile_mode == 'reduce-overhead' and self.device.type == 'cuda'

    def warm_up(self, height: int = 480, width: int = 640,
                processing_resolution: int | None = None, steps=(1,)) -> DepthPrediction:
        """Run a grey image of (height, width) through each step count twice (compiles at the
        first call when `compile` is on; kernel selection, allocations); returns the second
        call's prediction of the last step count (its timings are the warm ones)."""
        image = np.full((height, width, 3), 127, np.uint8)
        for n in steps:
            for _ in range(2):
                pred = self(image, steps=n, processing_resolution=processing_resolution, seed=0)
        return pred

    def processing_hw(self, height: int, width: int,
                      processing_resolution: int | None = None) -> tuple[int, int]:
        """(h, w) an input of size (height, width) is processed at (before padding)."""
        res = self.model.processing_resolution if processing_resolution is None \
            else processing_resolution
        return processing_size(height, width, res)

    def __call__(self, image, steps: int = 1, processing_resolution: int | None = None,
                 seed: int | None = None, generator: torch.Generator | None = None,
                 output_uncertainty: bool = False, match_input_resolution: bool = True
                 ) -> DepthPrediction:
        """Predict depth for uint8 RGB (H, W, 3) or (B, H, W, 3). Thread-safe (calls run one
        at a time)."""
        with self._lock:
            return self._predict(image, steps, processing_resolution, seed, generator,
                                 output_uncertainty, match_input_resolution)

    def check_inputs(self, image, steps, processing_resolution, seed, generator) -> tuple:
        """Every argument check of a call, in one place: returns the image as uint8 (B, H, W,
        3) and the processing resolution to use, or raises ValueError saying what is wrong."""
        if steps not in (1, 2):
            raise ValueError(f'`steps` must be 1 or 2, got {steps}.')
        if processing_resolution is None:
            processing_resolution = self.model.processing_resolution
        if not isinstance(processing_resolution, (int, np.integer)) or processing_resolution < 0:
            raise ValueError('`processing_resolution` must be an int >= 0 (0 = native), '
                             f'got {processing_resolution!r}.')
        if seed is not None and generator is not None:
            raise ValueError('pass `seed` or `generator`, not both.')
        return check_rgb(image), int(processing_resolution)

    @torch.inference_mode()
    def _predict(self, image, steps, processing_resolution, seed, generator,
                 output_uncertainty, match_input_resolution) -> DepthPrediction:
        # 1. Check the inputs
        single = isinstance(image, np.ndarray) and image.ndim == 3
        image, processing_resolution = self.check_inputs(image, steps, processing_resolution,
                                                         seed, generator)
        if seed is not None:
            generator = torch.Generator('cpu').manual_seed(int(seed))
        sync, marks = self._sync, [time.perf_counter()]

        # 2. Preprocess: resize to the processing resolution, pad to the VAE's grid
        size_hw = image.shape[1:3]
        x, padding = to_model_input(self._upload(image), processing_resolution,
                                    self.vae_factor, self.device, self.dtype,
                                    self.model.input_normalization)  # [B, 3, PPH, PPW]
        x = x.contiguous(memory_format=self.vae_format)
        sync()
        marks.append(time.perf_counter())

        # 3. Encode the image into the latent space
        latent_rgb = self._encode(x)  # [B, 4, h, w]
        sync()
        marks.append(time.perf_counter())

        # 4. Denoise the depth latent from noise: 1 or 2 DDIM steps
        noise = self._noise(latent_rgb, generator)  # [B, 4, h, w]
        latents = self._denoise(latent_rgb, noise, steps, keep_first=output_uncertainty)
        sync()
        marks.append(time.perf_counter())

        # 5. Decode the depth code
        preds = [self._decode(z) for z in latents]  # each [B, 1, PPH, PPW] in [0, 1]
        sync()
        marks.append(time.perf_counter())

        # 6. Postprocess: unpad, back to the input size, code -> metres
        target = tuple(size_hw) if match_input_resolution else None
        outs = [from_model_output(p.float(), padding, target, self.upsampling, image)[:, 0]
                .cpu().numpy() for p in preds]
        normalized = outs[-1]
        depth = self.codec.normalized_to_depth(normalized).astype(np.float32)
        depth[~np.isfinite(normalized)] = np.nan
        far = self.model.far_limit_m
        if far is not None:  # sky (trained to the codec's far end) and beyond: invalid
            depth[depth >= far] = np.nan
        uncertainty = None
        if output_uncertainty:
            first = self.codec.normalized_to_depth(outs[0]).astype(np.float32)
            uncertainty = np.abs(depth - first)
        marks.append(time.perf_counter())

        # 7. The typed output
        timings = {name: (b - a) * 1e3 for name, a, b in zip(STAGES, marks, marks[1:])}
        timings['total'] = (marks[-1] - marks[0]) * 1e3
        hw = processing_size(size_hw[0], size_hw[1], processing_resolution)
        if single:
            depth, normalized = depth[0], normalized[0]
            uncertainty = None if uncertainty is None else uncertainty[0]
        return DepthPrediction(depth=depth, normalized=normalized.astype(np.float32),
                               uncertainty=uncertainty, timings=timings, steps=steps,
                               processing_hw=hw)

    # ------------------------------------------------------------------ stages

    def _sync(self) -> None:
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)

    def _upload(self, image: np.ndarray):
        """uint8 (B, H, W, 3) -> on CUDA a device tensor, copied from a reused pinned host
        buffer on a side stream; elsewhere the array itself (to_model_input takes both)."""
        if self._copy_stream is None:
            return image
        pinned = self._pinned
        if pinned is None or pinned.shape != image.shape:
            pinned = self._pinned = torch.empty(image.shape, dtype=torch.uint8,
                                                pin_memory=True)
        # the previous frame's copy out of this buffer finished: its outputs were synchronised
        pinned.numpy()[...] = image
        with torch.cuda.stream(self._copy_stream):
            on_device = pinned.to(self.device, non_blocking=True)
        torch.cuda.current_stream(self.device).wait_stream(self._copy_stream)
        on_device.record_stream(torch.cuda.current_stream(self.device))
        return on_device

    def _compiled(self, fn, *args, **kwargs):
        """Call a (maybe compiled) stage; with CUDA graphs, mark a new replay and copy the
        output out of the graph's memory."""
        if not self._graphs:
            return fn(*args, **kwargs)
        torch.compiler.cudagraph_mark_step_begin()
        return fn(*args, **kwargs).clone()

    @torch.no_grad()
    def predict_latent(self, x: torch.Tensor, steps: int = 1, generator=None) -> torch.Tensor:
        """The final depth latent for model-input images x [N, 3, H, W] in [-1, 1] (as
        image_processing.to_model_input makes them), in the VAE's memory format: what the
        decoder turns into the depth code. For training parts on the model's own latents (the
        light decoder's distillation)."""
        latent_rgb = self._encode(x.contiguous(memory_format=self.vae_format))
        latent = self._denoise(latent_rgb, self._noise(latent_rgb, generator), steps, False)[-1]
        return latent.contiguous(memory_format=self.vae_format)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._compiled(self._encode_fn, x)

    def _encode_eager(self, x: torch.Tensor) -> torch.Tensor:
        vae = self.model.vae
        if self.vae_decoder is not None or self.kv_pool > 1:
            return encode_mean(vae, x, self.kv_pool)
        return vae.encode(x).latent_dist.mode() * vae.config.scaling_factor

    def _noise(self, like: torch.Tensor, generator) -> torch.Tensor:
        # Same draw as diffusers' randn_tensor: on the generator's device, then moved.
        gen_device = generator.device if generator is not None else self.device
        noise = torch.randn(like.shape, generator=generator, device=gen_device,
                            dtype=like.dtype)
        return noise.to(like.device)

    def _denoise(self, latent_rgb, latent, steps: int, keep_first: bool) -> list:
        """DDIM (trailing spacing) from `latent`; returns [x0 after step 1,] final latent."""
        scheduler = self.scheduler
        scheduler.set_timesteps(steps, device=self.device)
        batch = latent_rgb.shape[0]
        text = self.embedding.expand(batch, -1, -1)  # [B, tokens, dim]
        kept = []
        for i, t in enumerate(scheduler.timesteps):
            unet_in = torch.cat([latent_rgb, latent], dim=1)  # [B, 8, h, w]
            unet_in = unet_in.contiguous(memory_format=self.unet_format)
            v = self._compiled(self._unet_v, unet_in, t, text)
            out = scheduler.step(v, t, latent)
            if keep_first and i == 0 and steps > 1:
                kept.append(out.pred_original_sample)
            latent = out.prev_sample
        return kept + [latent]

    def _unet_v(self, unet_in, t, text) -> torch.Tensor:
        return self._unet(unet_in, t, encoder_hidden_states=text, return_dict=False)[0]

    def _decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self._compiled(self._decode_fn, latent)

    def _decode_eager(self, latent: torch.Tensor) -> torch.Tensor:
        if self.light_decoder is not None:
            features = self.vae_decoder.mid_features(latent, self.kv_pool)  # [B, C, h, w]
            mean = self.light_decoder(features.contiguous())  # [B, 1, H, W]
        elif self.vae_decoder is not None:
            mean = self.vae_decoder.decode_mean(latent.contiguous(memory_format=self.vae_format))
        else:
            vae = self.model.vae
            mean = vae.decode(latent / vae.config.scaling_factor,
                              return_dict=False)[0].mean(dim=1, keepdim=True)
        return (mean.clamp(-1.0, 1.0) + 1.0) * 0.5
