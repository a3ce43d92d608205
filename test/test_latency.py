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
