"""`metricgold bench`: our pipeline vs diffusers' MarigoldDepthPipeline, same weights and input.

Both run in the same process on the same weights, alternating, after a warm-up; the figures are
medians. diffusers' stages are timed with forward hooks on the VAE encoder, UNet and VAE decoder.
diffusers runs in its stock precision (--diffusers-dtype auto: float16 on CUDA, float32 on CPU):
the reference for both time and accuracy. `--variants exact:float32,exact:auto,fast:auto` times
several of our configurations against it in one run (interleaved): one table row each, with the
ratio and the normalised and metric depth differences to diffusers.
"""
from __future__ import annotations

import json
import logging
import platform
import statistics
import time

import numpy as np

from . import add_model_arguments
from ..model.run_options import cli_help, COMPILE_MODES, cpu_bf16_flags, DTYPES, MODES

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
    p.add_argument('--variants', default=None, metavar='MODE:DTYPE,...',
                   help='time these configurations (e.g. exact:float32,exact:auto,fast:auto) '
                   'against diffusers in one run, interleaved; default: --mode and --dtype')
    p.add_argument('--diffusers-dtype', default='auto', choices=DTYPES,
                   help="diffusers' precision (auto: float16 on CUDA, float32 on CPU)")
    p.add_argument('--compile', default='off', choices=COMPILE_MODES,
                   help=cli_help('compile', ' Of our pipeline only.'))
    p.set_defaults(func=run)


def parse_variants(text: str | None, mode: str, dtype: str) -> list:
    """[(mode, dtype), ...] from 'exact:float32,fast:auto' (None: [(mode, dtype)])."""
    if not text:
        return [(mode, dtype)]
    variants = []
    for item in text.split(','):
        m, _, d = item.strip().partition(':')
        d = d or 'auto'
        if m not in MODES or d not in DTYPES:
            raise ValueError(f'`--variants` items are MODE:DTYPE with MODE in {", ".join(MODES)}'
                             f' and DTYPE in {", ".join(DTYPES)}, got {item!r}.')
        variants.append((m, d))
    return variants


def load_bench_model(args, mode: str):
    """The model a bench run times: a checkpoint, the packaged one, or a preset (random
    weights; for fast mode with an untrained light decoder head, which times the same)."""
    import torch

    from ..model.network import load_default_or, MetricGoldModel
    if args.checkpoint:
        return MetricGoldModel.load(args.checkpoint)
    if args.preset == 'default':
        return load_default_or(None)
    model = MetricGoldModel.from_preset(args.preset, seed=0)
    if mode == 'fast':
        from ..model.light_decoder import LightDecoderHead
        torch.manual_seed(0)
        model.light_decoder = LightDecoderHead.for_vae(model.vae).eval()
    return model


def run(args) -> int:
    import torch

    from ..io_utils import save_text
    from ..model.pipeline import DepthEstimator

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        variants = parse_variants(args.variants, args.mode, args.dtype)
    except ValueError as exc:
        LOG.error('%s', exc)
        return 2
    # Each configuration gets its own model (DepthEstimator casts the modules in place);
    # diffusers gets the original float32 weights, cast to its own precision.
    ests = {}
    for mode, dtype in variants:
        est = DepthEstimator(load_bench_model(args, mode), device=args.device, dtype=dtype,
                             mode=mode, compile_mode=args.compile)
        name = f"{mode} {str(est.dtype).replace('torch.', '')}"
        if name in ests:
            LOG.warning('--variants: %s:%s is %s again; timed once', mode, dtype, name)
        ests[name] = est
    first = next(iter(ests.values()))
    pipe = diffusers_pipeline(load_bench_model(args, 'exact'), first.device,
                              args.diffusers_dtype)
    cases = ([(240, 320, 1), (240, 320, 2), (480, 640, 1), (480, 640, 2)] if args.matrix
             else [(args.height, args.width, args.steps)])
    results = []
    for height, width, steps in cases:
        peak_before = _peak_memory_mb(first.device, reset=True)
        rows = compare(ests, pipe, bench_image(height, width), steps, args.repeats)
        for name, result in rows.items():
            est = ests[name]
            result.update({
                'preset': args.checkpoint or args.preset, 'device': str(est.device),
                'dtype': str(est.dtype).replace('torch.', ''), 'diffusers_dtype':
                str(pipe.unet.dtype).replace('torch.', ''), 'cpu_bf16': list(cpu_bf16_flags()),
                'compile': args.compile, 'threads': torch.get_num_threads(),
                'height': height, 'width': width, 'steps': steps, 'torch': torch.__version__,
                'mode': est.mode, 'peak_memory_mb': _peak_memory_mb(est.device),
                'peak_before_mb': peak_before,
                'machine': platform.processor() or platform.machine()})
            results.append(result)
        if len(rows) == 1:
            print(format_table(results[-1]), flush=True)
        else:
            print(variants_table(results[-len(rows):]), flush=True)
    if args.json:
        single = len(results) == 1
        save_text(args.json, json.dumps(results[0] if single else results, indent=2) + '\n')
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


def bench_image(height: int, width: int) -> np.ndarray:
    """A deterministic (height, width, 3) uint8 pattern with texture: gradients, xor, noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    image = np.stack([xx * 255 // width, yy * 255 // height, (xx ^ yy) & 255], axis=-1)
    return np.clip(image + rng.integers(-10, 10, image.shape), 0, 255).astype(np.uint8)


def diffusers_pipeline(model, device, dtype: str = 'auto'):
    """Stock MarigoldDepthPipeline on `model`'s modules (default memory format), in diffusers'
    usual precision for the device (`dtype` auto: float16 on CUDA, float32 on CPU)."""
    import torch
    from diffusers import MarigoldDepthPipeline

    from ..model.pipeline import resolve_dtype
    dtype = (torch.float16 if device.type == 'cuda' else torch.float32) if dtype == 'auto' \
        else resolve_dtype(dtype, device)
    # torch's to(): diffusers' warns of float32-only modules from an empty list of them
    unet = torch.nn.Module.to(model.unet, device=device, dtype=dtype,
                              memory_format=torch.contiguous_format)
    vae = torch.nn.Module.to(model.vae, device=device, dtype=dtype,
                             memory_format=torch.contiguous_format)
    pipe = MarigoldDepthPipeline(unet=unet, vae=vae, scheduler=model.scheduler,
                                 text_encoder=None, tokenizer=None, prediction_type='depth',
                                 scale_invariant=False, shift_invariant=False,
                                 default_denoising_steps=1, default_processing_resolution=0)
    pipe.empty_text_embedding = model.empty_text_embedding.to(device, dtype)
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


def diffusers_input(image: np.ndarray, normalization: dict | None) -> np.ndarray:
    """The image diffusers is given: `image` (uint8 HxWx3) itself, or, for a checkpoint with
    an input normalisation (which diffusers' pipeline does not know), the same image
    normalised as our pipeline normalises it at the native resolution, as float [0, 1]. So both
    pipelines see the same network input and their outputs can be compared."""
    if not normalization:
        return image
    import torch

    from ..model.image_processing import to_model_input
    x, _ = to_model_input(image[None], 0, 1, 'cpu', torch.float32, normalization)
    return ((x[0].permute(1, 2, 0) + 1.0) * 0.5).clamp(0.0, 1.0).numpy()


def compare(ests: dict, pipe, image: np.ndarray, steps: int, repeats: int) -> dict:
    """Alternate runs of diffusers and each of our estimators ({name: DepthEstimator}); per
    estimator: medians of total and per-stage ms, the ratio to diffusers' median, the largest
    normalised difference and the metric depth difference (relative: mean, 99th percentile,
    max) to diffusers' output through the same codec. Diffusers gets diffusers_input(image)."""
    import torch

    device = next(iter(ests.values())).device
    their_image = diffusers_input(image, next(iter(ests.values())).model.input_normalization)
    timer = _StageTimer({'encode': pipe.vae.encoder, 'denoise': pipe.unet,
                         'decode': pipe.vae.decoder}, device)
    sync = timer._sync

    def run_theirs():
        timer.reset()
        sync()
        t0, c0 = time.perf_counter(), time.process_time()
        out = pipe(their_image, num_inference_steps=steps, processing_resolution=0,
                   generator=torch.Generator('cpu').manual_seed(0), output_type='np')
        sync()
        total = (time.perf_counter() - t0) * 1e3
        cpu = (time.process_time() - c0) * 1e3
        return out.prediction[0, :, :, 0], dict(timer.times, total=total, cpu_total=cpu)

    def run_ours(est):
        c0 = time.process_time()
        pred = est(image, steps=steps, processing_resolution=0, seed=0)
        pred.timings['cpu_total'] = (time.process_time() - c0) * 1e3
        return pred

    ours_t = {name: [] for name in ests}
    theirs_t = []
    outs = {name: run_ours(est) for name, est in ests.items()}  # warm-up (compiles, caches)
    theirs_out, _ = run_theirs()
    for _ in range(max(1, repeats)):
        for name, est in ests.items():
            outs[name] = run_ours(est)
            ours_t[name].append(outs[name].timings)
        theirs_out, t = run_theirs()
        theirs_t.append(t)
    for handle in timer.handles:
        handle.remove()

    def medians(rows):
        return {key: statistics.median(r[key] for r in rows) for key in rows[0]}

    theirs_m = medians(theirs_t)
    ref_depth = next(iter(ests.values())).codec.normalized_to_depth(theirs_out.astype(np.float32))
    rows = {}
    for name, pred in outs.items():
        ours_m = medians(ours_t[name])
        rel = np.abs(pred.depth - ref_depth) / ref_depth
        rel = rel[np.isfinite(rel)]
        rows[name] = {
            'ours_ms': ours_m, 'diffusers_ms': theirs_m,
            'ratio': ours_m['total'] / theirs_m['total'],
            # CPU time of the process: not inflated by other processes on a shared machine;
            # with 1 thread the work itself (more threads add OpenMP's spin-waiting)
            'cpu_ratio': ours_m['cpu_total'] / theirs_m['cpu_total'],
            'max_abs_diff': float(np.abs(pred.normalized - theirs_out).max()),
            'depth_rel_diff': {'mean': float(rel.mean()), 'p99': float(np.percentile(rel, 99)),
                               'max': float(rel.max())},
            'repeats': repeats,
        }
    return rows


def format_table(result: dict) -> str:
    ours, theirs = result['ours_ms'], result['diffusers_ms']
    lines = [
        f"MetricGold vs diffusers MarigoldDepthPipeline: {result['preset']}, "
        f"{result['height']}x{result['width']}, {result['steps']} step(s), "
        f"{result['device']} {result['dtype']} (diffusers {result['diffusers_dtype']}), "
        f"{result['threads']} threads, "
        f"{result.get('mode', 'exact')} mode, median of {result['repeats']}",
        '',
        '| stage | ours (ms) | diffusers (ms) |',
        '|---|---:|---:|',
    ]
    for stage in ('preprocess', 'encode', 'denoise', 'decode', 'postprocess', 'total'):
        cells = [f'{d[stage]:.1f}' if stage in d else '-' for d in (ours, theirs)]
        lines.append(f'| {stage} | {cells[0]} | {cells[1]} |')
    rel = result['depth_rel_diff']
    lines += ['', f"ratio ours/diffusers: {result['ratio']:.3f} (CPU time "
              f"{result['cpu_ratio']:.3f})   "
              f"max |normalised prediction difference|: {result['max_abs_diff']:.2e}   "
              f"depth difference (relative) mean {rel['mean']:.2e}, max {rel['max']:.2e}"]
    return '\n'.join(lines)


def variants_table(results: list) -> str:
    """One case, several of our configurations against the same diffusers runs."""
    r0 = results[0]
    lines = [f"MetricGold vs diffusers MarigoldDepthPipeline ({r0['diffusers_dtype']}): "
             f"{r0['preset']}, {r0['height']}x{r0['width']}, {r0['steps']} step(s), "
             f"{r0['device']}, {r0['threads']} threads, compile {r0['compile']}, CPU bf16 "
             f"flags: {', '.join(r0['cpu_bf16']) or 'none'}, median of {r0['repeats']}", '',
             '| ours | encode | denoise | decode | total (ms) | diffusers (ms) | ratio '
             '| CPU time ours / diffusers (ms) | CPU time ratio | max abs diff '
             '| depth diff mean / max |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in results:
        o, rel = r['ours_ms'], r['depth_rel_diff']
        lines.append(f"| {r['mode']} {r['dtype']} | {o['encode']:.1f} | {o['denoise']:.1f} | "
                     f"{o['decode']:.1f} | {o['total']:.1f} | {r['diffusers_ms']['total']:.1f} "
                     f"| {r['ratio']:.3f} | {o['cpu_total']:.1f} / "
                     f"{r['diffusers_ms']['cpu_total']:.1f} | {r['cpu_ratio']:.3f} "
                     f"| {r['max_abs_diff']:.1e} | {100 * rel['mean']:.2f} % "
                     f"/ {100 * rel['max']:.1f} % |")
    return '\n'.join(lines)
