"""The odometry scale source in the core: the motion fit on procedural trajectories, its gates,
the anchor's rules, poses (TUM files, interpolation) and `metricgold infer --poses`."""
import math

import numpy as np
import pytest

from metricgold_core import scale
from metricgold_core.camera import poses
from metricgold_core.camera.geometry import CameraModel
from metricgold_core.scale import motion

H, W = 120, 160


@pytest.fixture(scope='module')
def sequence():
    from metricgold_core.data.trajectory import render_trajectory
    return render_trajectory(6, H, W, frames=6, fps=10.0)   # indoor, forward


def run_fits(seq, factor, pose_list, stamps=None, power=1.0):
    """Fits of the true depth ** `power` x `factor` along `pose_list`: [ScaleFit] (first has no
    history)."""
    history, fits = scale.MotionHistory(), []
    anchor = scale.ScaleAnchor.resolve(False, 'odometry')
    camera = CameraModel.from_K(seq['K'], H, W)
    for i, pose in enumerate(pose_list):
        truth = np.where(seq['valid'][i], seq['depth'][i], np.nan).astype(np.float32)
        depth = truth ** np.float32(power) * factor
        stamp = int(i * 1e8) if stamps is None else stamps[i]
        motion = scale.Motion(pose, stamp, history)
        fits.append(anchor.fit(depth, camera, motion, seq['rgb'][i]))
        assert motion.fit_ms > 0
    return fits


def test_the_motion_fit_recovers_a_wrong_scale(sequence):
    fits = run_fits(sequence, np.float32(2.5), sequence['poses'])
    assert fits[0].reject == 'no_history'
    good = [f for f in fits if f.ok]
    assert len(good) >= 4
    for fit in good:   # depth x 2.5 needs a scale of 0.4
        assert abs(fit.scale * 2.5 - 1.0) < 0.05, fit
        assert 1.0 <= fit.parallax_px <= motion.MAX_PARALLAX_PX and fit.contrast > 0


def test_no_fit_without_translation_or_with_bad_poses(sequence):
    base = sequence['poses'][0]
    turns = []
    for k in range(6):   # pure rotation about the camera centre, 2 deg a frame
        c, s = math.cos(math.radians(2 * k)), math.sin(math.radians(2 * k))
        turn = np.eye(4)
        turn[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        turns.append(base @ turn)
    for pose_list in (turns, [base] * 6):
        fits = run_fits(sequence, np.float32(1.0), pose_list)
        assert not any(f.ok for f in fits), [f.reason for f in fits]
        assert {f.reject for f in fits[1:]} <= {'parallax'}
    nan = base.copy()
    nan[0, 3] = np.nan
    jumps = [base + np.pad(np.full((3, 1), 100.0 * (i % 2)), ((0, 1), (3, 0))) for i in range(6)]
    for pose_list, stamps in (([nan] * 6, None), (jumps, None),
                              (list(sequence['poses']), [5, 4, 3, 2, 1, 0])):
        fits = run_fits(sequence, np.float32(1.0), pose_list, stamps)
        assert not any(f.ok for f in fits), [f.reason for f in fits]
        assert all(math.isfinite(f.scale) for f in fits)


def test_a_second_valley_is_ambiguous_a_bump_on_the_shoulder_is_not():
    grid = np.linspace(-math.log(16), math.log(16), 41)
    valley = lambda centre, width: 1.0 - np.exp(-0.5 * ((grid - centre) / width) ** 2)  # noqa
    one = 0.6 + 0.4 * valley(-0.8, 1.0)
    k, median = int(np.argmin(one)), float(np.median(one))
    assert motion._second_minimum(one, grid, k, median) is None
    # a dip of 1 % of the curve's range on the valley's flat shoulder (the Redwood cost
    # curves): low enough to be a second minimum by depth alone, but no ridge parts it
    bumpy, i = one.copy(), k + 4
    bumpy[i] = bumpy[i - 1] - 0.01 * (median - one[k])
    assert bumpy[i] < bumpy[i + 1] and grid[i] - grid[k] > motion.DISTINCT_LOG
    assert bumpy[i] - one[k] < motion.MIN_DISTINCT * (median - one[k])
    assert motion._second_minimum(bumpy, grid, k, median) is None
    # two valleys of nearly the same depth a factor 4 apart, a ridge between: ambiguous
    two = 0.6 + 0.4 * np.minimum(valley(-0.8, 0.3), 0.05 + valley(0.6, 0.3))
    k = int(np.argmin(two))
    second = motion._second_minimum(two, grid, k, float(np.median(two)))
    assert second is not None and abs(grid[second] - 0.6) < 0.15


def test_the_anchor_is_resolved_once_with_one_set_of_rules():
    metric = scale.ScaleAnchor.resolve(False, 'odometry', smoothing=0.5)
    assert metric.active and metric.note == '' and metric.new_filter().smoothing == 0.5
    assert metric.fit(np.ones((4, 4), np.float32), None) is None   # no measurement: no fit
    # a relative model takes odometry too: scale + shift from the triangulated points
    relative = scale.ScaleAnchor.resolve(True, 'odometry')
    assert relative.active and relative.note == ''
    with pytest.raises(scale.AnchorError, match='needs a metric model'):
        scale.ScaleAnchor.resolve(True, 'ground_plane', camera_height_m=1.0)
    lenient = scale.ScaleAnchor.resolve(True, 'ground_plane', camera_height_m=1.0, strict=False)
    assert not lenient.active and 'needs a metric model' in lenient.note
    assert 'sparse_depth' in scale.ScaleAnchor.resolve(True, 'none').note
    with pytest.raises(scale.AnchorError, match='camera height'):
        scale.ScaleAnchor.resolve(False, 'ground_plane', camera_height_m=0.0)
    with pytest.raises(scale.AnchorError, match='unknown scale source'):
        scale.ScaleAnchor.resolve(False, 'lidar')


def test_tum_files_and_pose_interpolation(tmp_path, sequence):
    path = tmp_path / 'poses.txt'
    poses.write_tum(path, [0.0, 0.1, 0.2], sequence['poses'][:3])
    stamps, read = poses.read_tum(path, 3)
    np.testing.assert_allclose(stamps, [0.0, 0.1, 0.2])
    np.testing.assert_allclose(read, sequence['poses'][:3], atol=1e-6)
    with pytest.raises(ValueError, match='one line per image'):
        poses.read_tum(path, 4)
    (tmp_path / 'bad.txt').write_text('0 1 2 3 0 0 0\n')
    with pytest.raises(ValueError, match='bad.txt:1'):
        poses.read_tum(tmp_path / 'bad.txt')
    buffer = poses.PoseBuffer()
    a, b = sequence['poses'][0], sequence['poses'][2]
    assert buffer.add(100, a) == '' and buffer.add(300, b) == ''
    assert buffer.add(200, a) != ''                     # out of order: refused
    nan = a.copy()
    nan[1, 3] = np.nan
    assert buffer.add(400, nan) != ''                   # not a finite pose: refused
    mid = buffer.at(200)
    np.testing.assert_allclose(mid[:3, 3], (a[:3, 3] + b[:3, 3]) / 2)
    assert poses.valid_pose(mid) and buffer.at(50) is None and buffer.at(301) is None
    mount = poses.mount_matrix([0.1, 0, 0.2, -0.5, 0.5, -0.5, 0.5])
    np.testing.assert_allclose(mount[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)   # z -> x


def test_infer_with_poses_checks_its_arguments(tmp_path, tiny_checkpoint, sequence):
    from PIL import Image

    from metricgold_core.cli import main

    images = []
    for i in range(3):
        images.append(str(tmp_path / f'{i}.png'))
        Image.fromarray(sequence['rgb'][i]).save(images[-1])
    poses.write_tum(tmp_path / 'poses.txt', [0.0, 0.1, 0.2], sequence['poses'][:3])
    base = ['infer', '--output', str(tmp_path / 'out'), '--checkpoint', str(tiny_checkpoint),
            '--processing-resolution', '64']
    assert main(base + ['--scale-source', 'odometry', *images]) == 2          # no --poses
    assert main(base + ['--poses', str(tmp_path / 'poses.txt'), *images[:2]]) == 2
    assert main(base + ['--scale-source', 'odometry', '--poses', str(tmp_path / 'poses.txt'),
                        '--camera-height', '1.0', *images]) == 2
    assert main(base + ['--scale-source', 'odometry', '--poses', str(tmp_path / 'poses.txt'),
                        '--no-wait-for-scale', *images]) == 0
    for i in range(3):
        depth = np.load(tmp_path / 'out' / f'{i}_depth.npy')
        assert depth.shape == (H, W) and np.isfinite(depth).any()
    # wait for scale (the default): nothing for the images before the first accepted fit
    held = ['infer', '--output', str(tmp_path / 'held'), '--checkpoint', str(tiny_checkpoint),
            '--processing-resolution', '64']
    assert main(held + ['--scale-source', 'odometry', '--poses', str(tmp_path / 'poses.txt'),
                        *images]) == 0
    written = [(tmp_path / 'held' / f'{i}_depth.npy').exists() for i in range(3)]
    assert not written[0]                       # the first image has no earlier one
    assert written == sorted(written)           # once written, every later image is


def test_process_bag_odometry_topic(tmp_path, tiny_checkpoint, sample_frames,
                                    frames_K):
    import json

    from bag_frames import camera_info, FIRST_STAMP_NS, header, image_msg, PERIOD_NS
    from bag_frames import process, TYPES, TYPESTORE
    from rosbags.rosbag2 import StoragePlugin, Writer

    from metricgold_core.data.poses import read_sequence_poses

    frames, K = frames_K
    trajectory = read_sequence_poses(sample_frames)
    bag = tmp_path / 'in'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {topic: writer.add_connection(topic, kind, typestore=TYPESTORE) for topic, kind
                 in (('/cam/image_raw', 'sensor_msgs/msg/Image'),
                     ('/cam/camera_info', 'sensor_msgs/msg/CameraInfo'),
                     ('/odom', 'nav_msgs/msg/Odometry'))}
        for i, rgb in enumerate(frames):
            log_ns = FIRST_STAMP_NS + i * PERIOD_NS
            odom = default_odometry(TYPES)
            odom.header = header(i, 'odom')
            q = poses.matrix_quaternion(trajectory[i][:3, :3])
            p = odom.pose.pose
            p.position.x, p.position.y, p.position.z = (float(v) for v in trajectory[i][:3, 3])
            if i == 3:   # a corrupt message: refused, counted
                p.position.x = float('nan')
            p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = map(float, q)
            for topic, msg in (('/cam/camera_info', camera_info(i, K)),
                               ('/cam/image_raw', image_msg(i, rgb)), ('/odom', odom)):
                writer.write(conns[topic], log_ns, TYPESTORE.serialize_cdr(msg,
                                                                           msg.__msgtype__))
    out = tmp_path / 'out'
    assert process(bag, '--output', out, '--checkpoint', tiny_checkpoint, '--cloud-every', '0',
                   '--odometry-topic', '/odom') == 2           # the mount is needed
    assert process(bag, '--output', out, '--checkpoint', tiny_checkpoint, '--cloud-every', '0',
                   '--odometry-topic', '/cam/image_raw', '--camera-mount',
                   *'0 0 0 0 0 0 1'.split()) == 2              # not an Odometry topic
    assert process(bag, '--output', out, '--checkpoint', tiny_checkpoint, '--cloud-every', '0',
                   '--odometry-topic', '/odom', '--camera-mount', *'0 0 0 0 0 0 1'.split(),
                   '--no-wait-for-scale') == 0
    report = json.loads((out / 'process_report.json').read_text())
    assert report['scale']['source'] == 'odometry'
    assert report['scale']['odometry']['messages'] == len(frames)
    assert report['scale']['odometry']['refused'] == 1
    assert math.isfinite(report['scale']['scale_median'])
    assert report['inferred'] == len(frames)
    fitted = report['scale']['frames_fitted']

    # wait for scale (the default): nothing written before the first accepted fit, every
    # frame after it
    held = tmp_path / 'held'
    assert process(bag, '--output', held, '--checkpoint', tiny_checkpoint, '--cloud-every', '0',
                   '--odometry-topic', '/odom', '--camera-mount', *'0 0 0 0 0 0 1'.split(),
                   '--wait-for-scale') == 0
    report = json.loads((held / 'process_report.json').read_text())
    waiting = report['waiting_for_scale']
    assert waiting >= 1 and report['inferred'] + waiting == len(frames) == report['frames']
    assert report['failed'] == [] and report['scale']['frames_fitted'] == fitted
    written = sorted(p.stem for p in (held / 'depth').glob('*.npy'))
    assert len(written) == report['inferred']
    assert report['bag']['messages']['depth'] == report['inferred']


def default_odometry(types):
    """A nav_msgs/Odometry of zeros built from the rosbags types."""
    t = types
    stamp = t['builtin_interfaces/msg/Time'](sec=0, nanosec=0)
    head = t['std_msgs/msg/Header'](stamp=stamp, frame_id='odom')
    point = t['geometry_msgs/msg/Point'](x=0.0, y=0.0, z=0.0)
    quat = t['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0)
    vec = t['geometry_msgs/msg/Vector3'](x=0.0, y=0.0, z=0.0)
    pose = t['geometry_msgs/msg/PoseWithCovariance'](
        pose=t['geometry_msgs/msg/Pose'](position=point, orientation=quat),
        covariance=np.zeros(36))
    twist = t['geometry_msgs/msg/TwistWithCovariance'](
        twist=t['geometry_msgs/msg/Twist'](linear=vec, angular=vec), covariance=np.zeros(36))
    return t['nav_msgs/msg/Odometry'](header=head, child_frame_id='camera', pose=pose,
                                      twist=twist)


def test_evaluate_odometry_on_sequences(tmp_path, tiny_checkpoint):
    import csv
    import json

    from metricgold_core.cli import main

    base = ['evaluate', '--dataset', 'trajectory', '--count', '1', '--frames', '3', '--size',
            '48', '64', '--checkpoint', str(tiny_checkpoint), '--processing-resolution', '64',
            '--no-map', '--no-progress', '--output']
    assert main(base + [str(tmp_path / 'a'), '--odometry', '--camera-height', 'gt']) == 2
    assert main(['evaluate', '--dataset', 'procedural', '--count', '1', '--size', '48', '64',
                 '--odometry', '--no-progress', '--output', str(tmp_path / 'b')]) == 2
    assert main(base + [str(tmp_path / 'c'), '--odometry']) == 0
    summary = json.loads((tmp_path / 'c' / 'summary.json').read_text())
    assert summary['scale_source'] == 'odometry' and summary['images'] == 3
    with open(tmp_path / 'c' / 'per_image.csv') as f:
        rows = list(csv.DictReader(f))
    assert rows[0]['anchor_ok'] == 'False'   # the first frame has no earlier one
    assert all(math.isfinite(float(r['anchor_scale'])) for r in rows)
    # --wait-for-scale: the frames before the first accepted fit are held, not scored
    assert main(base + [str(tmp_path / 'd'), '--wait-for-scale']) == 2    # needs --odometry
    assert main(base + [str(tmp_path / 'e'), '--odometry', '--wait-for-scale']) == 0
    held = json.loads((tmp_path / 'e' / 'summary.json').read_text())
    frames = [r for r in rows if r['alignment'] == rows[0]['alignment']]
    first_ok = next((i for i, r in enumerate(frames) if r['anchor_ok'] == 'True'), len(frames))
    assert held['held_for_scale'] == first_ok >= 1 and held['images'] == 3 - first_ok
    with open(tmp_path / 'e' / 'per_image.csv') as f:
        scored = [r['name'] for r in csv.DictReader(f) if r['alignment'] == rows[0]['alignment']]
    assert scored == [r['name'] for r in frames[first_ok:]]


def test_every_depth_range_has_its_say_in_the_scale(monkeypatch):
    """A misshapen depth, as models get it: truth ** 1.5, so truth / depth falls with distance
    and the image's scale is the median ratio over all its pixels. On a turning camera the
    joint cost follows the pixels whose parallax moves most; the depth bins of equal image
    share give every range its say. On a sideways one, bins fooled by repeated texture must not
    pull the fit out of the joint cost's valley."""
    from metricgold_core.data.trajectory import render_trajectory

    def errors(seed):
        seq = render_trajectory(seed, H, W, frames=6, fps=10.0)
        fits = run_fits(seq, np.float32(1.0), seq['poses'], power=1.5)
        out = []
        for i, fit in enumerate(fits):
            if fit.ok:
                truth = np.where(seq['valid'][i], seq['depth'][i], np.nan).astype(np.float32)
                out.append(abs(float(np.nanmedian(truth / (fit.scale * truth ** 1.5))) - 1.0))
        return out

    turning, sideways = errors(1), errors(3)
    assert len(turning) >= 3 and len(sideways) >= 4
    assert np.median(turning) < 0.04, turning
    assert max(sideways) < 0.05, sideways
    monkeypatch.setattr(motion, 'MOTION_DEPTH_BINS', 0)   # the joint fit alone
    joint = errors(1)
    assert np.median(joint) > 2 * np.median(turning), (turning, joint)


def test_points_from_motion_give_a_relative_model_metres_or_say_why(sequence):
    """An affine-invariant output (linear in depth, near = 0) with odometry: no metres until the
    triangulated points pass the gates, then scale + shift from them; the photometric fit (a
    scale only) is never used for it."""
    K = sequence['K']
    camera = CameraModel.from_K(K, H, W)
    session = scale.ScaleSession(scale.ScaleAnchor.resolve(True, 'odometry'), 'local')
    metres, reasons = [], set()
    for i in range(len(sequence['poses'])):
        truth = np.where(sequence['valid'][i], sequence['depth'][i], np.nan).astype(np.float32)
        relative = ((truth - 0.5) / 10.0).astype(np.float32)      # depth = 10 x this + 0.5
        motion = session.motion(sequence['poses'][i], i * 100_000_000)
        scaled = session.apply(relative, camera, motion, sequence['rgb'][i], relative=True)
        assert scaled.fit is not None and scaled.fit.method == 'points'
        if scaled.relative:
            reasons.add(scaled.fit.reason.split(' (')[0])
            assert np.allclose(scaled.depth, relative, equal_nan=True)   # untouched
        else:
            metres.append(float(np.nanmedian(np.abs(scaled.depth / truth - 1.0))))
    assert reasons and any('triangulated' in r for r in reasons), reasons
    assert metres and max(metres) < 0.1, metres
