"""Scale anchors of metricgold_core.scale: sparse fits, ground plane, the cross-frame filter."""
import math

import numpy as np
import pytest

from metricgold_core import scale
from metricgold_core.camera.geometry import backproject, make_K
from metricgold_core.ros_format.images import sparse_to_metres


def scene(h=60, w=80, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(1.0, 10.0, (h, w))).astype(np.float32)


def sparse_of(depth, n, seed=0, outliers=0, noise=0.0):
    rng = np.random.default_rng(seed)
    out = np.full(depth.shape, np.nan, np.float32)
    idx = rng.choice(depth.size, n, replace=False)
    vals = depth.flat[idx] * (1 + noise * rng.standard_normal(n))
    if outliers:
        vals[:outliers] = rng.uniform(0.1, 100.0, outliers)
    out.flat[idx] = vals
    return out


def test_metric_scale_is_robust_to_outliers():
    gt = scene()
    pred = gt / 2.5
    fit = scale.fit_sparse(pred, sparse_of(gt, 200, outliers=60, noise=0.01))
    assert fit.ok and fit.points == 200
    assert fit.scale == pytest.approx(2.5, rel=0.01) and fit.shift == 0.0
    assert fit.residual < 0.03


def test_relative_scale_and_shift_in_the_model_output_space():
    gt = scene()
    rel = (gt - 1.0) / 9.0          # linear [0, 1], near = 0
    fit = scale.fit_sparse(rel, sparse_of(gt, 300, outliers=50, noise=0.005), relative=True)
    assert fit.ok
    assert fit.scale == pytest.approx(9.0, rel=0.02) and fit.shift == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize('values', [np.nan, -3.0, 1e9, 0.0])
def test_garbage_sparse_values_give_no_fit_and_no_non_finite_scale(values):
    pred = scene()
    fit = scale.fit_sparse(pred, np.full(pred.shape, values, np.float32))
    assert not fit.ok and fit.points == 0 and math.isfinite(fit.scale)
    filt = scale.ScaleFilter(0.5)
    assert filt.update(fit) is None and filt.rejected == 1


def test_too_few_points_keep_the_last_good_scale():
    gt = scene()
    filt = scale.ScaleFilter(0.0)
    assert filt.update(scale.fit_sparse(gt / 2, sparse_of(gt, 100))) == pytest.approx(2.0)
    assert filt.update(scale.fit_sparse(gt / 3, sparse_of(gt, 3))) == pytest.approx(2.0)
    assert filt.rejected == 1


def test_sparse_image_of_another_size_is_registered_nearest():
    gt = scene(60, 80)
    small = scale.register_to(gt, (30, 40))   # every other pixel
    np.testing.assert_array_equal(small, gt[::2, ::2][:30, :40] * 0 + small)
    sparse = np.full((30, 40), np.nan, np.float32)
    sparse[::3, ::3] = gt[::6, ::6]
    up = scale.register_to(sparse, (60, 80))
    assert up.shape == (60, 80) and np.nanmax(np.abs(up[::2, ::2] - sparse)) == 0
    big = np.full((120, 160), np.nan, np.float32)
    big[5, 7], big[100, 150] = 3.0, 4.0
    down = scale.register_to(big, (60, 80))
    assert down[2, 3] == 3.0 and down[50, 75] == 4.0 and np.isfinite(down).sum() == 2
    fit = scale.fit_sparse(gt / 2, scale.register_to(sparse_of(gt, 400)[::1, ::1], (60, 80)))
    assert fit.ok


def test_16uc1_millimetres_and_32fc1_zero_is_none():
    mm = np.array([[0, 1500], [65535, 250]], np.uint16)
    m = sparse_to_metres(mm, '16UC1')
    assert np.isnan(m[0, 0]) and m[0, 1] == pytest.approx(1.5) and m[1, 1] == pytest.approx(0.25)
    f = sparse_to_metres(np.array([[0.0, 2.0]], np.float32))
    assert np.isnan(f[0, 0]) and f[0, 1] == 2.0


def floor_depth(h=120, w=160, height=1.4, pitch_deg=-10.0):
    """Z-depth of a camera at `height` over a floor, pitched down; far wall at 8 m."""
    K = make_K(120.0, 120.0, (w - 1) / 2, (h - 1) / 2)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    ry = (v - K[1, 2]) / K[1, 1]
    p = math.radians(-pitch_deg)          # looking down: rays rotate towards the floor
    # camera y (down) in world = cos p * ry + sin p * 1 (for z = 1 along the ray)
    down = ry * math.cos(p) + math.sin(p)
    with np.errstate(divide='ignore', invalid='ignore'):
        z = np.where(down > 1e-6, height / down, np.inf)
    return np.minimum(z, 8.0).astype(np.float32), K


def test_ground_plane_scale_from_the_camera_height():
    depth, K = floor_depth()
    fit = scale.fit_ground_plane(depth / 2.0, K, 1.4, max_tilt_deg=20.0)
    assert fit.ok and fit.points > 100
    assert fit.scale == pytest.approx(2.0, rel=0.02)
    # a floor tilted beyond the bound is refused
    assert not scale.fit_ground_plane(depth, K, 1.4, max_tilt_deg=5.0).ok
    assert not scale.fit_ground_plane(depth, K, float('nan')).ok
    pts = backproject(depth, K)
    assert np.isfinite(pts).any()


def test_filter_smooths_in_log_space_and_rejects_one_bad_frame():
    filt = scale.ScaleFilter(smoothing=0.8, reject_log=0.3, reset_after=3)

    def ok(s):
        return scale.ScaleFit(scale=s, ok=True, residual=0.01, points=100)

    assert filt.update(ok(2.0)) == pytest.approx(2.0)
    assert filt.update(ok(2.2)) == pytest.approx(math.exp(0.8 * math.log(2) + 0.2 * math.log(2.2)))
    before = filt.scale
    assert filt.update(ok(20.0)) == pytest.approx(before) and filt.rejected == 1
    filt.update(ok(20.0))
    assert filt.update(ok(20.0)) == pytest.approx(20.0)   # the scene really changed


def test_procedural_camera_height_is_the_floor_distance_of_the_true_depth():
    from metricgold_core.data.procedural import render_scene
    good = 0
    for seed in range(6):
        s = render_scene(seed, 96, 128, 'indoor')
        fit = scale.fit_ground_plane(s['depth'], s['K'], s['camera_height_m'], 30.0)
        good += fit.ok and abs(fit.scale - 1.0) < 0.05
    assert good >= 4


def test_evaluate_with_sparse_points_and_true_camera_height(tmp_path, tiny_checkpoint):
    import json
    from metricgold_core.cli import main
    for opts in (['--sparse-points', '200'], ['--camera-height', 'gt']):
        out = tmp_path / opts[0]
        assert main(['evaluate', '--checkpoint', str(tiny_checkpoint), '--dataset',
                     'procedural', '--count', '2', '--size', '48', '64', '--output', str(out),
                     '--processing-resolution', '64', '--device', 'cpu', '--no-progress',
                     *opts]) == 0
        summary = json.loads((out / 'summary.json').read_text())
        assert summary['scale_source'] in ('sparse_depth', 'ground_plane')


def test_project_cloud_makes_a_sparse_image_that_back_projects_to_the_points():
    from metricgold_core.camera.geometry import CameraModel
    from metricgold_core.scale.lidar import project_cloud
    camera = CameraModel(128, 96, 100.0, 100.0, 63.5, 47.5)
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(-2, 2, 300), rng.uniform(-1.5, 1.5, 300),
                    rng.uniform(1, 10, 300)], axis=1)
    behind = np.array([[0.0, 0.0, -3.0], [np.nan, 0.0, 2.0], [50.0, 0.0, 1.0]])
    projection = project_cloud(np.concatenate([pts, behind]), camera)
    sparse = projection.depth_m
    assert (projection.invalid, projection.behind) == (1, 1)
    assert sparse.shape == (96, 128) and sparse.dtype == np.float32
    v, u = np.nonzero(np.isfinite(sparse))
    assert 0 < len(u) <= 300
    # every measured pixel holds the nearest point that projects into it
    pu = np.floor(100.0 * pts[:, 0] / pts[:, 2] + 63.5 + 0.5).astype(int)
    pv = np.floor(100.0 * pts[:, 1] / pts[:, 2] + 47.5 + 0.5).astype(int)
    for y, x in zip(v, u):
        hits = pts[(pu == x) & (pv == y), 2]
        assert sparse[y, x] == pytest.approx(hits.min(), rel=1e-6)


def test_sparse_sample_draws_count_valid_pixels_inside_the_mask_reproducibly():
    depth = scene()
    depth[:5] = np.nan
    depth[5:8] = 0.0
    mask = np.ones(depth.shape, bool)
    mask[:, :40] = False
    a = scale.sparse_sample(depth, mask, 100, seed=3)
    picked = np.isfinite(a)
    assert picked.sum() == 100 and not picked[:8].any() and not picked[:, :40].any()
    np.testing.assert_array_equal(a[picked], depth[picked])
    np.testing.assert_array_equal(a, scale.sparse_sample(depth, mask, 100, seed=3))
    assert not np.array_equal(np.isfinite(scale.sparse_sample(depth, mask, 100, seed=4)),
                              picked)
    assert np.isfinite(scale.sparse_sample(depth, None, 10 ** 6, seed=0)).sum() == \
        np.count_nonzero(np.isfinite(depth) & (depth > 0))    # all of them, no more
    assert not np.isfinite(scale.sparse_sample(np.full((4, 4), np.nan), None, 5, 0)).any()


def test_the_core_call_takes_one_scale_anchor_at_most():
    from types import SimpleNamespace

    from metricgold_core.metric_depth import estimate_metric_depth

    def never(*args, **kwargs):
        raise AssertionError('the network must not run with bad arguments')
    estimator = SimpleNamespace(model=SimpleNamespace(is_relative=False), __call__=never)
    rgb = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match='one scale anchor'):
        estimate_metric_depth(estimator, rgb, 10.0, sparse_m=np.ones((8, 8), np.float32),
                              camera_height_m=1.0)
    with pytest.raises(ValueError, match='fx'):
        estimate_metric_depth(estimator, rgb, -1.0)
