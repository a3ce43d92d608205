"""`metricgold bench`: our pipeline vs diffusers' MarigoldDepthPipeline, same weights and input.

Both run in the same process on the same modules, alternating, after a warm-up; the figures are
medians. diffusers' stages are timed with forward hooks on the VAE encoder, UNet and VAE decoder.
"""
from __future__ import annotations

import json
import logging
import platform
import statistics
import time

import numpy as np

from . import add_model_arguments

LOG = logging.getLogger(__name__)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help='time our pipeline against diffusers on the same weights',
                       description="Time MetricGold's DepthEstimator and diffusers' "
                       'MarigoldDepthPipeline on identical weights and input; print per-stage '
                       'ms, the ratio and the largest output difference.')
    p.add_argument('--preset', default='tiny',
                   help='tiny or sd2 (random weights), or default (the packaged model)')
    add_model_arguments(p, sampling=False,
                        checkpoint_help='use this checkpoint instead of a preset')
    p.add_argument('--height', type=int, default=480)
    p.add_argument('--width', type=int, default=640)
    p.add_argument('--repeats', type=int, default=5, help='timed runs of each (median)')
    p.add_argument('--threads', type=int, default=0, help='torch CPU threads (0 = default)')
    p.add_argument('--json', default=None, help='also write the figures to this JSON file')
    p.add_argument('--matrix', action='store_true',
                   help='the performance report: 240x320 and 480x640, 1 and 2 steps, each '
                   'against diffusers; --markdown writes its table')
    p.add_argument('--markdown', default=None, help='with --matrix: write the table here')
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from ..io_utils import save_text
    from ..model import load_default_or, MetricGoldModel
    from ..pipeline import DepthEstimator

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        model = MetricGoldModel.load(args.checkpoint)
    elif args.preset == 'default':
        model = load_default_or(None)
    else:
        model = MetricGoldModel.from_preset(args.preset, seed=0)
        if args.mode == 'fast':
            # random weights time the same as trained ones: an untrained light decoder head
            # lets a preset measure fast mode's speed (its output means nothing)
            from ..light_decoder import LightDecoderHead
            torch.manual_seed(0)
            model.light_decoder = LightDecoderHead.for_vae(model.vae).eval()
    est = DepthEstimator(model, device=args.device, dtype=args.dtype, mode=args.mode)
    pipe = _diffusers_pipeline(model, est)
    # diffusers gets its own copies in the default memory format: its reference is the stock
    # pipeline, and our channels_last conversion must not leak into its measurement.
    cases = ([(240, 320, 1), (240, 320, 2), (480, 640, 1), (480, 640, 2)] if args.matrix
             else [(args.height, args.width, args.steps)])
    results = []
    for height, width, steps in cases:
        peak_before = _peak_memory_mb(est.device, reset=True)
        result = compare(est, pipe, _bench_image(height, width), steps, args.repeats)
        result.update({'preset': args.checkpoint or args.preset, 'device': str(est.device),
                       'dtype': str(est.dtype).replace('torch.', ''), 'threads':
                       torch.get_num_threads(), 'height': height, 'width': width,
                       'steps': steps, 'torch': torch.__version__, 'mode': args.mode,
                       'peak_memory_mb': _peak_memory_mb(est.device), 'peak_before_mb':
                       peak_before, 'machine': platform.processor() or platform.machine()})
        print(format_table(result), flush=True)
        results.append(result)
    if args.json:
        save_text(args.json, json.dumps(results if args.matrix else results[0], indent=2)
                  + '\n')
    if args.markdown:
        save_text(args.markdown, matrix_table(results) + '\n')
    return 0


def _peak_memory_mb(device, reset: bool = False) -> float:
    """Peak GPU memory allocated by torch, or the process's peak RSS on CPU (MB)."""
    import torch
    if device.type == 'cuda':
        value = torch.cuda.max_memory_allocated(device) / 2**20
        if reset:
            torch.cuda.reset_peak_memory_stats(device)
        return value
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matrix_table(results: list) -> str:
    """One markdown row per case: our stage times, totals, ratio, difference, peak memory."""
    lines = ['| input | steps | preprocess | encode | denoise | decode | postprocess | ours total'
             ' | diffusers total | ratio | max abs diff | peak memory (MB) |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in results:
        o = r['ours_ms']
        lines.append(
            f"| {r['height']}x{r['width']} | {r['steps']} | {o['preprocess']:.1f} | "
            f"{o['encode']:.1f} | {o['denoise']:.1f} | {o['decode']:.1f} | "
            f"{o['postprocess']:.1f} | {o['total']:.1f} | {r['diffusers_ms']['total']:.1f} | "
            f"{r['ratio']:.3f} | {r['max_abs_diff']:.1e} | {r['peak_memory_mb']:.0f} |")
    return '\n'.join(lines)


def _bench_image(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    image = np.stack([xx * 255 // width, yy * 255 // height, (xx ^ yy) & 255], axis=-1)
    return np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)


def _diffusers_pipeline(model, est):
    import copy

    import torch
    from diffusers import MarigoldDepthPipeline

    unet = copy.deepcopy(model.unet).to(memory_format=torch.contiguous_format)
    vae = copy.deepcopy(model.vae).to(memory_format=torch.contiguous_format)
    pipe = MarigoldDepthPipeline(unet=unet, vae=vae, scheduler=copy.deepcopy(model.scheduler),
                                 text_encoder=None, tokenizer=None, prediction_type='depth',
                                 scale_invariant=False, shift_invariant=False,
                                 default_denoising_steps=1, default_processing_resolution=0)
    pipe.empty_text_embedding = est.embedding
    pipe.set_progress_bar_config(disable=True)
    return pipe


class _StageTimer:
    """Forward hooks that add up wall time per module (synchronising CUDA)."""

    def __init__(self, modules: dict, device):
        import torch
        self.times = {name: 0.0 for name in modules}
        self._start = {}
        self._sync = (lambda: torch.cuda.synchronize(device)) if device.type == 'cuda' \
            else (lambda: None)
        self.handles = []
        for name, module in modules.items():
            self.handles.append(module.register_forward_pre_hook(self._pre(name)))
            self.handles.append(module.register_forward_hook(self._post(name)))

    def _pre(self, name):
        def hook(module, inputs):
            self._sync()
            self._start[name] = time.perf_counter()
        return hook

    def _post(self, name):
        def hook(module, inputs, output):
            self._sync()
            self.times[name] += (time.perf_counter() - self._start[name]) * 1e3
        return hook

    def reset(self):
        for name in self.times:
            self.times[name] = 0.0


def compare(est, pipe, image: np.ndarray, steps: int, repeats: int) -> dict:
    """Alternate runs of both pipelines; medians of total and per-stage ms, and max |diff|."""
    import torch

    timer = _StageTimer({'encode': pipe.vae.encoder, 'denoise': pipe.unet,
                         'decode': pipe.vae.decoder}, est.device)

    def run_theirs():
        timer.reset()
        est._sync()
        t0 = time.perf_counter()
        out = pipe(image, num_inference_steps=steps, processing_resolution=0,
                   generator=torch.Generator('cpu').manual_seed(0), output_type='np')
        est._sync()
        total = (time.perf_counter() - t0) * 1e3
        return out.prediction[0, :, :, 0], dict(timer.times, total=total)

    def run_ours():
        pred = est(image, steps=steps, processing_resolution=0, seed=0)
        return pred.normalized, pred.timings

    ours_t, theirs_t = [], []
    ours_out, _ = run_ours()  # warm-up (allocator, oneDNN primitive caches, cuDNN autotune)
    theirs_out, _ = run_theirs()
    for _ in range(max(1, repeats)):
        ours_out, t = run_ours()
        ours_t.append(t)
        theirs_out, t = run_theirs()
        theirs_t.append(t)
    for handle in timer.handles:
        handle.remove()

    def medians(rows):
        return {key: statistics.median(r[key] for r in rows) for key in rows[0]}

    ours_m, theirs_m = medians(ours_t), medians(theirs_t)
    return {
        'ours_ms': ours_m,
        'diffusers_ms': theirs_m,
        'ratio': ours_m['total'] / theirs_m['total'],
        'max_abs_diff': float(np.abs(ours_out - theirs_out).max()),
        'repeats': repeats,
    }


def format_table(result: dict) -> str:
    ours, theirs = result['ours_ms'], result['diffusers_ms']
    lines = [
        f"MetricGold vs diffusers MarigoldDepthPipeline: {result['preset']}, "
        f"{result['height']}x{result['width']}, {result['steps']} step(s), "
        f"{result['device']} {result['dtype']}, {result['threads']} threads, "
        f"{result.get('mode', 'exact')} mode, median of {result['repeats']}",
        '',
        '| stage | ours (ms) | diffusers (ms) |',
        '|---|---:|---:|',
    ]
    for stage in ('preprocess', 'encode', 'denoise', 'decode', 'postprocess', 'total'):
        cells = [f'{d[stage]:.1f}' if stage in d else '-' for d in (ours, theirs)]
        lines.append(f'| {stage} | {cells[0]} | {cells[1]} |')
    lines += ['', f"ratio ours/diffusers: {result['ratio']:.3f}   "
              f"max |normalised prediction difference|: {result['max_abs_diff']:.2e}"]
    return '\n'.join(lines)
