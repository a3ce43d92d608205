"""Depth metrics against values worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metricgold_core.evaluation.metrics import aggregate, compute_metrics, markdown_table, METRICS

GT = np.array([[1.0, 2.0], [4.0, 8.0]])
PRED = np.array([[1.0, 2.5], [3.0, 8.0]])


def test_each_metric_by_hand():
    m = compute_metrics(PRED, GT)
    # errors: 0, +0.5, -1, 0 on gt 1, 2, 4, 8
    assert m['abs_rel'] == pytest.approx((0 + 0.5 / 2 + 1 / 4 + 0) / 4)          # 0.125
    assert m['sq_rel'] == pytest.approx((0 + 0.25 / 2 + 1 / 4 + 0) / 4)          # 0.09375
    assert m['rmse'] == pytest.approx(math.sqrt((0.25 + 1) / 4))                 # 0.5590
    a, b = math.log(1.25), math.log(0.75)  # log(pred / gt) of the two wrong pixels
    assert m['rmse_log'] == pytest.approx(math.sqrt((a * a + b * b) / 4))       # 0.1820
    assert m['log10'] == pytest.approx((math.log10(1.25) - math.log10(0.75)) / 4)  # 0.0555
    mean, mean_sq = (a + b) / 4, (a * a + b * b) / 4
    assert m['silog'] == pytest.approx(100 * math.sqrt(mean_sq - mean ** 2))    # 18.13
    assert m['delta1'] == 0.5   # ratios 1, 1.25, 1.333, 1: 1.25 is not < 1.25
    assert m['delta2'] == 1.0 and m['delta3'] == 1.0
    assert m['valid_pixels'] == 4 and m['scale'] == 1.0 and m['shift'] == 0.0
    perfect = compute_metrics(GT, GT)
    assert perfect['abs_rel'] == 0.0 and perfect['silog'] == 0.0 and perfect['delta1'] == 1.0


def test_silog_ignores_a_global_scale():
    m = compute_metrics(PRED * 3.0, GT)
    assert m['silog'] == pytest.approx(compute_metrics(PRED, GT)['silog'])
    assert m['abs_rel'] > 1.0


def test_median_and_affine_alignment_recover_the_truth():
    m = compute_metrics(GT * 2.0, GT, alignment='median')
    assert m['scale'] == pytest.approx(0.5) and m['abs_rel'] == pytest.approx(0.0)
    m = compute_metrics(GT * 2.0 + 1.0, GT, alignment='affine')
    assert m['scale'] == pytest.approx(0.5) and m['shift'] == pytest.approx(-0.5)
    assert m['rmse'] == pytest.approx(0.0, abs=1e-12) and m['delta1'] == 1.0
    # median of gt = 3, median of pred = 2.75 (means of the middle pair)
    m = compute_metrics(PRED, GT, alignment='median')
    assert m['scale'] == pytest.approx(3.0 / 2.75)
    with pytest.raises(ValueError, match='`alignment` must be one of'):
        compute_metrics(PRED, GT, alignment='scale')


def test_masks_and_caps():
    gt = np.array([[1.0, np.nan, 100.0, 0.0, 2.0]])
    pred = np.array([[1.0, 5.0, 1.0, 5.0, 0.0]])
    m = compute_metrics(pred, gt, max_depth=80.0)
    # only pixels 0 and 4 count (NaN, beyond the cap and 0 are not ground truth); the 0
    # prediction is clipped to min_depth: abs_rel = (0 + (2 - 0.001) / 2) / 2
    assert m['valid_pixels'] == 2
    assert m['abs_rel'] == pytest.approx((2 - 1e-3) / 2 / 2)
    mask = np.array([[True, True, True, True, False]])
    m = compute_metrics(pred, gt, mask=mask, max_depth=80.0)
    assert m['valid_pixels'] == 1 and m['abs_rel'] == 0.0
    pred_over = np.array([[200.0, 1, 1, 1, 2.0]])
    assert compute_metrics(pred_over, gt, max_depth=80.0)['abs_rel'] == pytest.approx(79 / 2)
    empty = compute_metrics(pred, np.full_like(gt, np.nan))
    assert empty['valid_pixels'] == 0 and math.isnan(empty['abs_rel'])
    assert math.isnan(empty['coverage'])


def test_coverage_counts_ground_truth_the_prediction_left_invalid():
    gt = np.array([[1.0, 2.0, 3.0, 4.0, np.nan]])
    pred = np.array([[1.0, np.nan, 3.0, np.inf, 5.0]])   # two scorable pixels given no depth
    m = compute_metrics(pred, gt)
    assert m['valid_pixels'] == 2 and m['coverage'] == pytest.approx(0.5)
    assert m['abs_rel'] == 0.0                         # scored on the rest only
    rows = [m, compute_metrics(gt, gt)]
    assert aggregate(rows)['coverage'] == pytest.approx(0.75)
    with pytest.raises(ValueError, match=r'prediction \(1, 5\) and ground truth \(2, 2\)'):
        compute_metrics(pred, GT)


def test_aggregate_and_table():
    rows = [compute_metrics(PRED, GT), compute_metrics(GT, GT),
            compute_metrics(PRED, np.full_like(GT, np.nan))]
    summary = aggregate(rows)
    assert summary['images'] == 2
    assert summary['abs_rel'] == pytest.approx(0.125 / 2)
    table = markdown_table({'tiny': summary})
    lines = table.strip().splitlines()
    assert lines[0].startswith('| | abs_rel ↓ | sq_rel ↓') and 'delta1 ↑' in lines[0]
    assert lines[2].startswith('| tiny | 0.062 | ')
    assert len(lines[2].split('|')) == len(METRICS) + 3


def _step_scene(edge_col: int = 8) -> np.ndarray:
    """A 16x16 depth map: a 1 m box on the left, a 3 m wall on the right of `edge_col`."""
    depth = np.full((16, 16), 3.0)
    depth[:, :edge_col] = 1.0
    return depth


def test_boundary_f1_by_hand():
    from metricgold_core.evaluation.metrics import boundary_f1, occlusion_edges
    gt = _step_scene()
    valid = np.ones_like(gt, dtype=bool)
    right, left, down, up = occlusion_edges(gt, valid, 1.05)
    # Only the box's last column occludes (towards the right): 16 edge pixels, no others.
    assert right.sum() == 16 and right[:, 7].all()
    assert left.sum() == 0 and down.sum() == 0 and up.sum() == 0
    # The same edge at any scale is perfect; a blurred ramp has no 5 % step anywhere.
    assert boundary_f1(gt * 7.0, gt) == pytest.approx(1.0)
    ramp = np.tile(np.linspace(1.0, 1.5, 16), (16, 1))  # < 4 % per pixel: no edge
    assert boundary_f1(ramp, gt) == 0.0
    # Edge one column off: precision and recall 0 (edges must fall on the same pixel pair).
    assert boundary_f1(_step_scene(9), gt) == 0.0
    # Box only in the top half: 8 of the 16 true edge pixels found (recall 0.5), plus 8 edges
    # on the box's new bottom side that the truth lacks (precision 8 / 16) -> F1 0.5.
    half = gt.copy()
    half[8:, :8] = 3.0
    assert boundary_f1(half, gt) == pytest.approx(0.5)


def test_boundary_f1_thresholds_and_masks():
    from metricgold_core.evaluation.metrics import boundary_f1
    gt = _step_scene()
    gt[:, 8:] = 1.15  # a 15 % step: an edge for ratios 1.05 .. 1.15, not for 1.1667 .. 1.25
    pred = _step_scene()  # a 3x step: an edge at every ratio
    # The 5 thresholds where gt has an edge score 1; where it has none they do not count.
    assert boundary_f1(pred, gt) == pytest.approx(1.0)
    # An extra edge in the prediction halves precision at every counted threshold.
    pred[:, 12:] = 9.0
    assert boundary_f1(pred, gt) == pytest.approx(2 * 0.5 / 1.5)
    # Flat truth: nothing to find -> NaN (left out of means); masked pixels make no edge.
    assert np.isnan(boundary_f1(pred, np.full((16, 16), 2.0)))
    mask = np.ones((16, 16), dtype=bool)
    mask[:, 7] = False
    assert np.isnan(boundary_f1(pred, gt, mask))
    metrics = compute_metrics(pred, gt)
    assert metrics['boundary_f1'] == pytest.approx(2 * 0.5 / 1.5)
