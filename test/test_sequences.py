"""Sequence evaluation: pose files, TAE on real recordings, fused maps and the evaluate CLI."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from metricgold_core.camera.poses import quaternion_matrix
from metricgold_core.cli import main
from metricgold_core.data.poses import (PosedFrames, read_pose_txt, read_sequence_poses,
                                        read_trajectory_log)
from metricgold_core.data.registry import make_dataset
from metricgold_core.data.trajectory import render_trajectory
from metricgold_core.evaluation.mapping import PANEL_PX
from metricgold_core.evaluation.sequences import score_sequence, temporal_alignment_error


def needs_open3d():
    """Skip (with the reason) only where Open3D cannot be imported; CI installs it."""
    try:
        import open3d  # noqa: F401
    except ImportError as exc:
        pytest.skip(f'open3d cannot be imported here ({exc}); `pip install ".[map]"` and '
                    f'apt-get install libusb-1.0-0 run these tests')


def test_pose_files_are_read_as_camera_to_world(tmp_path):
    R = quaternion_matrix(0.0, 0.0, np.sin(np.pi / 4), np.cos(np.pi / 4))  # 90 deg about z
    np.testing.assert_allclose(R, [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)
    path = tmp_path / 'pose.txt'
    path.write_text('# tx ty tz qx qy qz qw\n1 2 3 0 0 0 2\n\n0 0 0 0 0.7071068 0 0.7071068\n')
    poses = read_pose_txt(path)
    assert poses.shape == (2, 4, 4)
    np.testing.assert_allclose(poses[0], [[1, 0, 0, 1], [0, 1, 0, 2], [0, 0, 1, 3],
                                          [0, 0, 0, 1]])
    np.testing.assert_allclose(poses[1][:3, 2], [1, 0, 0], atol=1e-6)  # z turned onto x
    path.write_text('1 2 3\n')
    with pytest.raises(ValueError, match='tx ty tz'):
        read_pose_txt(path)
    with pytest.raises(FileNotFoundError, match='trajectory.log or pose.txt'):
        read_sequence_poses(tmp_path / 'nowhere')


@pytest.mark.parametrize('name,folder,floor', [('redwood', 'redwood', 0.01),
                                               ('kinect', 'kinect_ch5', 0.06),
                                               ('icl_nuim', 'icl_nuim', 0.03)])
def test_real_poses_agree_with_the_recorded_depth(shared_data, name, folder, floor):
    ds = PosedFrames(make_dataset(name, shared_data / 'real' / folder), name)
    frames = [ds[i] for i in range(len(ds))]
    assert len(frames) == 5 and frames[0]['sequence'] == name
    if folder == 'redwood':
        np.testing.assert_allclose(frames[0]['pose'],
                                   read_trajectory_log(shared_data / 'real/redwood/'
                                                       'trajectory.log')[0])
    depth = np.stack([f['depth'] for f in frames])
    valid = np.stack([f['valid'] for f in frames])
    poses = np.stack([f['pose'] for f in frames])
    for T in poses:
        assert np.linalg.det(T[:3, :3]) == pytest.approx(1.0, abs=1e-5)
    # the recorded depth warped along the poses meets the next frame's depth: TAE ~ 0
    assert temporal_alignment_error(depth, poses, frames[0]['K'], valid)['tae'] < floor
    # the wrong convention (inverted poses) does not
    inverted = np.linalg.inv(poses)
    assert temporal_alignment_error(depth, inverted, frames[0]['K'], valid)['tae'] > 2 * floor


def test_a_map_fused_from_ground_truth_scores_about_zero():
    needs_open3d()
    s = render_trajectory(1, 180, 240, kind='indoor', frames=8, fps=10.0, motion='forward')
    result = score_sequence(s['depth'], s['depth'], s['valid'], s['poses'], s['K'], 'indoor')
    row = result['row']
    assert row['tae'] < 0.02 and row['scale_cv'] == pytest.approx(0.0, abs=1e-9)
    # the prediction is the ground truth here, so both maps are the same near-perfect one
    for prefix in ('map_', 'gt_map_'):
        assert row[prefix + 'accuracy_cm'] < 1.5 and row[prefix + 'completeness_cm'] < 2.0
        assert row[prefix + 'fscore_5cm'] > 0.93 and row[prefix + 'fscore_10cm'] > 0.97
    picture = result['picture']
    # two columns (predicted | ground truth), each a labelled top view over a perspective view
    assert picture.dtype == np.uint8
    assert picture.shape == (2 * (22 + PANEL_PX), 2 * PANEL_PX + 4, 3)
    top_left = picture[22:22 + PANEL_PX, :PANEL_PX]
    assert (top_left != 24).any(axis=2).mean() > 0.1  # the map covers part of the panel
    # depth 10 % too far everywhere: the map is off by decimetres and the F-score collapses
    far = score_sequence(s['depth'] * 1.1, s['depth'], s['valid'], s['poses'], s['K'],
                         'indoor', picture=False)['row']
    assert far['map_accuracy_cm'] > 8.0 and far['map_fscore_5cm'] < 0.3
    assert far['gt_map_accuracy_cm'] == pytest.approx(row['gt_map_accuracy_cm'])
    assert far['scale_mean'] == pytest.approx(1 / 1.1, rel=1e-6)


def test_map_metrics_follow_the_reconstruction_protocol():
    needs_open3d()
    from metricgold_core.evaluation.mapping import map_metrics
    g = np.stack(np.meshgrid(np.arange(0, 2, 0.01), np.arange(0, 2, 0.01)), -1).reshape(-1, 2)
    plane = np.column_stack([g, np.zeros(len(g))])
    same = map_metrics(plane, plane, 0.01)
    assert same['accuracy_cm'] == pytest.approx(0.0, abs=1e-6) and same['fscore_5cm'] == 1.0
    lifted = map_metrics(plane + [0, 0, 0.07], plane, 0.01)  # 7 cm above the true surface
    assert lifted['accuracy_cm'] == pytest.approx(7.0, abs=0.01)
    assert lifted['completeness_cm'] == pytest.approx(7.0, abs=0.01)
    assert lifted['fscore_5cm'] == 0.0 and lifted['fscore_10cm'] == 1.0
    half = map_metrics(plane[plane[:, 0] < 1.0], plane, 0.01)  # half the surface mapped
    # recall: the mapped half plus the 5 cm strip beyond its edge (x < 1.04 of 0..2 m)
    assert half['precision_5cm'] == 1.0 and half['recall_5cm'] == pytest.approx(0.52, abs=0.005)
    empty = map_metrics(np.zeros((0, 3)), plane, 0.01)
    assert np.isnan(empty['accuracy_cm']) and empty['fscore_10cm'] == 0.0


def read_rows(path) -> list:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_evaluate_scores_trajectories_and_recorded_sequences(shared_data, tmp_path):
    needs_open3d()
    out = tmp_path / 'traj'
    assert main(['evaluate', '--dataset', 'trajectory', '--count', '2', '--frames', '3',
                 '--size', '48', '64', '--prior-baseline', '2', '--output', str(out),
                 '--no-progress']) == 0
    rows = read_rows(out / 'sequences.csv')
    assert [(r['kind'], r['motion'], r['frames']) for r in rows] == [
        ('indoor', 'forward', '3'), ('outdoor', 'forward', '3')]
    assert len(read_rows(out / 'per_image.csv')) == 6
    summary = json.loads((out / 'summary.json').read_text())
    means = summary['sequences']['means']
    assert means['all']['sequences'] == 2 and means['indoor']['sequences'] == 1
    for r in rows:
        assert float(r['tae_gt']) < float(r['tae'])  # a fixed prior map is no sequence
        assert (out / 'maps' / f'{r["sequence"]}.png').is_file()
    assert 'Sequences (TAE' in (out / 'summary.md').read_text()
    real = tmp_path / 'redwood'
    assert main(['evaluate', '--dataset', 'redwood', '--root',
                 str(shared_data / 'real/redwood'), '--sequence', '--prior-baseline', '2',
                 '--output', str(real), '--no-progress', '--no-map']) == 0
    (row,) = read_rows(real / 'sequences.csv')
    assert row['sequence'] == 'redwood' and row['frames'] == '5'
    assert float(row['tae_gt']) < 0.01 and row['map_accuracy_cm'] == ''
    assert not (real / 'maps').exists()


def test_a_recording_without_poses_is_refused(shared_data, tmp_path, caplog):
    assert main(['evaluate', '--dataset', 'tum', '--root', str(shared_data / 'real/tum'),
                 '--sequence', '--prior-baseline', '2', '--output', str(tmp_path / 'o'),
                 '--no-progress']) == 2
    assert 'no camera poses' in caplog.text


def test_maps_without_open3d_are_refused_with_the_way_out(tmp_path, caplog, monkeypatch):
    import metricgold_core.evaluation.mapping as mapping

    def missing():
        raise ImportError('fused maps need Open3D: pip install "metricgold_ros[map]"')
    monkeypatch.setattr(mapping, 'require_open3d', missing)
    args = ['evaluate', '--dataset', 'trajectory', '--count', '1', '--frames', '2', '--size',
            '16', '16', '--prior-baseline', '1', '--no-progress']
    assert main(args + ['--output', str(tmp_path / 'a')]) == 2
    assert 'metricgold_ros[map]' in caplog.text and '--no-map' in caplog.text
    assert main(args + ['--output', str(tmp_path / 'b'), '--no-map']) == 0
