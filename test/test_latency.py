"""Latency planning: candidate processing resolutions and the steps / resolution choice."""
import pytest

from metricgold_ros.latency import candidate_resolutions, LatencyPlanner


def test_candidate_resolutions_descend_to_the_minimum():
    assert candidate_resolutions(256, 128) == [256, 192, 144, 128]
    assert candidate_resolutions(128, 128) == [128]
    assert candidate_resolutions(100, 300) == [100]


def test_planner_prefers_two_steps_then_one_then_smaller_resolution():
    planner = LatencyPlanner(alpha=1.0)
    def hw(res):   # noqa: E306 - a 4:3 image
        return res * 3 // 4, res
    assert planner.choose(100.0, 'auto', 256, 64, hw).predicted_ms is None   # nothing measured
    planner.observe({'total': 60.0, 'denoise': 20.0}, 1, hw(256))   # fixed 40, step 20 ms
    assert planner.predict_ms(2, hw(256)) == pytest.approx(80.0)
    plan = planner.choose(100.0, 'auto', 256, 64, hw)
    assert (plan.steps, plan.processing_resolution) == (2, 256)
    plan = planner.choose(70.0, 'auto', 256, 64, hw)
    assert (plan.steps, plan.processing_resolution) == (1, 256)
    plan = planner.choose(30.0, 'auto', 256, 64, hw)
    assert plan.steps == 1 and plan.processing_resolution < 256 and plan.predicted_ms <= 30.0
    plan = planner.choose(1.0, 'auto', 256, 64, hw)   # nothing fits: the cheapest
    assert (plan.steps, plan.processing_resolution) == (1, 64)
    plan = planner.choose(30.0, '2', 256, 64, hw)   # fixed steps: only resolution adapts
    assert plan.steps == 2 and plan.processing_resolution < 256
    assert planner.choose(1000.0, '1', 256, 64, hw).steps == 1


def test_planner_does_not_follow_jitter_up_but_leaves_a_plan_that_no_longer_fits():
    from metricgold_ros.latency import UPGRADE_AFTER, UPGRADE_MARGIN

    planner = LatencyPlanner(alpha=1.0)
    def hw(res):   # noqa: E306 - a 4:3 image
        return res * 3 // 4, res
    planner.observe({'total': 60.0, 'denoise': 20.0}, 1, hw(256))   # 2 steps: 80 ms, 1: 60 ms
    assert planner.choose(70.0, 'auto', 256, 64, hw).steps == 1
    changes = planner.changes
    # a budget jittering around the 2-step cost: the plan stays
    for budget in (81.0, 79.0, 82.0, 78.0, 85.0, 70.0, 90.0, 79.5) * 3:
        assert planner.choose(budget, 'auto', 256, 64, hw).steps == 1
    assert planner.changes == changes
    # room for 2 steps with the margin, frame after frame: taken after UPGRADE_AFTER of them
    roomy = 80.0 / UPGRADE_MARGIN + 1.0
    steps = [planner.choose(roomy, 'auto', 256, 64, hw).steps for _ in range(UPGRADE_AFTER)]
    assert steps == [1] * (UPGRADE_AFTER - 1) + [2]
    assert planner.changes == changes + 1
    # within the budget, though not with the margin: 2 steps stay
    assert planner.choose(81.0, 'auto', 256, 64, hw).steps == 2
    # no longer fits: left at once, for the best plan that fits
    plan = planner.choose(65.0, 'auto', 256, 64, hw)
    assert (plan.steps, plan.processing_resolution) == (1, 256)
    plan = planner.choose(30.0, 'auto', 256, 64, hw)
    assert plan.processing_resolution < 256 and plan.predicted_ms <= 30.0
    assert planner.changes == changes + 3


def test_a_budget_at_a_plans_edge_does_not_flip_the_plan_frame_by_frame():
    """Costs with 10 % noise and a budget jittering by a frame period (the frame's age) right
    at the 2-step cost: the plan settles instead of changing every few frames."""
    import numpy as np

    planner, rng = LatencyPlanner(), np.random.default_rng(0)
    def hw(res):   # noqa: E306 - a 4:3 image
        return res * 3 // 4, res
    steps_used = []
    for _ in range(1000):
        plan = planner.choose(250.0 - rng.uniform(0.0, 33.3), 'auto', 256, 128, hw)
        h, w = hw(plan.processing_resolution)
        mpx = h * w / 1e6
        fixed = 2400.0 * mpx * rng.lognormal(0.0, 0.1)   # 2 steps at 256 px: ~221 ms
        step = 1000.0 * mpx * plan.steps * rng.lognormal(0.0, 0.1)
        planner.observe({'total': fixed + step, 'denoise': step}, plan.steps, (h, w))
        planner.observe_overhead(5.0)
        steps_used.append(plan.steps)
    assert planner.changes <= 5, planner.changes      # without the hysteresis: ~250
    assert steps_used[-1] in (1, 2)
