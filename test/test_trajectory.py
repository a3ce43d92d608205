"""Procedural camera trajectories: determinism, depth consistent with poses, paths kept clear."""
import math

import numpy as np
import pytest

from metricgold_core.camera.geometry import backproject
from metricgold_core.data.procedural import build_scene, render_scene
from metricgold_core.data.trajectory import (MOTIONS, obstacle_footprints, PLATFORMS,
                                             render_trajectory, trajectory_frames)
from metricgold_core.evaluation.sequences import scale_stability, temporal_alignment_error
from metricgold_core.evaluation.sequences import warp_depth


def test_a_trajectory_is_deterministic_and_well_formed():
    a = render_trajectory(3, 48, 64, kind='indoor', frames=5, fps=10.0, motion='turning')
    b = render_trajectory(3, 48, 64, kind='indoor', frames=5, fps=10.0, motion='turning')
    for key in ('rgb', 'depth', 'valid', 'poses', 'K', 'timestamps'):
        np.testing.assert_array_equal(a[key], b[key])
    assert a['rgb'].shape == (5, 48, 64, 3) and a['rgb'].dtype == np.uint8
    assert a['depth'].shape == (5, 48, 64) and a['poses'].shape == (5, 4, 4)
    np.testing.assert_allclose(a['timestamps'], np.arange(5) / 10.0)
    for T in a['poses']:
        R = T[:3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_array_equal(T[3], [0, 0, 0, 1])
    # the layout is render_scene's: the same seed gives the same scene kind and camera
    assert a['kind'] == render_scene(3, 48, 64, kind='indoor')['kind']
    c = render_trajectory(4, 48, 64, kind='indoor', frames=5, fps=10.0, motion='turning')
    assert not np.array_equal(a['poses'], c['poses'])
    frames = list(trajectory_frames(a))
    assert len(frames) == 5 and frames[2]['pose'] is not None
    np.testing.assert_array_equal(frames[2]['depth'], a['depth'][2])


def test_only_sensor_noise_changes_when_the_camera_stands_still():
    # at 10^5 frames/s the camera moves < 0.1 mm between frames: shading must not change
    s = render_trajectory(5, 48, 64, kind='outdoor', frames=3, fps=1e5, motion='forward')
    np.testing.assert_allclose(s['depth'][1], s['depth'][0], rtol=1e-3)
    diff = np.abs(s['rgb'][1].astype(int) - s['rgb'][0].astype(int))
    assert 0 < diff.mean() < 3.0  # fresh noise, same picture


@pytest.mark.parametrize('kind,seed', [('indoor', 1), ('outdoor', 2)])
def test_ground_truth_depth_is_consistent_with_the_poses(kind, seed):
    s = render_trajectory(seed, 60, 80, kind=kind, frames=4, fps=10.0, motion='forward')
    # exact check: each pixel of frame 0 moved into frame 1 lands where frame 1 sees it (depth
    # sampled bilinearly where the four neighbours agree: away from occlusion edges)
    K, (T0, T1) = s['K'], s['poses'][:2]
    pts = backproject(s['depth'][0], K)[s['valid'][0]]
    T = np.linalg.inv(T1) @ T0
    q = pts @ T[:3, :3].T + T[:3, 3]
    u = K[0, 0] * q[:, 0] / q[:, 2] + K[0, 2]
    v = K[1, 1] * q[:, 1] / q[:, 2] + K[1, 2]
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    inside = (q[:, 2] > 0) & (u0 >= 0) & (u0 < 79) & (v0 >= 0) & (v0 < 59)
    u, v, u0, v0, z = u[inside], v[inside], u0[inside], v0[inside], q[inside, 2]
    d1 = s['depth'][1]
    c = [d1[v0 + dy, u0 + dx] for dy in (0, 1) for dx in (0, 1)]
    smooth = np.isfinite(c).all(axis=0) & (np.nanmax(c, axis=0) < 1.1 * np.nanmin(c, axis=0))
    fu, fv = u - u0, v - v0
    top = c[0] + (c[1] - c[0]) * fu
    sampled = top + (c[2] + (c[3] - c[2]) * fu - top) * fv
    assert smooth.sum() > 1500
    rel = np.abs(sampled[smooth] - z[smooth]) / z[smooth]
    assert np.median(rel) < 2e-3
    warped = warp_depth(s['depth'][0], K, T0, T1)
    assert (np.isfinite(warped) & s['valid'][1]).mean() > 0.5
    # the TAE of ground-truth depth is ~0; a wrong scale in the depth is not
    assert temporal_alignment_error(s['depth'], s['poses'], s['K'], s['valid'])['tae'] < 0.02
    wrong = s['depth'] * np.linspace(0.7, 1.3, 4)[:, None, None]
    assert temporal_alignment_error(wrong, s['poses'], s['K'], s['valid'])['tae'] > 0.1
    assert scale_stability(s['depth'], s['depth'])['scale_cv'] == pytest.approx(0.0, abs=1e-9)
    assert scale_stability(wrong, s['depth'])['scale_cv'] > 0.15


@pytest.mark.parametrize('kind', ['indoor', 'outdoor'])
@pytest.mark.parametrize('motion', MOTIONS)
def test_paths_keep_clear_of_geometry_at_the_platform_speed(kind, motion):
    spec = PLATFORMS[kind]
    for seed in range(3):
        s = render_trajectory(seed, 8, 8, kind=kind, frames=20, fps=10.0, motion=motion)
        p = s['poses'][:, :3, 3]
        layout = build_scene(seed, 8, 8, kind)['layout']
        boxes = obstacle_footprints(layout, p[0, 1] + 0.2)
        for x, _, z in p:
            dx = np.maximum(np.maximum(boxes[:, 0] - x, x - boxes[:, 1]), 0)
            dz = np.maximum(np.maximum(boxes[:, 2] - z, z - boxes[:, 3]), 0)
            assert np.hypot(dx, dz).min() >= spec['clearance'] - 1e-9
        if kind == 'indoor':
            hx, hz = layout['lighting']['room_half']
            assert (np.abs(p[:, 0]) < hx).all() and (np.abs(p[:, 2]) < hz).all()
        else:
            assert (np.abs(p[:, 0]) < layout['shapes'][0].material['road_half_width']).all()
        assert spec['height'][0] <= p[0, 1] <= spec['height'][1]
        assert np.allclose(p[:, 1], p[0, 1])
        speed = np.linalg.norm(np.diff(p, axis=0), axis=1) * s['fps']
        if s['speed_mps'] > 0:
            lo, hi = spec['speed']
            assert lo <= s['speed_mps'] <= hi
            np.testing.assert_allclose(speed, s['speed_mps'], rtol=0.02)
        forward = s['poses'][:-1, :3, 2]
        step = np.diff(p, axis=0)
        if motion == 'sideways' and s['speed_mps'] > 0:  # looks across the direction of travel
            cos = np.einsum('ij,ij->i', forward, step) / np.linalg.norm(step, axis=1)
            assert np.abs(cos).max() < 0.35
        if motion == 'turning' and kind == 'indoor':
            yaw = np.unwrap(np.arctan2(s['poses'][:, 0, 2], s['poses'][:, 2, 2]))
            assert abs(yaw[-1] - yaw[0]) > math.radians(30)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='frames'):
        render_trajectory(0, 16, 16, frames=0)
    with pytest.raises(ValueError, match='fps'):
        render_trajectory(0, 16, 16, fps=0.0)
    with pytest.raises(ValueError, match='motion'):
        render_trajectory(0, 16, 16, motion='flying')
