"""The values of the options every model run takes (device, dtype, mode, compile), without torch.

The node checks its parameters and the CLI builds its --help before torch is imported, so the
choices live here; pipeline.py resolves them into torch objects.
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
