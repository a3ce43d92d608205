"""Crops keep geometry consistent: back-projected points stay put."""
from __future__ import annotations

import numpy as np
import pytest

from metricgold_core.camera.geometry import backproject, make_K
from metricgold_core.camera.geometry import processing_focal_factor
from metricgold_core.data.transforms import crop


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
