"""The options every model run takes (device, dtype, mode, compile...): values and descriptions,
without torch.

The node checks its parameters and the CLI builds its --help before torch is imported, so the
choices live here; pipeline.py resolves them into torch objects. DESCRIPTIONS is the one text of
each option that the node's parameters (metricgold_ros.params, hence config/depth.yaml and
docs/NODE.md) and the `metricgold` commands' --help share.
"""
from __future__ import annotations

MODES = ('exact', 'fast')    # exact: diffusers' maths; fast: light decoder + pooled attention
DTYPES = ('auto', 'float32', 'float16', 'bfloat16')
# torch.compile of the encoder, UNet and decoder: off, or one of torch.compile's modes
# ('reduce-overhead' captures CUDA graphs of the fixed-shape calls on a GPU).
COMPILE_MODES = ('off', 'default', 'reduce-overhead', 'max-autotune')
# CPU instruction sets that compute bfloat16 natively (oneDNN uses them for bf16 convs and
# matrix products); without them torch emulates bf16 on CPU, which is slower than float32.
CPU_BF16_FLAGS = ('amx_bf16', 'avx512_bf16')

# Keyed by the node's parameter name; the CLI option is the same name with dashes. A text ends
# where the option means the same everywhere: the node or a command appends what only it has
# (the node's `steps: auto`, a command's default).
DESCRIPTIONS = {
    'device': 'Torch device: auto (cuda if available), cpu, cuda or cuda:N.',
    'dtype': 'Weights dtype: auto (float16 on CUDA, float32 on a CPU), float32, float16, '
             'bfloat16 (faster on AVX512-BF16 / AMX CPUs, less exact: docs/PERFORMANCE.md); '
             'under float16 / bfloat16 the latents and the last decoder layer stay float32.',
    'mode': "exact: diffusers' maths; fast: the checkpoint's distilled light decoder and pooled "
            'VAE attention (faster, approximate; docs/PERFORMANCE.md "Fast mode").',
    'compile': 'torch.compile of the encoder, UNet and decoder (static shapes): off, default, '
               'reduce-overhead (CUDA graphs on a GPU) or max-autotune, compiled in the '
               'warm-up. Slower on CPU (docs/PERFORMANCE.md).',
    'steps': 'Denoising (DDIM) steps',
    'processing_resolution': 'Long side (px) the network sees',
    'seed': 'Seed of the initial noise (same image + seed = same depth).',
    'depth_resolution': 'Size of the depth outputs: input (the camera image) or processing '
                        '(what the network saw; smaller and faster).',
    'fallback_hfov_deg': 'Horizontal field of view (deg) assumed for a camera without '
                         'intrinsics',
    'ground_max_tilt_deg': 'ground_plane: largest angle between the floor normal and the '
                           "camera's down direction (set it just above the mount's pitch).",
    'scale_source': "Anchor of the metric scale: none (the model's own scale), sparse_depth "
                    '(sparse metric depth registered to the image: a LiDAR, ToF or stereo), '
                    'ground_plane (a known camera height over a fitted floor; metric models '
                    "only) or odometry (the camera's metric motion: points tracked over the last "
                    'frames and triangulated with the poses, else a photometric fit of the '
                    'scale; a relative model gets metres from the points only).',
    'camera_height_m': 'ground_plane: height of the camera over the floor / road (m).',
    'camera_mount': "odometry: pose of the camera's optical frame in the odometry's child frame "
                    '(x y z in m, then the quaternion qx qy qz qw)',
    'scale_correction': 'How the metric points of a frame (sparse depth, a LiDAR cloud, points '
                        'triangulated from odometry) correct the depth: global (one scale, or '
                        'scale + shift for relative models, per frame) or local (on top of the '
                        'global fit, an edge-aware per-pixel correction spread from the points, '
                        'pulled to the global fit away from them; global where a frame has too '
                        'few or bunched points).',
    'wait_for_scale': "Nothing is output before the scale source's first accepted fit (until "
                      "then the depth is at the model's own scale, which would enter a map at "
                      'another scale than what follows).',
    'scale_smoothing': 'Weight of the past in the log-space scale filter (0 = a new scale per '
                       'frame); outlier scales are rejected.',
}


def check_device(device: str) -> str:
    """`device` if it names auto, cpu, cuda or cuda:N, else ValueError saying so."""
    if device not in ('auto', 'cpu', 'cuda') and not str(device).startswith('cuda:'):
        raise ValueError(f'`device` must be auto, cpu, cuda or cuda:N, got {device!r}.')
    return device


def check_compile(compile_mode: str) -> str:
    """`compile_mode` if it is one of COMPILE_MODES, else ValueError saying so."""
    if compile_mode not in COMPILE_MODES:
        raise ValueError(f'`compile` must be one of {", ".join(COMPILE_MODES)}, '
                         f'got {compile_mode!r}.')
    return compile_mode


def cpu_bf16_flags(cpuinfo: str | None = None) -> tuple:
    """The CPU_BF16_FLAGS this CPU has (from /proc/cpuinfo, or the `cpuinfo` text given);
    () where the file is missing (not Linux) or lists none."""
    if cpuinfo is None:
        try:
            with open('/proc/cpuinfo', encoding='utf-8', errors='replace') as f:
                cpuinfo = f.read()
        except OSError:
            return ()
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith('flags'):
            flags.update(line.partition(':')[2].split())
    return tuple(flag for flag in CPU_BF16_FLAGS if flag in flags)


def cli_help(name: str, suffix: str = '') -> str:
    """DESCRIPTIONS[name], its % escaped for argparse, + `suffix` (argparse help text itself,
    e.g. with %(default)s)."""
    return DESCRIPTIONS[name].replace('%', '%%') + suffix
