"""A stage's learning rate over its steps, and where a wall-clock budget ends it.

    lr_at(step, optim)              linear warm-up, then exponential decay
    StepBudget(seconds, first)      the last step that fits in `max_seconds`
    shortened_schedule(cfg, last)   the LR decay scaled to a stage that ends early
"""
from __future__ import annotations

import time


def lr_at(step: int, optim: dict) -> float:
    """Linear warm-up, then exponential decay to lr * final_lr_ratio over decay_steps."""
    warm = min(1.0, (step + 1) / optim['warmup_steps']) if optim['warmup_steps'] > 0 else 1.0
    decay_steps = max(1, optim['decay_steps'])
    done = min(max(step - optim['warmup_steps'], 0), decay_steps) / decay_steps
    return optim['lr'] * warm * optim['final_lr_ratio'] ** done


class StepBudget:
    """`max_seconds`: the step at which a stage's wall-clock budget runs out.

    The first `SKIP` steps (allocation, autotuning, worker start) are not timed; the next
    `TIMED` give the seconds per step, and `plan` then returns the last step that fits in what
    is left of the budget (3 % kept for validation and the export), never beyond max_steps.
    Until then it returns None, or the current step if the budget is already spent."""

    SKIP, TIMED = 10, 40

    def __init__(self, seconds: float, first_step: int):
        self.seconds, self.first = float(seconds), first_step
        self.t0 = time.perf_counter()
        self.t_mark = None

    def plan(self, step: int, max_steps: int) -> int | None:
        now = time.perf_counter()
        done = step - self.first
        if now - self.t0 >= self.seconds:
            return step
        if done == self.SKIP:
            self.t_mark = now
        if self.t_mark is None or done < self.SKIP + self.TIMED:
            return None
        per_step = (now - self.t_mark) / (done - self.SKIP)
        left = 0.97 * self.seconds - (now - self.t0)
        return max(step, min(max_steps, step + int(left / per_step)))


def shortened_schedule(cfg: dict, last_step: int) -> dict:
    """The optim section with the LR decay scaled to a stage that ends at `last_step` instead
    of max_steps (unchanged when they are equal)."""
    optim = dict(cfg['optim'])
    if last_step != cfg['max_steps']:
        optim['decay_steps'] = max(1, round(optim['decay_steps'] * last_step / cfg['max_steps']))
    return optim
