"""Procedural scene generator: determinism, sample format, depth ranges, exact ray casting."""
from __future__ import annotations

import math

import numpy as np
import pytest

from metricgold_core.camera.geometry import intrinsics_from_hfov
from metricgold_core.data.procedural import camera_rotation, ProceduralScenes, render_scene
from metricgold_core.data.raycast import cast, rotation_y, Shape


def test_sample_format_and_determinism():
    a = render_scene(7, 48, 64)
    b = render_scene(7, 48, 64)
    assert set(a) == {'rgb', 'depth', 'valid', 'K', 'name', 'kind', 'camera_height_m', 'sky'}
    assert np.array_equal(a['sky'], ~a['valid'])
    assert a['camera_height_m'] > 0
    assert a['rgb'].dtype == np.uint8 and a['rgb'].shape == (48, 64, 3)
    assert a['depth'].dtype == np.float32 and a['depth'].shape == (48, 64)
    assert a['valid'].dtype == bool and a['K'].dtype == np.float64 and a['K'].shape == (3, 3)
    assert a['name'] == f'procedural_{a["kind"]}_7'
    for key in ('rgb', 'depth', 'valid', 'K'):
        np.testing.assert_array_equal(a[key], b[key])
    c = render_scene(8, 48, 64, kind=a['kind'])
    assert not np.array_equal(a['rgb'], c['rgb'])


def test_a_given_camera_films_the_same_layout():
    a = render_scene(7, 48, 64)
    same = render_scene(7, 48, 64, K=a['K'])
    for key in ('rgb', 'depth', 'valid', 'K'):
        np.testing.assert_array_equal(same[key], a[key])
    K = intrinsics_from_hfov(64, 48, 60.0)
    b = render_scene(7, 48, 64, K=K)
    np.testing.assert_array_equal(b['K'], K)
    assert (b['kind'], b['camera_height_m']) == (a['kind'], a['camera_height_m'])
    assert not np.array_equal(b['depth'], a['depth'])   # another focal, another picture


@pytest.mark.parametrize('seed', range(4))
def test_indoor_rooms_are_dense_and_room_sized(seed):
    s = render_scene(seed, 48, 64, kind='indoor')
    assert s['kind'] == 'indoor'
    assert s['valid'].all()  # a closed room has no sky
    assert np.isfinite(s['depth']).all()
    # rooms are 2-15 m per side, < 5 m high: no z-depth beyond the room's diagonal
    assert 0.0 < s['depth'].min() and s['depth'].max() < 22.0
    hfov = math.degrees(2 * math.atan(0.5 * 64 / s['K'][0, 0]))
    assert 40.0 <= hfov <= 100.0
    assert s['K'][0, 0] == s['K'][1, 1]
    assert s['rgb'].std() > 5.0  # textured and lit, not a flat fill


def test_outdoor_scenes_reach_far_and_mark_sky_invalid():
    far, sky = [], []
    for seed in range(4):
        s = render_scene(seed, 48, 64, kind='outdoor')
        np.testing.assert_array_equal(s['valid'], np.isfinite(s['depth']))
        far.append(np.nanmax(s['depth']))
        sky.append((~s['valid']).mean())
        assert np.nanmin(s['depth']) > 0.2
    assert min(far) >= 80.0  # geometry reaches at least 80 m in every street
    assert max(sky) > 0.05  # and the sky shows up as invalid pixels


def test_kind_is_chosen_by_seed_and_checked():
    kinds = {render_scene(seed, 16, 16)['kind'] for seed in range(12)}
    assert kinds == {'indoor', 'outdoor'}
    with pytest.raises(ValueError, match='`kind` must be one of'):
        render_scene(0, 16, 16, kind='underwater')
    with pytest.raises(ValueError, match='`height` and `width`'):
        render_scene(0, 4, 16)


def test_ground_plane_depth_is_exact():
    """A camera at height h looking level sees the ground at z = h * fy / (v - cy)."""
    h, w, cam_h = 60, 80, 1.5
    K = intrinsics_from_hfov(w, h, 70.0)
    ground = Shape('ground', np.zeros(3), np.array([1000.0, 0, 0]), {})
    out = cast([ground], np.array([0.0, cam_h, 0.0]), camera_rotation(0.3, 0.0, 0.0), K, h, w)
    rows = np.arange(h, dtype=np.float64)
    below = rows > K[1, 2] + 1
    expected = cam_h * K[1, 1] / (rows[below] - K[1, 2])
    np.testing.assert_allclose(out['depth'][below, w // 2], expected, rtol=1e-4)
    assert np.isinf(out['depth'][rows < K[1, 2], :]).all()  # above the horizon: no hit


def test_box_sphere_and_cylinder_hits_are_exact():
    """Z-depth of known primitives on the optical axis, plus normals and nearest-wins."""
    K = intrinsics_from_hfov(41, 41, 60.0)  # odd size: pixel (20, 20) is the optical axis
    R = camera_rotation(0.0, 0.0, 0.0)
    origin = np.zeros(3)
    sphere = Shape('sphere', np.array([0.0, 0.0, 10.0]), np.full(3, 2.0), {})
    box = Shape('box', np.array([0.0, 0.0, 5.0]), np.array([0.5, 0.5, 0.5]), {}, rotation_y(0.4))
    cyl = Shape('cylinder', np.array([-1.0, -1.5, 6.0]), np.array([0.3, 1.0, 0.3]), {})
    out = cast([sphere], origin, R, K, 41, 41)
    assert out['depth'][20, 20] == pytest.approx(8.0, abs=1e-4)
    group = out['groups'][0]
    centre = np.flatnonzero(group['index'] == 20 * 41 + 20)[0]
    np.testing.assert_allclose(group['n_world'][centre], [0, 0, -1], atol=1e-4)
    out = cast([sphere, box, cyl], origin, R, K, 41, 41)
    # the yawed cube's nearest point on the axis: half-diagonal of its footprint along z
    along = 0.5 / max(math.cos(0.4), math.sin(0.4))
    assert out['depth'][20, 20] == pytest.approx(5.0 - along, abs=1e-4)
    assert out['shape_id'][20, 20] == 1
    assert out['shape_id'][0, 20] == -1  # nothing straight up
    # pixel (23, 26) looks down onto the cylinder's top cap, 0.5 m below the camera (camera
    # right is world -x when looking along +z in this y-up world)
    assert out['shape_id'][23, 26] == 2
    assert out['depth'][23, 26] == pytest.approx(0.5 * K[1, 1] / (23 - K[1, 2]), rel=1e-5)


def test_room_is_seen_from_inside():
    K = intrinsics_from_hfov(21, 21, 60.0)
    room = Shape('room', np.array([0.0, 1.5, 0.0]), np.array([2.0, 1.5, 4.0]), {})
    out = cast([room], np.array([0.0, 1.5, 0.0]), camera_rotation(0.0, 0.0, 0.0), K, 21, 21)
    assert out['depth'][10, 10] == pytest.approx(4.0, abs=1e-4)
    group = out['groups'][0]
    centre = np.flatnonzero(group['index'] == 10 * 21 + 10)[0]
    np.testing.assert_allclose(group['n_world'][centre], [0, 0, -1], atol=1e-5)  # faces inward


def test_dataset_maps_index_to_seed():
    ds = ProceduralScenes(length=4, height=24, width=32, seed=3)
    assert len(ds) == 4
    item = ds[1]
    np.testing.assert_array_equal(item['rgb'], render_scene(3 * 1_000_003 + 1, 24, 32,
                                                            kind=item['kind'])['rgb'])
    assert [ds[i]['kind'] for i in range(4)] == ['indoor', 'outdoor', 'indoor', 'outdoor']
    np.testing.assert_array_equal(ds[-1]['depth'], ds[3]['depth'])
    with pytest.raises(IndexError):
        ds[4]
    only_out = ProceduralScenes(length=2, height=16, width=16, kinds=('outdoor',))
    assert {only_out[i]['kind'] for i in range(2)} == {'outdoor'}
    with pytest.raises(ValueError, match='`kinds`'):
        ProceduralScenes(2, 16, 16, kinds=('space',))


def test_dataset_works_with_a_dataloader():
    import torch
    loader = torch.utils.data.DataLoader(ProceduralScenes(4, 16, 24), batch_size=2)
    batch = next(iter(loader))
    assert batch['rgb'].shape == (2, 16, 24, 3) and batch['rgb'].dtype == torch.uint8
    assert batch['depth'].shape == (2, 16, 24) and batch['K'].shape == (2, 3, 3)


def test_sun_shadow_map_darkens_what_an_occluder_hides():
    from metricgold_core.data.procedural import _shadow_map, _sunlit
    sun = np.array([0.3, 0.9, 0.2])
    sun /= np.linalg.norm(sun)
    roof = Shape('box', np.array([0.0, 5.0, 0.0]), np.array([2.0, 0.2, 2.0]), {})
    shadow = _shadow_map([roof], sun, np.zeros(3))
    # ground points: right under the roof along the sun ray, and far to the side
    under = np.array([0.0, 5.0, 0.0]) - sun * (5.0 / sun[1])
    points = np.array([under, [30.0, 0.0, 0.0], [-20.0, 0.0, 10.0]], dtype=np.float32)
    np.testing.assert_array_equal(_sunlit(points, shadow, bias_m=0.05), [0.0, 1.0, 1.0])
    # the roof's own sunlit top is not shadowed by itself (bias)
    top = np.array([[0.5, 5.2, -0.5]], dtype=np.float32)
    assert _sunlit(top, shadow, bias_m=2.0)[0] == 1.0
