"""The paper recipe's training step, measured: s/step and peak memory of the `depth` stage of
training/configs/metricgold_paper.yaml with the sd2 preset (Stable Diffusion 2's shapes; random
weights cost the time and memory of SD-2's), at the recipe's 480 x 640, micro-batch 2 and
gradient accumulation 16 (effective batch 32), bf16 autocast, gradient checkpointing on and off.

It runs the trainer's own build_run / restore / train_step (the AdamW step, clipping and EMA
included) on synthetic batches, so the figures are the model's, not the data loader's; each
setting runs in its own process so that peak memory is its own. JSON to OUT/paper_step.json,
with the recipe's schedule projected to hours on this GPU and whether the peak fits 24 GiB.

    python scripts/paper_step_bench.py --out $OUT               # on the GPU
    python scripts/paper_step_bench.py --out /tmp/x --dry-run   # CPU check: tiny preset, 32 px
"""
from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / 'training' / 'configs' / 'metricgold_paper.yaml'
GIB = 2 ** 30
RTX_3090_GIB = 24.0
CONTEXT_GIB = 0.5   # what the CUDA context takes beyond the allocator (typical, not measured)


def settings(dry_run: bool) -> dict:
    """The config overrides of the measurement (the recipe's own micro-batch and accumulation)."""
    if dry_run:
        return {'model.init': 'preset:tiny', 'device': 'cpu', 'data.height': 32,
                'data.width': 32, 'model.processing_resolution': 32}
    return {'model.init': 'preset:sd2', 'device': 'cuda'}


def measure_one(args) -> dict:
    import torch
    from metricgold_core.training import trainer
    from metricgold_core.training.config import load_config

    overrides = dict(settings(args.dry_run), **{
        'mixed_precision': args.precision, 'stage': 'depth', 'num_threads': 0,
        'model.gradient_checkpointing': args.one == 'on',
        'data.train': '[{type: procedural, probability: 1.0}]', 'data.num_workers': 0,
        'data.val_count': 0, 'log.progress': False, 'log.tensorboard': False,
        'output_dir': tempfile.mkdtemp(prefix='paper_step_')})
    cfg = load_config([str(RECIPE)], [f'{k}={v}' for k, v in overrides.items()])
    run = trainer.build_run(cfg, None)
    trainer.restore(run, 'none')
    data, micro = cfg['data'], cfg['data']['micro_batch']
    g = torch.Generator().manual_seed(0)
    shape = (micro, 1, data['height'], data['width'])
    batch = {'rgb': torch.rand((micro, 3) + shape[2:], generator=g) * 2 - 1,
             'depth_code': torch.rand(shape, generator=g) * 2 - 1,
             'valid': torch.ones(shape, dtype=torch.bool)}
    run.loader = itertools.repeat(batch)
    run.stage.train()
    cuda = run.accelerator.device.type == 'cuda'

    def sync():
        if cuda:
            torch.cuda.synchronize()

    times = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup and cuda:
            torch.cuda.reset_peak_memory_stats()
        sync()
        start = time.perf_counter()
        trainer.train_step(run)
        float(run.loss_sum)   # waits for the step
        sync()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
        run.step += 1
    params = sum(p.numel() for p in run.params)
    out = {'gradient_checkpointing': args.one == 'on', 'mixed_precision': args.precision,
           'preset': cfg['model']['init'], 'height': data['height'], 'width': data['width'],
           'micro_batch': micro, 'grad_accum': cfg['optim']['grad_accum'],
           'effective_batch': run.effective_batch, 'trainable_parameters': params,
           'timed_steps': len(times), 's_per_step': statistics.median(times),
           's_per_step_all': times, 'device': str(run.accelerator.device)}
    if cuda:
        peak_reserved = torch.cuda.max_memory_reserved() / GIB
        out.update(device_name=torch.cuda.get_device_name(),
                   peak_allocated_gib=torch.cuda.max_memory_allocated() / GIB,
                   peak_reserved_gib=peak_reserved,
                   fits_24gib=peak_reserved + CONTEXT_GIB <= RTX_3090_GIB)
    out['schedule_steps'] = cfg['max_steps']
    out['projected_hours'] = out['s_per_step'] * cfg['max_steps'] / 3600.0
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', required=True, help='folder for paper_step.json')
    p.add_argument('--dry-run', action='store_true', help='tiny preset, 32 px, CPU: a check')
    p.add_argument('--precision', default='bf16', choices=('bf16', 'fp16', 'no'))
    p.add_argument('--steps', type=int, default=3, help='timed optimizer steps per setting')
    p.add_argument('--warmup', type=int, default=1, help='untimed optimizer steps first')
    p.add_argument('--timeout', type=float, default=240, help='seconds per setting')
    p.add_argument('--one', choices=('on', 'off'), help=argparse.SUPPRESS)  # child process
    args = p.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(measure_one(args)))
        return 0
    results = []
    for checkpointing in ('on', 'off'):
        cmd = [sys.executable, __file__, '--out', str(out), '--one', checkpointing,
               '--precision', args.precision, '--steps', str(args.steps),
               '--warmup', str(args.warmup)] + (['--dry-run'] if args.dry_run else [])
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            results.append({'gradient_checkpointing': checkpointing == 'on',
                            'error': f'no result within {args.timeout:g} s'})
            continue
        if done.returncode == 0:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        else:  # e.g. out of memory: say so, keep the other setting's figures
            results.append({'gradient_checkpointing': checkpointing == 'on',
                            'error': done.stderr.strip().splitlines()[-1:]})
        print(json.dumps(results[-1]), flush=True)
    report = {'recipe': str(RECIPE.relative_to(ROOT)), 'dry_run': args.dry_run,
              'rtx_3090_gib': RTX_3090_GIB, 'assumed_cuda_context_gib': CONTEXT_GIB,
              'results': results}
    (out / 'paper_step.json').write_text(json.dumps(report, indent=2) + '\n')
    return 0 if all('error' not in r for r in results) else 1


if __name__ == '__main__':
    sys.exit(main())
