"""Local scale correction (scale.local) and the run-level ScaleSession: sparse metric points bend
a misshapen depth to the truth, outliers and thin or bunched points are handled, every frame
still comes out."""
import math

import numpy as np
import pytest

from metricgold_core.evaluation.metrics import masked_abs_rel
from metricgold_core.scale import correct_locally, ScaleAnchor, ScaleSession, sparse_sample
from metricgold_core.scale import local

H, W = 120, 160


def abs_rel(pred, truth, valid):
    return masked_abs_rel(pred, truth, valid)[0]


@pytest.fixture(scope='module', params=['indoor', 'outdoor'])
def scene(request):
    from metricgold_core.data.procedural import render_scene
    s = render_scene(31 if request.param == 'indoor' else 32, H, W, request.param)
    valid = s['valid'] & np.isfinite(s['depth'])
    truth = np.where(valid, s['depth'], np.nan).astype(np.float32)
    return s['rgb'], truth, valid


def misshapen(truth):
    """A model whose shape is wrong: near too far, far too near (log depth compressed), at
    another scale."""
    return (0.6 * truth ** 1.5).astype(np.float32)


def test_misshapen_depth_is_corrected_by_sparse_truth(scene):
    rgb, truth, valid = scene
    model = misshapen(truth)
    sparse = sparse_sample(truth, valid, 100, seed=3)
    session = ScaleSession(ScaleAnchor.resolve(False, 'sparse_depth'), 'global', carry=False)
    global_fit = session.apply(model, None, sparse, rgb).depth
    out = correct_locally(global_fit, sparse, rgb)
    assert out.ok and out.reason == '' and out.points == 100 and out.outliers == 0
    before, after = abs_rel(global_fit, truth, valid), abs_rel(out.depth, truth, valid)
    assert before > 0.1 and after < 0.05 and after < before / 3, (before, after)
    # the session does the same in one call
    same = ScaleSession(ScaleAnchor.resolve(False, 'sparse_depth'), 'local', carry=False)
    scaled = same.apply(model, None, sparse, rgb)
    np.testing.assert_allclose(scaled.depth, out.depth, rtol=1e-5)
    assert scaled.local.ok and scaled.uncertainty is not None


def test_uncertainty_grows_away_from_the_points(scene):
    rgb, truth, valid = scene
    sparse = np.full_like(truth, np.nan)
    # points only in the left half: the right half is far from every one of them
    left = sparse_sample(np.where(np.arange(W)[None] < W // 2, truth, np.nan), valid, 80, 1)
    sparse[:] = left
    out = correct_locally(misshapen(truth), sparse, rgb, prior_sigma_log=0.3)
    assert out.ok
    rel = out.uncertainty / out.depth
    near = np.isfinite(sparse)
    far = valid.copy()
    far[:, :int(W * 0.8)] = False
    assert np.nanmedian(rel[near]) < 0.5 * np.nanmedian(rel[far]), (
        np.nanmedian(rel[near]), np.nanmedian(rel[far]))
    assert np.nanmedian(rel[far]) == pytest.approx(0.3, rel=0.2)   # the global spread far away
    assert np.all(np.isnan(out.uncertainty[~valid]))


def test_outlier_points_are_dropped(scene):
    rgb, truth, valid = scene
    model = misshapen(truth)
    sparse = sparse_sample(truth, valid, 200, seed=5)
    clean = correct_locally(model, sparse, rgb)
    idx = np.flatnonzero(np.isfinite(sparse))
    bad = np.random.default_rng(0).choice(idx, 15, replace=False)
    dirty = sparse.copy()
    dirty.flat[bad] *= np.float32(3.0)        # a glass pane, a multipath return
    out = correct_locally(model, dirty, rgb)
    assert out.ok and out.outliers >= 10, out.outliers
    assert abs_rel(out.depth, truth, valid) < abs_rel(clean.depth, truth, valid) + 0.02


def test_too_few_or_bunched_points_keep_the_global_fit(scene):
    rgb, truth, valid = scene
    model = misshapen(truth)
    few = sparse_sample(truth, valid, local.MIN_LOCAL_POINTS - 1, seed=1)
    out = correct_locally(model, few, rgb)
    assert not out.ok and 'points' in out.reason and out.depth is model
    corner = np.full_like(truth, np.nan)
    corner[:8, :8] = truth[:8, :8]
    out = correct_locally(model, corner, rgb)
    assert not out.ok and 'bunched' in out.reason
    # through the session: the global fit is published, the reason kept
    session = ScaleSession(ScaleAnchor.resolve(False, 'sparse_depth'), 'local', carry=False)
    scaled = session.apply(model, None, sparse_sample(truth, valid, 9, seed=2), rgb)
    assert scaled.fit.ok and not scaled.local.ok and scaled.scale != 1.0
    assert np.isfinite(scaled.depth[valid]).all()


@pytest.mark.parametrize('case', ['nan', 'inf', 'negative', 'zero', 'one', 'many', 'plane',
                                  'other_size', 'no_image'])
def test_bad_points_never_break_a_frame(scene, case):
    rgb, truth, valid = scene
    model = misshapen(truth)
    sparse = sparse_sample(truth, valid, 60, seed=4)
    if case in ('nan', 'inf', 'negative', 'zero'):
        junk = sparse_sample(truth, valid, 60, seed=9)
        value = {'nan': np.nan, 'inf': np.inf, 'negative': -2.0, 'zero': 0.0}[case]
        sparse = np.where(np.isfinite(junk) & ~np.isfinite(sparse), np.float32(value), sparse)
    elif case == 'one':
        sparse = sparse_sample(truth, valid, 1, seed=4)
    elif case == 'many':
        sparse = np.where(valid, truth, np.nan).astype(np.float32)   # every pixel
    elif case == 'plane':
        sparse = np.full_like(truth, np.nan)
        sparse[::7, ::7] = 2.0                  # one fronto-parallel plane of points
    elif case == 'other_size':
        sparse = sparse_sample(np.kron(truth, np.ones((2, 2), np.float32)),
                               np.kron(valid, np.ones((2, 2), bool)), 200, seed=4)
    session = ScaleSession(ScaleAnchor.resolve(False, 'sparse_depth'), 'local', carry=False)
    scaled = session.apply(model, None, sparse, None if case == 'no_image' else rgb)
    assert scaled.depth.shape == model.shape and scaled.depth.dtype == np.float32
    assert np.isfinite(scaled.depth[valid]).all()
    if case == 'one':
        assert not scaled.fit.ok                         # no fit from one point: model scale
    elif case in ('nan', 'inf', 'negative', 'zero', 'many', 'other_size', 'no_image'):
        assert scaled.local.ok and abs_rel(scaled.depth, truth, valid) < 0.08, case
    if case == 'plane':   # the points disagree with the model's shape: still a finite answer
        assert scaled.local is not None


def test_wait_for_scale_holds_frames_until_the_first_good_fit(scene):
    rgb, truth, valid = scene
    model = misshapen(truth)
    session = ScaleSession(ScaleAnchor.resolve(False, 'sparse_depth'), 'local',
                           wait_for_scale=True)
    scaled = session.apply(model, None, None, rgb)            # no measurement yet
    assert scaled.fit is None and session.holding() and session.held == 1
    scaled = session.apply(model, None, sparse_sample(truth, valid, 100, seed=1), rgb)
    assert scaled.fit.ok and not session.holding()
    scaled = session.apply(model, None, None, rgb)            # a frame without points:
    assert not session.holding() and scaled.local is None    # the last good scale, global
    assert scaled.scale == pytest.approx(session.filter.scale)
    never = ScaleSession(ScaleAnchor.resolve(False, 'sparse_depth'), 'local')   # no waiting
    never.apply(model, None, None, rgb)
    assert not never.holding() and never.waiting()


def test_a_correction_level_must_be_known():
    with pytest.raises(ValueError, match='`correction` must be one of global, local'):
        ScaleSession(ScaleAnchor.resolve(False, 'none'), 'pixelwise')
    note = ScaleSession(ScaleAnchor.resolve(False, 'ground_plane', camera_height_m=1.0),
                        'local').note
    assert 'needs metric points' in note


def test_relative_model_gets_metres_and_local_shape():
    """An affine-invariant output (near = 0, linear) anchored by scale + shift, then locally."""
    from metricgold_core.data.procedural import render_scene
    s = render_scene(31, H, W, 'indoor')
    valid = s['valid']
    truth = np.where(valid, s['depth'], np.nan).astype(np.float32)
    relative = ((truth - np.nanmin(truth)) / (np.nanmax(truth) - np.nanmin(truth)))
    relative = (relative ** 1.3).astype(np.float32)      # and a wrong shape
    sparse = sparse_sample(truth, valid, 150, seed=2)
    glob = ScaleSession(ScaleAnchor.resolve(True, 'sparse_depth'), 'global', carry=False)
    loc = ScaleSession(ScaleAnchor.resolve(True, 'sparse_depth'), 'local', carry=False)
    g = glob.apply(relative, None, sparse, s['rgb'], relative=True)
    scaled = loc.apply(relative, None, sparse, s['rgb'], relative=True)
    assert not scaled.relative and scaled.local.ok
    assert abs_rel(scaled.depth, truth, valid) < 0.5 * abs_rel(g.depth, truth, valid)
    assert math.isfinite(scaled.shift)
