"""Colour maps and the one comparison panel of evaluate, training validation and the demo."""
import numpy as np
import pytest

from metricgold_core.visualize import color_range, colorize_depth, comparison_panel
from metricgold_core.visualize import FALLBACK_RANGE_M, TURBO_LUT

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


def test_color_range_takes_given_ends_else_percentiles_of_valid_pixels():
    depth = np.linspace(1.0, 101.0, 101 * 8, dtype=np.float32).reshape(8, 101)
    depth[0, :5] = [np.nan, np.inf, 0.0, -1.0, np.nan]
    valid = depth[np.isfinite(depth) & (depth > 0)]
    assert color_range(depth, 2.0, 9.0) == (2.0, 9.0)
    assert color_range(depth) == pytest.approx(tuple(np.percentile(valid, (2, 98))))
    lo, hi = color_range(depth, 0.0, 9.0)          # 0 (or None) means automatic, per end
    assert lo == pytest.approx(np.percentile(valid, 2)) and hi == 9.0
    sub = depth[::4, ::4]
    assert color_range(depth, subsample=4) == pytest.approx(
        tuple(np.percentile(sub[np.isfinite(sub) & (sub > 0)], (2, 98))))
    assert color_range(np.full((4, 4), np.nan, np.float32)) == FALLBACK_RANGE_M


def test_percentiles_match_numpy_linear_interpolation():
    from metricgold_core.visualize import percentiles

    for n in (1, 2, 3, 50, 1001):
        values = RNG.random(n).astype(np.float32) * 10
        qs = (0, 2, 37.5, 98, 100)
        np.testing.assert_allclose(percentiles(values.copy(), qs), np.percentile(values, qs),
                                   rtol=1e-6)


@pytest.mark.parametrize('log_scale', [True, False])
def test_colorize_depth_fills_a_given_buffer_with_the_same_colours(log_scale):
    depth = (np.exp(RNG.random((48, 64)) * 4) * 0.1).astype(np.float32)
    depth[0, :4] = [np.nan, np.inf, 0.0, -1.0]
    out = np.full((48, 64, 3), 7, np.uint8)
    assert colorize_depth(depth, 0.3, 4.0, log_scale, bgr=True, out=out) is out
    np.testing.assert_array_equal(out, colorize_depth(depth, 0.3, 4.0, log_scale, bgr=True))
    np.testing.assert_array_equal(out[..., ::-1], colorize_depth(depth, 0.3, 4.0, log_scale))
    assert (out[0, :4] == 0).all()
    # the other invalid bit patterns (negative NaN, a denormal, -inf) and the valid extremes
    edge = np.array([-np.nan, 1e-45, -np.inf, np.finfo(np.float32).tiny,
                     np.finfo(np.float32).max], np.float32)
    coloured = colorize_depth(edge[None], 0.3, 4.0, log_scale)[0]
    assert (coloured[:3] == 0).all()
    assert (coloured[3] == TURBO_LUT[255]).all() and (coloured[4] == TURBO_LUT[0]).all()
    near = colorize_depth(np.full((2, 2), 0.3, np.float32), 0.3, 4.0, log_scale)
    far = colorize_depth(np.full((2, 2), 4.0, np.float32), 0.3, 4.0, log_scale)
    assert (near == TURBO_LUT[255]).all() and (far == TURBO_LUT[0]).all()   # near = red end
    with pytest.raises(ValueError, match='out'):
        colorize_depth(depth, out=np.empty((48, 64, 4), np.uint8))


def test_a_colorizer_reused_across_sizes_and_colours_matches_a_fresh_one():
    from metricgold_core.visualize import DepthColorizer

    colorizer = DepthColorizer()
    for shape, invalid in (((48, 64), (0, 0, 0)), ((20, 30), (9, 8, 7)), ((48, 64), (1, 2, 3))):
        depth = (np.exp(RNG.random(shape) * 4) * 0.1).astype(np.float32)
        depth[0, :5] = [np.nan, np.inf, -np.inf, 0.0, -1.0]
        for log_scale in (True, False):
            ours = colorizer(depth, 0.3, 4.0, log_scale, bgr=False, invalid_color=invalid)
            # reference: the map's definition pixel by pixel (index 255 - scaled depth)
            with np.errstate(invalid='ignore', divide='ignore'):
                t = np.log(depth / 0.3) / np.log(4.0 / 0.3) if log_scale else (depth - 0.3) / 3.7
                index = np.clip(255.0 - t * 255.0, 0, 255)
            valid = np.isfinite(depth) & (depth > 0)
            expected = TURBO_LUT[np.where(valid, index, 0).astype(np.uint8)]
            expected[~valid] = invalid
            same = np.all(ours == expected, axis=-1)
            assert same.mean() > 0.99 and (ours[~valid] == invalid).all()
            np.testing.assert_array_equal(ours, colorize_depth(depth, 0.3, 4.0, log_scale,
                                                               invalid_color=invalid))
