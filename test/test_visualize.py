"""Colour maps and the one comparison panel of evaluate, training validation and the demo."""
import numpy as np

from metricgold_core.visualize import colorize_depth, comparison_panel, TURBO_LUT

RNG = np.random.default_rng(3)


def test_comparison_panel_columns_share_the_truth_range_and_map_the_error():
    gt = (RNG.random((16, 20)) * 4 + 1).astype(np.float32)
    pred = gt.copy()
    pred[:, :5] *= 1.25          # AbsRel 0.25: the middle of the 0..0.5 error range
    pred[:, 5:10] *= 3.0         # AbsRel 2.0: clipped to the red end
    gt[0, :] = np.nan            # no truth: not scored
    rgb = RNG.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    scored = np.ones(gt.shape, bool)
    scored[:, 18:] = False       # masked out by the caller
    panel = comparison_panel(rgb, pred, gt, scored)
    assert panel.shape == (16, 80, 3) and panel.dtype == np.uint8
    np.testing.assert_array_equal(panel[:, :20], rgb)
    lo, hi = np.percentile(gt[np.isfinite(gt)], [2, 98])
    np.testing.assert_array_equal(panel[:, 20:40], colorize_depth(pred, lo, hi))
    np.testing.assert_array_equal(panel[:, 40:60], colorize_depth(gt, lo, hi))
    error = panel[:, 60:]
    assert (error[0] == 0).all() and (error[:, 18:] == 0).all()
    np.testing.assert_array_equal(error[1:, :5], np.broadcast_to(TURBO_LUT[127], (15, 5, 3)))
    np.testing.assert_array_equal(error[1:, 5:10], np.broadcast_to(TURBO_LUT[255], (15, 5, 3)))
    np.testing.assert_array_equal(error[1:, 10:18], np.broadcast_to(TURBO_LUT[0], (15, 8, 3)))


def test_comparison_panel_without_truth_takes_the_prediction_range():
    pred = (RNG.random((8, 8)) * 3 + 0.5).astype(np.float32)
    gt = np.full((8, 8), np.nan, np.float32)
    panel = comparison_panel(np.zeros((8, 8, 3), np.uint8), pred, gt)
    np.testing.assert_array_equal(panel[:, 8:16], colorize_depth(pred))
    assert not panel[:, 16:].any()
