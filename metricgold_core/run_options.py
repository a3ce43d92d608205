"""The values of the options every model run takes (device, dtype, mode), without torch.

The node checks its parameters and the CLI builds its --help before torch is imported, so the
choices live here; pipeline.py resolves them into torch objects.
"""
from __future__ import annotations

MODES = ('exact', 'fast')    # exact: diffusers' maths; fast: light decoder + pooled attention
DTYPES = ('auto', 'float32', 'float16', 'bfloat16')


def check_device(device: str) -> str:
    """`device` if it names auto, cpu, cuda or cuda:N, else ValueError saying so."""
    if device not in ('auto', 'cpu', 'cuda') and not str(device).startswith('cuda:'):
        raise ValueError(f'`device` must be auto, cpu, cuda or cuda:N, got {device!r}.')
    return device
