"""Points from motion: depth of tracked features triangulated with odometry poses."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from metricgold_core.data.poses import read_sequence_poses
from metricgold_core.data.trajectory import MOTIONS, render_trajectory
from metricgold_core.scale.multiview import (log_depth_sigma, midpoint, parallax_deg,
                                             refine_points, solve3, to_cameras, world_rays)
from metricgold_core.scale.triangulation import (as_grey_uint8, FeatureTracks, MotionPoints,
                                                 sparse_depth_image)

H, W = 240, 320
SEEDS = {'forward': 11, 'turning': 12, 'sideways': 13}


def grey(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def run(seq, poses=None, tracker=None):
    """Per frame: the tracker's points and their depth over the true depth at each point's
    nearest pixel."""
    tracker = tracker or FeatureTracks()
    poses = seq['poses'] if poses is None else poses
    frames = []
    for i in range(len(poses)):
        pts = tracker.update(grey(seq['rgb'][i]), poses[i], seq['K'], i * 100_000_000)
        col = np.rint(pts.uv[:, 0]).astype(int)
        row = np.rint(pts.uv[:, 1]).astype(int)
        truth = seq['depth'][i][row, col]
        frames.append((pts, pts.depth_m / truth))
    return frames


def scaled(poses, factor):
    out = poses.copy()
    out[:, :3, 3] = poses[0, :3, 3] + factor * (poses[:, :3, 3] - poses[0, :3, 3])
    return out


@pytest.fixture(scope='module')
def indoor():
    return {m: render_trajectory(s, H, W, kind='indoor', frames=20, motion=m)
            for m, s in SEEDS.items()}


def test_indoor_points_have_the_true_depth(indoor):
    errors, counts = [], []
    for motion in MOTIONS:
        frames = run(indoor[motion])
        first, _ = frames[0]
        assert len(first) == 0 and first.stats['new'] > 50  # nothing to triangulate yet
        assert len(frames[1][0]) == 0                        # two views: min_views is 3
        counts += [len(p) for p, _ in frames[3:]]
        errors += [np.abs(r - 1.0) for _, r in frames]
        for pts, _ in frames:
            assert pts.uv.dtype == pts.depth_m.dtype == pts.sigma_log.dtype == np.float32
            assert pts.uv.shape == (len(pts), 2) and (pts.depth_m > 0).all()
            assert np.isfinite(pts.sigma_log).all() and (pts.sigma_log > 0).all()
            assert ((pts.uv >= 0) & (pts.uv <= [W - 1, H - 1])).all()
            assert pts.stats['triangulated'] == len(pts)
    errors = np.concatenate(errors)
    assert np.median(errors) < 0.08
    assert np.mean(counts) > 50
    # sigma_log ranks the points: the more certain half is the more accurate one
    sigma = np.concatenate([p.sigma_log for m in MOTIONS for p, _ in run(indoor[m])])
    certain = sigma <= np.median(sigma)
    assert np.median(errors[certain]) < 0.7 * np.median(errors[~certain])


def test_a_three_percent_odometry_scale_error_stays_within_twelve_percent(indoor):
    ratios = np.concatenate([r for m in MOTIONS
                             for _, r in run(indoor[m], scaled(indoor[m]['poses'], 1.03))])
    assert np.median(np.abs(ratios - 1.0)) < 0.12
    # the depth follows the odometry's scale: 3 % longer travel, points about 3 % farther
    true = np.concatenate([r for m in MOTIONS for _, r in run(indoor[m])])
    shift = np.median(np.log(ratios)) - np.median(np.log(true))
    assert 0.02 < shift < 0.04


def test_outdoor_points_have_the_true_depth():
    errors = []
    for motion, seed in SEEDS.items():
        seq = render_trajectory(seed, H, W, kind='outdoor', frames=16, motion=motion)
        errors += [np.abs(r - 1.0) for _, r in run(seq)]
    errors = np.concatenate(errors)
    # a point on a silhouette against the sky can round onto a sky pixel (no true depth)
    sky = np.isnan(errors)
    assert sky.mean() < 0.05
    assert np.median(errors[~sky]) < 0.08


def test_a_camera_that_only_turns_gives_no_points(indoor):
    seq = indoor['turning']
    still = seq['poses'].copy()
    still[:, :3, 3] = seq['poses'][0, :3, 3]
    frames = run(seq, still)
    assert all(len(p) == 0 for p, _ in frames)
    assert sum(p.stats['rejected']['parallax'] for p, _ in frames) > 100
    # the rotation-predicted tracks still follow the turn
    assert np.mean([p.stats['tracked'] for p, _ in frames[1:]]) > 100


def test_the_tracks_restart_on_a_jump_a_bad_pose_old_stamps_and_a_new_size(indoor):
    seq = indoor['sideways']
    poses, K = seq['poses'], seq['K']
    tracker = FeatureTracks()
    images = [grey(rgb) for rgb in seq['rgb']]

    def warm_up(start):
        for i in range(start, start + 4):
            pts = tracker.update(images[i], poses[i], K, i * 100_000_000)
        assert len(pts) > 0 and pts.stats['reset'] == ''

    warm_up(0)
    jumped = poses[4].copy()
    jumped[:3, 3] += [6.0, 0, 0]
    pts = tracker.update(images[4], jumped, K, 4 * 100_000_000)
    assert pts.stats['reset'] == 'pose jumped' and len(pts) == 0
    tracker.reset()
    warm_up(4)
    bad = poses[8].copy()
    bad[0, 0] = np.nan
    pts = tracker.update(images[8], bad, K, 8 * 100_000_000)
    assert pts.stats['reset'] == 'invalid pose' and len(pts) == 0
    pts = tracker.update(images[8], np.eye(3), K, 8 * 100_000_000)   # not 4x4: refused alike
    assert pts.stats['reset'] == 'invalid pose' and len(pts) == 0
    warm_up(8)
    pts = tracker.update(images[12], poses[12], K, 5 * 100_000_000)
    assert pts.stats['reset'] == 'stamps went back' and len(pts) == 0
    tracker.reset()
    warm_up(12)
    small = cv2.resize(images[16], (W // 2, H // 2))
    pts = tracker.update(small, poses[16], K / [[2], [2], [1]], 16 * 100_000_000)
    assert pts.stats['reset'] == 'image size changed' and len(pts) == 0
    # and points come back once the new tracks have three views
    for i in (17, 18):
        pts = tracker.update(cv2.resize(images[i], (W // 2, H // 2)), poses[i],
                             K / [[2], [2], [1]], i * 100_000_000)
    assert len(pts) > 0


def test_grey_images_of_any_dtype_give_the_same_points(indoor):
    seq = indoor['forward']
    ref = run(seq)[5][0]
    tracker = FeatureTracks()
    for i in range(6):
        g16 = grey(seq['rgb'][i]).astype(np.uint16) * 257
        pts = tracker.update(g16, seq['poses'][i], seq['K'], i * 100_000_000)
    np.testing.assert_array_equal(pts.uv, ref.uv)
    np.testing.assert_array_equal(pts.depth_m, ref.depth_m)
    g = grey(seq['rgb'][0])
    np.testing.assert_array_equal(as_grey_uint8(g.astype(np.float32) / 255.0), g)
    np.testing.assert_array_equal(as_grey_uint8(g.astype(np.float64)), g)
    np.testing.assert_array_equal(as_grey_uint8(g[..., None]), g)
    np.testing.assert_array_equal(as_grey_uint8(seq['rgb'][0]), g)
    nan = g.astype(np.float32)
    nan[0, 0] = np.nan
    assert as_grey_uint8(nan)[0, 0] == 0


def test_bad_arguments_are_refused():
    tracker = FeatureTracks()
    image = np.zeros((48, 64), np.uint8)
    with pytest.raises(ValueError, match='`grey`'):
        tracker.update(np.zeros((4, 48, 64)), np.eye(4), np.eye(3), 0)
    with pytest.raises(ValueError, match='`grey`'):
        tracker.update(np.zeros((48, 64), dtype=object), np.eye(4), np.eye(3), 0)
    with pytest.raises(ValueError, match='`K`'):
        tracker.update(image, np.eye(4), np.full((3, 3), np.nan), 0)
    with pytest.raises(ValueError, match='`K`'):
        tracker.update(image, np.eye(4), np.zeros((3, 3)), 0)
    with pytest.raises(ValueError, match='`frames`'):
        FeatureTracks(frames=1)
    with pytest.raises(ValueError, match='`max_reprojection_px`'):
        FeatureTracks(max_reprojection_px=float('nan'))
    # a blank image: nothing to track, no error
    pts = tracker.update(image, np.eye(4), np.eye(3) * [[50], [50], [1]], 0)
    assert len(pts) == 0 and pts.stats['new'] == 0


def test_sparse_depth_image_puts_the_nearest_point_at_each_pixel():
    pts = MotionPoints(np.array([[2.0, 1.0], [2.2, 0.9], [5.0, 3.0], [-3.0, 1.0]], np.float32),
                       np.array([4.0, 2.0, 7.0, 1.0], np.float32),
                       np.array([0.1, 0.2, 0.3, 0.4], np.float32))
    image = sparse_depth_image(pts, (4, 6))
    assert image.dtype == np.float32 and image.shape == (4, 6)
    assert image[1, 2] == 2.0 and image[3, 5] == 7.0   # (2, 1) and (2.2, 0.9) share a pixel
    assert np.isnan(image).sum() == 22                 # (-3, 1) is outside
    assert sparse_depth_image(pts, (4, 6), values='sigma_log')[1, 2] == pytest.approx(0.2)
    # tracked on a 4x6 image, published on 8x12: pixel centres scale
    big = sparse_depth_image(pts, (8, 12), image_hw=(4, 6))
    assert big[3, 5] == 4.0 and big[2, 5] == 2.0 and big[7, 11] == 7.0
    assert np.isfinite(big).sum() == 3
    empty = sparse_depth_image(MotionPoints(np.zeros((0, 2), np.float32),
                                            np.zeros(0, np.float32), np.zeros(0, np.float32)),
                               (3, 3))
    assert np.isnan(empty).all()
    with pytest.raises(ValueError, match='`values`'):
        sparse_depth_image(pts, (4, 6), values='depth')


def test_a_large_image_is_tracked_shrunk_and_its_points_come_back_in_its_pixels():
    seq = render_trajectory(SEEDS['sideways'], 2 * H, 2 * W, kind='indoor', frames=8,
                            motion='sideways')
    tracker = FeatureTracks(track_width=W)
    frames = run(seq, tracker=tracker)
    pts, ratios = frames[-1]
    assert len(pts) > 50
    assert pts.uv[:, 0].max() > W and pts.uv[:, 1].max() > H   # the input's pixels, not W x H
    assert np.median(np.abs(np.concatenate([r for _, r in frames]) - 1.0)) < 0.08


def test_the_module_needs_neither_torch_nor_ros():
    import subprocess
    import sys
    code = ('import sys; import metricgold_core.scale.triangulation; '
            'print(sorted(m for m in ("torch", "rclpy", "diffusers") if m in sys.modules))')
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=root, check=True)
    assert out.stdout.strip() == '[]'


def camera_path(steps, step_m, yaw_rad=0.0):
    """Poses [F, 4, 4] of a camera moving steps times step_m along x, turning yaw_rad each step
    about y."""
    poses = np.tile(np.eye(4), (steps, 1, 1))
    for i in range(steps):
        c, s = np.cos(i * yaw_rad), np.sin(i * yaw_rad)
        poses[i, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        poses[i, :3, 3] = [i * step_m, 0.0, 0.0]
    return poses


def project(X, poses, K):
    p = to_cameras(X, poses)
    return (p[..., :2] / p[..., 2:]) * [K[0, 0], K[1, 1]] + K[:2, 2]


def test_multiview_geometry_recovers_points_with_a_calibrated_uncertainty():
    rng = np.random.default_rng(0)
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    poses = camera_path(6, 0.08, yaw_rad=0.02)
    X = np.stack([rng.uniform(-2, 2, 2000), rng.uniform(-1, 1, 2000), rng.uniform(1.5, 8, 2000)],
                 axis=1)
    noise_px = 0.5
    obs = project(X, poses, K) + rng.normal(0, noise_px, (2000, 6, 2))
    obs[:500, :3] = np.nan                         # a quarter seen in the last three frames only
    seen = np.isfinite(obs[..., 0])
    w = seen.astype(float)
    Ks = np.tile(K, (6, 1, 1))
    rays = world_rays(obs, poses, Ks)
    assert (parallax_deg(rays, seen) > 0.3).all()
    X0 = midpoint(rays, w, poses[:, :3, 3])
    X1, H, residual = refine_points(X0, obs, w, poses, Ks)
    z_true = to_cameras(X, poses)[:, -1, 2]
    z = to_cameras(X1, poses)[:, -1, 2]
    log_err = np.abs(np.log(z / z_true))
    sigma = log_depth_sigma(H, np.full(2000, noise_px ** 2), z, poses[-1])
    # the refined points beat the midpoint's, and sigma_log is a 1-sigma (|N(0,1)| median 0.67)
    z0 = to_cameras(X0, poses)[:, -1, 2]
    assert np.median(log_err) < np.median(np.abs(np.log(z0 / z_true)))
    assert 0.5 < np.median(log_err / sigma) < 0.85
    assert np.median(sigma[:500]) > 1.5 * np.median(sigma[500:])   # fewer views, less certain
    assert np.sqrt(np.median(residual[w > 0])) < 2 * noise_px
    # a camera that only turns: no parallax, and the rays meet nowhere
    turning = camera_path(6, 0.0, yaw_rad=0.05)
    still = project(X[:10], turning, K)
    rays = world_rays(still, turning, Ks)
    assert (parallax_deg(rays, np.ones((10, 6), bool)) < 1e-4).all()
    A = np.tile(np.eye(3), (2, 1, 1))
    A[1] = 0.0
    np.testing.assert_allclose(solve3(A, np.ones((2, 3)))[0], 1.0)
    assert np.isnan(solve3(A, np.ones((2, 3)))[1]).all()


def test_real_frames_with_their_poses_give_points_at_the_measured_depth(shared_data):
    # Redwood: five consecutive Kinect frames, about 2.4 cm apart, with their camera poses
    root = shared_data / 'real' / 'redwood'
    poses = read_sequence_poses(root)
    K = np.array([[525.0, 0, 319.5], [0, 525.0, 239.5], [0, 0, 1]])
    tracker = FeatureTracks()
    for i, (rgb, depth) in enumerate(zip(sorted((root / 'rgb').iterdir()),
                                         sorted((root / 'depth').iterdir()))):
        pts = tracker.update(cv2.imread(str(rgb), cv2.IMREAD_GRAYSCALE), poses[i], K,
                             (i + 1) * 33_000_000)
    truth = cv2.imread(str(depth), cv2.IMREAD_UNCHANGED)[
        np.rint(pts.uv[:, 1]).astype(int), np.rint(pts.uv[:, 0]).astype(int)] / 1000.0
    measured = truth > 0
    assert measured.sum() > 150
    errors = np.abs(pts.depth_m[measured] / truth[measured] - 1.0)
    assert np.median(errors) < 0.03 and np.percentile(errors, 90) < 0.08
