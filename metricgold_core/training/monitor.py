"""What a person sees of a training run and how they stop it: metrics.jsonl, TensorBoard,
the progress bar, and SIGTERM / SIGINT turned into a checkpoint at the end of the step."""
from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path
import signal

LOG = logging.getLogger(__name__)


class SignalFlag:
    """Within `with`, SIGTERM/SIGINT only set `signum`; the loop saves and stops at step end."""

    def __init__(self):
        self.signum, self._old = None, {}

    def _handle(self, signum, frame):
        if self.signum is not None:  # second signal: the user insists
            raise KeyboardInterrupt
        self.signum = signum
        LOG.warning('signal %d: saving a checkpoint at the end of this step', signum)

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


def open_tensorboard(cfg, out: Path):
    if not cfg['log']['tensorboard']:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        LOG.warning('tensorboard is not installed: no TensorBoard logs (pip install tensorboard)')
        return None
    return SummaryWriter(str(out / 'tensorboard'))


def open_progress(cfg, start: int, main: bool):
    if not (main and cfg['log']['progress']):
        return None
    from tqdm.auto import tqdm
    return tqdm(total=cfg['max_steps'], initial=start, desc=cfg['name'], dynamic_ncols=True)


def record(metrics_log, writer, step: int, scalars: dict) -> None:
    if metrics_log is not None:
        metrics_log.write(json.dumps({'step': step, **scalars}) + '\n')
        metrics_log.flush()
    if writer is not None:
        for key, value in scalars.items():
            if math.isfinite(value):
                writer.add_scalar(key, value, step)


def format_values(values: dict) -> str:
    return ', '.join(f'{k} {v:.4f}' for k, v in values.items())
