#!/usr/bin/env python3
"""GPU real-time benchmark: one prepared run whose figures go to JSON (docs/PERFORMANCE.md, GPU).

    OUT=gpu_out python scripts/gpu_realtime_bench.py            # on a CUDA machine
    python scripts/gpu_realtime_bench.py --dry-run --out /tmp/x  # the same code on CPU, tiny

What it measures, in this order (the most wanted first; each part is written to
$OUT/gpu_realtime.json as soon as it is done, so a run cut short keeps what it finished):

1. `matrix`: the sd2 preset (random weights time like trained ones) at 480x640 and 720x1280,
   1 and 2 steps, exact and fast, with the default CUDA configuration (float16, channels_last,
   eager), against diffusers' MarigoldDepthPipeline (float16) in the same run, interleaved:
   per-stage ms, Hz, peak memory, the ratio and the normalised / metric depth differences.
2. `node`: the ROS node end to end at 480x640 with a 30 Hz camera (image published -> depth and
   points received, one clock): latency p50/p95 and output rate, per mode (needs rclpy).
3. `variants`: at 480x640, 1 step, each of the CUDA options against the default: NCHW,
   bfloat16, torch.compile (default) and torch.compile with CUDA graphs (reduce-overhead); the
   compile time of the warm-up is reported apart. Then the same at 720x1280 if time is left.

--budget-s bounds the whole run: a part that would not fit is listed under `skipped`.
--dry-run: CPU, the tiny preset at 32x48, one repeat, no compile variants (inductor takes
minutes on a CPU), no node unless --node: a check that the script runs (the suite runs it).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
from pathlib import Path
import platform
import subprocess
import sys
import tempfile
import threading
import time


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # metricgold_core / metricgold_ros from this checkout

# (name, DepthEstimator keywords): the default CUDA configuration first
DEFAULT_CONFIG = ('float16', {'dtype': 'float16'})
VARIANTS = (
    ('float16 nchw', {'dtype': 'float16', 'channels_last': False}),
    ('bfloat16', {'dtype': 'bfloat16'}),
    ('float16 compile', {'dtype': 'float16', 'compile_mode': 'default'}),
    ('float16 compile+cuda-graphs', {'dtype': 'float16', 'compile_mode': 'reduce-overhead'}),
)


class Report:
    """The JSON document, rewritten (atomically) after every part."""

    def __init__(self, path: Path, budget_s: float):
        self.path = path
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.data = {'matrix': [], 'node': [], 'variants': [], 'skipped': [], 'errors': []}

    def left_s(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def save(self) -> None:
        from metricgold_core.io_utils import save_text
        self.data['elapsed_s'] = round(time.monotonic() - self.start, 1)
        save_text(self.path, json.dumps(self.data, indent=2) + '\n')


def environment(device) -> dict:
    import diffusers
    import torch

    from metricgold_core.model.run_options import cpu_bf16_flags
    env = {'torch': torch.__version__, 'diffusers': diffusers.__version__,
           'python': platform.python_version(), 'device': str(device),
           'cpu': platform.processor() or platform.machine(), 'cpu_bf16': list(cpu_bf16_flags()),
           'cpu_threads': torch.get_num_threads()}
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        env.update({'gpu': props.name, 'gpu_memory_gb': round(props.total_memory / 2**30, 1),
                    'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version()})
        try:
            env['driver'] = subprocess.run(
                ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            env['driver'] = f'unknown ({exc})'
    return env


def master_model(preset: str):
    """The preset's float32 model with an untrained light decoder head (times as a trained one)."""
    import torch

    from metricgold_core.model.light_decoder import LightDecoderHead
    from metricgold_core.model.network import MetricGoldModel
    model = MetricGoldModel.from_preset(preset, seed=0)
    torch.manual_seed(0)
    model.light_decoder = LightDecoderHead.for_vae(model.vae).eval()
    return model


def run_cases(report, master, device, configs, cases, modes, repeats, section):
    """For each (height, width, steps): every config x mode against one diffusers pipeline."""
    import torch

    from metricgold_core.commands.bench import bench_image, diffusers_pipeline, compare
    from metricgold_core.model.pipeline import DepthEstimator

    pipe = diffusers_pipeline(copy.deepcopy(master), device, 'auto')
    for height, width, steps in cases:
        ests, warmup_s = {}, {}
        for config_name, options in configs:
            for mode in modes:
                name = f'{mode} {config_name}'
                # a compiled configuration spends its first calls compiling (minutes)
                if report.left_s() < (150 if options.get('compile_mode') else 30):
                    report.data['skipped'].append(f'{section}: {name} {height}x{width} '
                                                  f'{steps} step(s) (budget)')
                    continue
                try:
                    est = DepthEstimator(copy.deepcopy(master), device=device, mode=mode,
                                         **options)
                    t0 = time.monotonic()
                    est.warm_up(height, width, 0, (steps,))   # compiles, when compiled
                    warmup_s[name] = round(time.monotonic() - t0, 1)
                    ests[name] = est
                except Exception as exc:   # one option failing must not lose the others
                    report.data['errors'].append(f'{section}: {name} {height}x{width}: {exc!r}')
        if not ests:
            continue
        image = bench_image(height, width)
        rows = compare(ests, pipe, image, steps, repeats)
        diffusers_mb = peak_memory_mb(device, pipe.unet, pipe.vae, run=lambda: pipe(
            image, num_inference_steps=steps, processing_resolution=0, output_type='np'))
        for name, row in rows.items():
            est = ests[name]
            modules = [est.model.unet, est.model.vae] + [est.light_decoder] * (
                est.light_decoder is not None)
            peak = peak_memory_mb(device, *modules, run=lambda: est(
                image, steps=steps, processing_resolution=0, seed=0))
            row.update({'config': name, 'mode': est.mode, 'height': height, 'width': width,
                        'steps': steps, 'dtype': str(est.dtype).replace('torch.', ''),
                        'channels_last': est.vae_format == torch.channels_last,
                        'compile': est.compile_mode, 'warmup_s': warmup_s[name],
                        'hz': 1e3 / row['ours_ms']['total'],
                        'diffusers_hz': 1e3 / row['diffusers_ms']['total'],
                        'peak_memory_mb': peak, 'diffusers_peak_memory_mb': diffusers_mb})
            report.data[section].append(row)
            print(f"{section}: {name} {height}x{width} {steps} step(s): "
                  f"{row['ours_ms']['total']:.1f} ms ({row['hz']:.1f} Hz), diffusers "
                  f"{row['diffusers_ms']['total']:.1f} ms, ratio {row['ratio']:.3f}", flush=True)
        report.save()
        del ests
        if device.type == 'cuda':
            torch.cuda.empty_cache()


def peak_memory_mb(device, *modules, run) -> float:
    """GPU memory one call needs: its weights plus the peak it allocates above what was
    allocated before (other pipelines' weights stay resident); NaN off CUDA."""
    import torch
    if device.type != 'cuda':
        return float('nan')
    weights = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    run()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base + weights) / 2**20


def run_node(report, master, device, modes, frames: int, rate: float, dry_run: bool) -> None:
    """The node end to end: a 30 Hz 640x480 camera in, depth and points out (the harness's
    camera messages); per mode its latency p50/p95 and output rate."""
    try:
        import rclpy   # noqa: F401
    except ImportError as exc:
        report.data['skipped'].append(f'node: rclpy not importable ({exc})')
        return
    tmp = Path(tempfile.mkdtemp(prefix='gpu_node_'))
    checkpoint = master.save(tmp / 'model')
    for mode in modes:
        if report.left_s() < 120:   # model load, warm-up, 5 s of camera, shutdown
            report.data['skipped'].append(f'node: {mode} (budget)')
            continue
        params = {'checkpoint': str(checkpoint), 'device': str(device), 'mode': mode,
                  'steps': '1', 'processing_resolution': 64 if dry_run else 640,
                  'min_processing_resolution': 64,
                  'max_latency_ms': 60000.0, 'max_frame_age_ms': 60000.0}
        try:
            result = node_flood(params, frames, rate, tmp)
        except Exception as exc:
            report.data['errors'].append(f'node: {mode}: {exc!r}')
            continue
        result.update({'mode': mode, 'params': params})
        report.data['node'].append(result)
        print(f"node {mode}: latency p50 {result['depth_latency_ms']['p50']:.1f} ms, p95 "
              f"{result['depth_latency_ms']['p95']:.1f} ms, {result['depth_hz']:.1f} Hz",
              flush=True)
        report.save()


def node_flood(params: dict, frames: int, rate: float, tmp: Path) -> dict:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2

    from metricgold_core.ros_format import stamp_ns
    from metricgold_ros.harness import camera_messages, latency_stats, NodeProcess
    from metricgold_ros.harness import pick_domain_id, publish_paced, ros_env, stream_image
    from metricgold_ros.harness import use_env, write_params

    # the node in a domain of its own, which this process joins
    domain = pick_domain_id()
    env = ros_env(domain, large_data=True)
    node_process = NodeProcess(write_params(tmp / 'params.yaml', params), env,
                               tmp / f"node_{params['mode']}.log", namespace='')
    use_env(env)
    rclpy.init(domain_id=domain)
    node = rclpy.create_node('gpu_bench_camera')
    qos = QoSProfile(depth=5)
    image_pub = node.create_publisher(Image, '/cam/image', qos)
    info_pub = node.create_publisher(CameraInfo, '/cam/camera_info', qos)
    lock = threading.Lock()
    got = {'depth': {}, 'points': {}}
    arrivals = {'depth': [], 'points': []}

    def sink(kind):
        def on_message(msg):
            now = time.time_ns()
            with lock:
                got[kind][stamp_ns(msg.header)] = (now - stamp_ns(msg.header)) / 1e6
                arrivals[kind].append(time.monotonic())
        return on_message

    node.create_subscription(Image, '/depth', sink('depth'), QoSProfile(depth=5))
    node.create_subscription(PointCloud2, '/points', sink('points'), QoSProfile(depth=5))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    rgb = stream_image()

    def answered():
        image, info = camera_messages(time.time_ns(), rgb)
        info_pub.publish(info)
        image_pub.publish(image)
        return bool(got['points'])
    try:
        # model load and the warm-up (compiles); RuntimeError with the log's end if it fails
        node_process.wait_ready(answered, 240.0, period_s=0.2)
        time.sleep(1.0)
        with lock:
            for kind in got:
                got[kind].clear()
                arrivals[kind].clear()
        sent, seconds = publish_paced(image_pub, info_pub, rgb, frames, rate)
        send_hz = frames / seconds
        time.sleep(3.0)
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
        node_process.stop()
    result = {'frames_sent': frames, 'input_hz': send_hz, 'size': f'{rgb.shape[1]}x'
              f'{rgb.shape[0]}'}
    with lock:
        for kind in ('depth', 'points'):
            lat = [got[kind][s] for s in sent if s in got[kind]]
            times = arrivals[kind]
            hz = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
            result[f'{kind}_received'] = len(lat)
            result[f'{kind}_hz'] = hz
            result[f'{kind}_latency_ms'] = latency_stats(lat)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default=os.environ.get('OUT', 'gpu_out'),
                        help='output folder (default: $OUT, else gpu_out)')
    parser.add_argument('--dry-run', action='store_true',
                        help='CPU, tiny preset, 32x48, 1 repeat, no compile variants')
    parser.add_argument('--node', action='store_true', help='with --dry-run: run the node too')
    parser.add_argument('--budget-s', type=float, default=420.0,
                        help='stop starting new parts after this many seconds')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--frames', type=int, default=150, help='node: camera frames')
    args = parser.parse_args(argv)

    import torch
    if args.dry_run:
        device, preset, repeats = torch.device('cpu'), 'tiny', 1
        sizes, variant_sizes = [(32, 48)], [(32, 48)]
        variants = [('float32 nchw', {'dtype': 'float32', 'channels_last': False}),
                    ('bfloat16', {'dtype': 'bfloat16'})]   # float16 convs crawl on a CPU
        default = ('float32', {'dtype': 'float32'})
    else:
        if not torch.cuda.is_available():
            print('no CUDA device: run with --dry-run on a CPU', file=sys.stderr)
            return 2
        device, preset, repeats = torch.device('cuda'), 'sd2', args.repeats
        sizes, variant_sizes = [(480, 640), (720, 1280)], [(480, 640), (720, 1280)]
        variants, default = list(VARIANTS), DEFAULT_CONFIG
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out / 'gpu_realtime.json', args.budget_s)
    report.data.update({'environment': environment(device), 'preset': preset,
                        'dry_run': args.dry_run, 'repeats': repeats,
                        'default_config': default[0]})
    report.save()
    t0 = time.monotonic()
    master = master_model(preset)
    report.data['model_build_s'] = round(time.monotonic() - t0, 1)
    modes = ('exact', 'fast')
    run_cases(report, master, device, [default],
              [(h, w, n) for h, w in sizes for n in (1, 2)], modes, repeats, 'matrix')
    if not args.dry_run or args.node:
        run_node(report, master, device, modes, 10 if args.dry_run else args.frames, 30.0,
                 args.dry_run)
    for h, w in variant_sizes:   # the default again, so each option has its baseline
        run_cases(report, master, device, [default] + variants, [(h, w, 1)], modes, repeats,
                  'variants')
    report.save()
    print(f'wrote {report.path} ({report.data["elapsed_s"]} s; skipped '
          f'{len(report.data["skipped"])}, errors {len(report.data["errors"])})', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
