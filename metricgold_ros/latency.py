"""Latency control: moving stage-time estimates and the (steps, resolution) choice.

Cost model, fitted online from `DepthPrediction.timings`: at processing size h x w,

    inference_ms(steps) = fixed_ms_per_mpx * h * w / 1e6 + steps * step_ms_per_mpx * h * w / 1e6

(encode/decode scale with pixels, each DDIM step is one UNet pass), plus the node's own
overhead (conversion, cloud, publishing) which does not depend on the plan. Every finished frame
updates the estimates, so the choice follows the machine's load; a 1-step frame also measures
what a second step would cost, so no trial runs are needed.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import threading

import numpy as np

VAE_ALIGN = 8     # processing sizes are snapped to this so candidate costs are distinct
# A better (costlier) plan is taken only after it has fitted UPGRADE_AFTER frames in a row
# within UPGRADE_MARGIN of the budget; a plan that no longer fits is left at once. Without this
# the plan followed the budget's jitter frame by frame, and each change of plan moves the depth
# (1 <-> 2 steps: 8-18 % AbsRel on the packaged model; resolution changes too).
UPGRADE_AFTER = 5
UPGRADE_MARGIN = 0.85


class MovingEstimate:
    """Exponential moving average that starts at its first sample."""

    def __init__(self, alpha: float = 0.2):
        self.alpha = alpha
        self.value = None

    def update(self, sample: float) -> float:
        if not np.isfinite(sample):
            return self.value
        self.value = sample if self.value is None else \
            (1.0 - self.alpha) * self.value + self.alpha * sample
        return self.value


@dataclass(frozen=True)
class Plan:
    steps: int
    processing_resolution: int
    predicted_ms: float | None      # None until the first frame has been timed


def candidate_resolutions(start: int, minimum: int) -> list:
    """`start`, then 3/4 of it repeatedly (snapped to 8 px) down to `minimum`, descending."""
    start = max(int(start), 1)
    out = [start]
    minimum = min(max(int(minimum), VAE_ALIGN), start)
    res = start
    while True:
        res = max(minimum, int(res * 0.75) // VAE_ALIGN * VAE_ALIGN)
        if res >= out[-1]:
            break
        out.append(res)
        if res == minimum:
            break
    return out


class LatencyPlanner:
    """Picks steps and processing resolution to fit a latency budget from measured timings."""

    def __init__(self, alpha: float = 0.2):
        self.fixed_ms_per_mpx = MovingEstimate(alpha)
        self.step_ms_per_mpx = MovingEstimate(alpha)
        self.overhead_ms = MovingEstimate(alpha)
        self._lock = threading.Lock()
        self._plans = None       # the candidate plans of the last choice (a change: start over)
        self._current = None     # index in them of the plan in use
        self._better = 0         # frames in a row a better plan fitted with the margin
        self._last = None        # (steps, resolution) returned last
        self.changes = 0         # how often the returned plan changed (diagnostics)

    def observe(self, timings: dict, steps: int, processing_hw: tuple) -> None:
        """Feed one prediction's `timings` (ms) at `processing_hw` with `steps` steps."""
        mpx = processing_hw[0] * processing_hw[1] / 1e6
        if mpx <= 0 or steps < 1:
            return
        denoise = float(timings.get('denoise', 0.0))
        fixed = float(timings.get('total', 0.0)) - denoise
        with self._lock:
            self.fixed_ms_per_mpx.update(max(fixed, 0.0) / mpx)
            self.step_ms_per_mpx.update(max(denoise, 0.0) / steps / mpx)

    def observe_overhead(self, ms: float) -> None:
        with self._lock:
            self.overhead_ms.update(ms)

    def predict_ms(self, steps: int, processing_hw: tuple) -> float | None:
        """Predicted time from hand-over to published outputs, or None before any data."""
        with self._lock:
            fixed, step = self.fixed_ms_per_mpx.value, self.step_ms_per_mpx.value
            overhead = self.overhead_ms.value or 0.0
        if fixed is None or step is None:
            return None
        mpx = processing_hw[0] * processing_hw[1] / 1e6
        return (fixed + steps * step) * mpx + overhead

    def choose(self, budget_ms: float, steps_mode: str, resolution: int, min_resolution: int,
               size_hw_of) -> Plan:
        """The plan for the next frame: the best one whose predicted time fits `budget_ms`, else
        the cheapest, with hysteresis (UPGRADE_AFTER, UPGRADE_MARGIN) on the way up.

        Preference: 2 steps at `resolution`, then 1 step at `resolution`, then 1 step at
        smaller resolutions. `steps_mode` is 'auto', '1' or '2' (a fixed count is never
        changed; only the resolution then adapts). `size_hw_of(res)` gives the processing size.
        """
        step_options = {'auto': (2, 1), '1': (1,), '2': (2,)}[steps_mode]
        candidates = candidate_resolutions(resolution, min_resolution)
        plans = [(s, candidates[0]) for s in step_options]
        plans += [(step_options[-1], res) for res in candidates[1:]]
        predicted = [self.predict_ms(steps, size_hw_of(res)) for steps, res in plans]
        if plans != self._plans:   # other parameters: no plan to hold on to
            self._plans, self._current, self._better = plans, None, 0
        if predicted[0] is None:
            # Nothing measured yet: start with the cheapest step count at full resolution;
            # its timings tell us what everything else costs (a probe: the first measured
            # choice takes the best plan that fits at once).
            return self._chosen(plans.index((step_options[-1], candidates[0])), plans, None)
        fits = next((i for i, ms in enumerate(predicted) if ms <= budget_ms), len(plans) - 1)
        if self._current is None or fits > self._current:   # the plan in use does not fit
            self._current, self._better = fits, 0
        elif fits < self._current:
            roomy = next((i for i, ms in enumerate(predicted)
                          if ms <= UPGRADE_MARGIN * budget_ms), len(plans) - 1)
            self._better = self._better + 1 if roomy < self._current else 0
            if self._better >= UPGRADE_AFTER:
                self._current, self._better = roomy, 0
        else:
            self._better = 0
        return self._chosen(self._current, plans, predicted[self._current])

    def _chosen(self, index: int, plans: list, predicted_ms: float | None) -> Plan:
        steps, res = plans[index]
        if self._last is not None and self._last != (steps, res):
            self.changes += 1
        self._last = (steps, res)
        return Plan(steps, res, predicted_ms)


class RateCounter:
    """Events per second over a sliding window (monotonic seconds)."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._times = deque()
        self._first_s = None
        self._lock = threading.Lock()

    def tick(self, now_s: float) -> None:
        with self._lock:
            if self._first_s is None:
                self._first_s = now_s
            self._times.append(now_s)
            self._trim(now_s)

    def rate_hz(self, now_s: float) -> float:
        with self._lock:
            self._trim(now_s)
            if self._first_s is None:
                return 0.0
            # Before a full window has passed, divide by the time actually observed.
            span = min(self.window_s, now_s - self._first_s)
            return len(self._times) / span if span > 0.1 else 0.0

    def _trim(self, now_s: float) -> None:
        while self._times and self._times[0] < now_s - self.window_s:
            self._times.popleft()


class LatencyWindow:
    """The last N latencies (ms) for percentiles."""

    def __init__(self, size: int = 200):
        self._values = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, ms: float) -> None:
        with self._lock:
            self._values.append(ms)

    def percentiles(self, *qs) -> tuple:
        with self._lock:
            values = np.array(self._values, dtype=np.float64)
        if values.size == 0:
            return tuple(float('nan') for _ in qs)
        return tuple(float(np.percentile(values, q)) for q in qs)
