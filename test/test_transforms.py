"""Training transforms keep geometry consistent: back-projected points stay put."""
from __future__ import annotations

import numpy as np
import pytest

from metricgold_core.data.transforms import (CanonicalFocal, ColorJitter, Compose, crop, hflip,
                                             RandomHorizontalFlip, RandomResizedCrop, resize)
from metricgold_core.geometry import backproject, focal_rescale_factor, make_K
from metricgold_core.geometry import processing_focal_factor


def tilted_plane(h=90, w=120) -> dict:
    """A sample whose depth is a tilted plane (every pixel distinct), some pixels invalid."""
    K = make_K(100.0, 101.0, 57.3, 46.1)
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    # plane z = 4 + 0.5 x + 0.2 y  -> depth along each ray: d = 4 / (1 - 0.5 rx - 0.2 ry)
    rx, ry = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    depth = (4.0 / (1.0 - 0.5 * rx - 0.2 * ry)).astype(np.float32)
    valid = np.ones((h, w), bool)
    valid[:5, :7] = False
    depth[~valid] = np.nan
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return {'rgb': rgb, 'depth': depth, 'valid': valid, 'K': K, 'name': 'plane'}


def test_crop_moves_principal_point_and_points_stay_put():
    s = tilted_plane()
    out = crop(s, 10, 20, 40, 50)
    assert out['depth'].shape == (40, 50) and out['rgb'].shape == (40, 50, 3)
    np.testing.assert_allclose(backproject(out['depth'], out['K']),
                               backproject(s['depth'], s['K'])[10:50, 20:70], rtol=1e-6)
    np.testing.assert_array_equal(out['rgb'], s['rgb'][10:50, 20:70])
    with pytest.raises(ValueError, match='crop 40x50 at \\(60, 0\\) does not fit a 90x120'):
        crop(s, 60, 0, 40, 50)


def test_resize_by_a_third_is_exact():
    """Target pixel centres land exactly on source centres 3i+1: identical 3-D points."""
    s = tilted_plane()
    out = resize(s, 30, 40)
    assert out['rgb'].shape == (30, 40, 3)
    np.testing.assert_allclose(backproject(out['depth'], out['K']),
                               backproject(s['depth'], s['K'])[1::3, 1::3], rtol=1e-6)
    np.testing.assert_array_equal(out['valid'], s['valid'][1::3, 1::3])
    assert out['K'][0, 0] == pytest.approx(100.0 / 3)


def test_hflip_mirrors_points():
    s = tilted_plane()
    out = hflip(s)
    p, q = backproject(s['depth'], s['K']), backproject(out['depth'], out['K'])
    np.testing.assert_allclose(q[:, ::-1, 0], -p[..., 0], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(q[:, ::-1, 1:], p[..., 1:], rtol=1e-6)
    assert out['K'][0, 2] == pytest.approx(119 - 57.3)
    np.testing.assert_array_equal(hflip(out)['depth'], s['depth'])


@pytest.mark.parametrize('seed', range(5))
def test_random_resized_crop_keeps_every_pixel_on_its_source_ray(seed):
    """Through the two K alone, find each output pixel's source pixel: same depth value."""
    s = tilted_plane()
    out = RandomResizedCrop(48, 64, scale=(1.0, 2.0))(s, np.random.default_rng(seed))
    assert out['depth'].shape == (48, 64) and out['rgb'].shape == (48, 64, 3)
    Ko, Ks = out['K'], s['K']
    v, u = np.mgrid[0:48, 0:64].astype(np.float64)
    u_src = (u - Ko[0, 2]) / Ko[0, 0] * Ks[0, 0] + Ks[0, 2]
    v_src = (v - Ko[1, 2]) / Ko[1, 1] * Ks[1, 1] + Ks[1, 2]
    assert u_src.min() > -0.5 and u_src.max() < 119.5  # inside the source: no padding
    # nearest pixel, ties upwards like the resampler (np.round would round ties to even)
    rows, cols = np.floor(v_src + 0.5 + 1e-9).astype(int), np.floor(u_src + 0.5 + 1e-9).astype(int)
    # nearest-neighbour depth: each output pixel carries its own source pixel's depth
    np.testing.assert_array_equal(out['valid'], s['valid'][rows, cols])
    ok = out['valid']
    np.testing.assert_array_equal(out['depth'][ok], s['depth'][rows, cols][ok])
    # and its 3-D point lies within a pixel's footprint of the source point
    p_out = backproject(out['depth'], Ko)[ok]
    p_src = backproject(s['depth'], Ks)[rows, cols][ok]
    assert np.max(np.abs(p_out - p_src)[:, 2]) == 0.0
    # (at most half a source pixel in u and in v: sqrt(2) / 2 px)
    assert np.max(np.linalg.norm(p_out - p_src, axis=1) / p_src[:, 2]) < 0.72 / Ks[0, 0]


def test_compose_is_deterministic_for_a_seed():
    s = tilted_plane()
    t = Compose([RandomResizedCrop(32, 40), RandomHorizontalFlip(0.5), ColorJitter()])
    a, b = t(s, np.random.default_rng(3)), t(s, np.random.default_rng(3))
    for key in ('rgb', 'depth', 'valid', 'K'):
        np.testing.assert_array_equal(a[key], b[key])
    flips = {RandomHorizontalFlip(0.5)(s, np.random.default_rng(i))['K'][0, 2] for i in range(20)}
    assert flips == {57.3, 119 - 57.3}


def test_color_jitter_changes_rgb_only():
    s = tilted_plane()
    out = ColorJitter(0.3, 0.3, 0.3)(s, np.random.default_rng(1))
    assert out['rgb'].dtype == np.uint8 and out['rgb'].shape == s['rgb'].shape
    assert not np.array_equal(out['rgb'], s['rgb'])
    assert out['depth'] is s['depth'] and out['K'] is s['K']
    grey = ColorJitter(0, 0, 0, gamma=(1, 1))(s, np.random.default_rng(1))
    np.testing.assert_array_equal(grey['rgb'], s['rgb'])  # zero jitter is the identity


def test_canonical_focal_keeps_x_y_and_inverts_with_focal_rescale_factor():
    s = tilted_plane()
    out = CanonicalFocal(500.0)(s)
    p, q = backproject(s['depth'], s['K']), backproject(out['depth'], out['K'])
    np.testing.assert_allclose(q[..., :2], p[..., :2], rtol=1e-5)  # lateral position kept
    np.testing.assert_allclose(q[..., 2], p[..., 2] * 5.0, rtol=1e-6)  # d * 500 / 100
    assert out['depth_scale'] == pytest.approx(5.0)
    assert out['K'][0, 0] == 500.0 and out['K'][1, 1] == pytest.approx(505.0)
    restored = out['depth'] * focal_rescale_factor(s['K'][0, 0], 500.0)
    np.testing.assert_allclose(restored, s['depth'], rtol=1e-6)
    with pytest.raises(ValueError, match='`focal_px` must be > 0'):
        CanonicalFocal(0)


def test_transformed_dataset_is_reproducible_per_item_and_epoch():
    from metricgold_core.data.transforms import TransformedDataset
    base = [tilted_plane(), tilted_plane()]
    ds = TransformedDataset(base, Compose([RandomResizedCrop(32, 40, scale=(1.0, 3.0))]), seed=7)
    assert len(ds) == 2
    first = ds[0]['K']
    np.testing.assert_array_equal(ds[0]['K'], first)  # same item, same epoch: same crop
    ds.set_epoch(1)
    assert not np.array_equal(ds[0]['K'], first)  # a new epoch draws a new crop
    assert ds[1]['depth'].shape == (32, 40)


def test_processing_focal_factor_uses_the_focal_at_the_processing_width():
    # 640 px wide, fx 500, processed at 320: fx there is 250; canonical 500 -> factor 0.5
    assert processing_focal_factor(500.0, 640, 320, 500.0) == pytest.approx(0.5)
    assert processing_focal_factor(500.0, 640, 0, 500.0) == pytest.approx(1.0)  # 0 = native
    assert processing_focal_factor(500.0, 640, 320, None) == 1.0


def test_kitti_benchmark_crop_is_bottom_centre_and_moves_k():
    from metricgold_core.data.transforms import kitti_benchmark_crop
    from metricgold_core.training.data import KittiBenchmarkCrop
    h, w = 375, 1242
    depth = np.arange(h * w, dtype=np.float32).reshape(h, w)
    sample = {'rgb': np.zeros((h, w, 3), np.uint8), 'depth': depth,
              'valid': np.ones((h, w), bool), 'K': make_K(700.0, 700.0, 620.0, 187.0)}
    out = KittiBenchmarkCrop([sample])[0]
    assert out['depth'].shape == (352, 1216) and out['rgb'].shape == (352, 1216, 3)
    top, left = 375 - 352, (1242 - 1216) // 2
    np.testing.assert_array_equal(out['depth'], depth[top:, left:left + 1216])
    assert out['K'][0, 2] == 620.0 - left and out['K'][1, 2] == 187.0 - top
    # smaller images keep their size on that side; a sample without K stays without
    part = {key: sample[key][:300, :1000] for key in ('rgb', 'depth', 'valid')}
    small = kitti_benchmark_crop(dict(part, K=None))
    assert small['depth'].shape == (300, 1000) and small['K'] is None
