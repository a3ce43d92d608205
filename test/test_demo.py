"""The packaged default model and the end-to-end demo (camera -> node -> recorder -> report)."""
import json
import os
from pathlib import Path
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from metricgold_core.offline.ply import read_ply

ROOT = Path(__file__).resolve().parents[1]


def test_packaged_model_loads_by_default_and_beats_the_prior():
    from metricgold_core.data.procedural import ProceduralScenes
    from metricgold_core.evaluation.metrics import compute_metrics
    from metricgold_core.model.network import default_model_path, load_default_or
    from metricgold_core.model.pipeline import DepthEstimator

    model = load_default_or(None)
    assert model.meta['preset'] == 'tiny' and not model.meta.get('untrained')
    assert model.processing_resolution == 128
    size = sum(p.stat().st_size for p in default_model_path().rglob('*') if p.is_file())
    assert size <= 20 * 2**20
    est = DepthEstimator(model, device='cpu')
    rows = []
    for scene in ProceduralScenes(8, 96, 128, seed=7_000_000):  # never used in training
        pred = est(scene['rgb'], seed=0)
        rows.append(compute_metrics(pred.depth, scene['depth'], max_depth=80.0)['abs_rel'])
    # the image-blind prior scores AbsRel 1.08 on such scenes (MODEL_CARD.md); the model 0.41
    assert np.mean(rows) < 0.7


@pytest.fixture(scope='module')
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('demo') / 'out'
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    result = subprocess.run([sys.executable, '-m', 'metricgold_demo.run', '--out', str(out),
                             '--count', '4', '--rate', '2', '--height', '120', '--width', '160',
                             '--trajectory', '4', '--timeout', '150'],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result.stdout


@pytest.mark.slow
def test_demo_writes_every_artefact(demo_run):
    out, stdout = demo_run
    for name in ('report.md', 'summary.json', 'contact_sheet.png', 'latency_histogram.png',
                 'frames.json', 'recorded.json'):
        assert (out / name).is_file(), name
    summary = json.loads((out / 'summary.json').read_text())
    # 4 scenes, then 4 frames of a trajectory, then the same 4 with odometry, of which the node
    # holds back those before its first accepted scale fit (wait_for_scale)
    held = summary['sequence_odometry']['waiting_for_scale']
    assert summary['published'] == 12 and summary['received'] == 12 - held
    assert summary['delivery']['node_drop_reasons'] == ({'waiting_for_scale': held} if held
                                                        else {})
    # every frame the node published (its own diagnostics) reached the recorder, in order
    delivery = summary['delivery']
    assert delivery['node_published'] == delivery['recorder_received'] == 12 - held
    assert delivery['sequence_gaps'] == [] and delivery['recorder_saved'] == 12 - held
    stages = summary['latency_stages_ms']
    assert stages['end_to_end']['p50'] >= stages['stamp_to_publish']['p50'] > 0
    assert 'Where the frames went' in (out / 'report.md').read_text()
    assert len(list((out / 'depth_png').glob('*.png'))) == 12 - held
    assert len(list((out / 'depth_colored').glob('*.png'))) == 12 - held
    assert (out / 'clouds' / '0000.ply').is_file()
    assert 'AbsRel' in stdout and 'report' in stdout
    sheet = np.asarray(Image.open(out / 'contact_sheet.png'))
    assert sheet.shape[1] == 4 * 160  # RGB | prediction | ground truth | error


@pytest.mark.slow
def test_report_metrics_recomputed_from_saved_files(demo_run):
    out, _ = demo_run
    summary = json.loads((out / 'summary.json').read_text())
    recorded = {r['stamp_ns']: r for r in json.loads((out / 'recorded.json').read_text())[
        'frames']}
    camera = json.loads((out / 'frames.json').read_text())
    report = (out / 'report.md').read_text()
    abs_rels = []
    held = summary['sequence_odometry']['waiting_for_scale']
    assert sum(f['stamp_ns'] not in recorded for f in camera) == held
    for frame in (f for f in camera if f['stamp_ns'] in recorded):   # not the held ones
        rec = recorded[frame['stamp_ns']]
        gt = np.load(out / 'gt' / f'{frame["index"]:04d}.npy')
        pred = np.load(out / 'depth' / f'{rec["name"]}.npy')
        keep = np.isfinite(gt) & (gt > 1e-3) & (gt <= 100.0) & np.isfinite(pred)
        p = np.clip(pred[keep].astype(np.float64), 1e-3, 100.0)
        g = gt[keep].astype(np.float64)
        abs_rel = np.mean(np.abs(p - g) / g)
        delta1 = np.mean(np.maximum(p / g, g / p) < 1.25)
        abs_rels.append(abs_rel)
        row = next(r for r in summary['per_frame'] if r['index'] == frame['index'])
        assert row['abs_rel'] == pytest.approx(abs_rel, rel=1e-9)
        assert row['delta1'] == pytest.approx(delta1, rel=1e-9)
        line = re.search(rf'^\| {frame["index"]} \| {frame["name"]} \| ([0-9.]+) \| ([0-9.]+) \|',
                         report, re.M)
        assert float(line.group(1)) == pytest.approx(abs_rel, abs=6e-4)
        # the 16-bit PNG holds the same depth in millimetres (saturating at 65.535 m)
        mm = np.asarray(Image.open(out / 'depth_png' / f'{rec["name"]}.png')).astype(np.float64)
        np.testing.assert_allclose(mm[keep] / 1000.0, np.minimum(pred[keep], 65.535), atol=6e-4)
    assert summary['metrics']['abs_rel'] == pytest.approx(np.mean(abs_rels), rel=1e-9)
    lat = [recorded[f['stamp_ns']]['latency_ms'] for f in camera if f['stamp_ns'] in recorded]
    assert summary['latency_ms']['p50'] == pytest.approx(np.percentile(lat, 50))


@pytest.mark.slow
def test_trajectory_map_and_temporal_scores_come_from_the_saved_files(demo_run):
    from metricgold_core.evaluation.sequences import scale_stability, temporal_alignment_error
    out, _ = demo_run
    summary = json.loads((out / 'summary.json').read_text())
    seq = summary['sequence']
    camera = [f for f in json.loads((out / 'frames.json').read_text())
              if 'pose' in f and not f['odometry']]
    assert [f['name'] for f in camera] == [f'trajectory_{i:02d}' for i in range(4)]
    assert seq['frames'] == 4 and seq['kind'] == 'indoor'
    recorded = {r['stamp_ns']: r for r in json.loads((out / 'recorded.json').read_text())[
        'frames']}
    preds = np.stack([np.load(out / 'depth' / f'{recorded[f["stamp_ns"]]["name"]}.npy')
                      for f in camera])
    gts = np.stack([np.load(out / 'gt' / f'{f["index"]:04d}.npy') for f in camera])
    valid = np.isfinite(gts) & (gts > 1e-3) & (gts <= 100.0)
    poses, K = np.array([f['pose'] for f in camera]), np.array(camera[0]['K'])
    assert seq['tae'] == pytest.approx(temporal_alignment_error(preds, poses, K, valid)['tae'])
    assert seq['scale_cv'] == pytest.approx(scale_stability(preds, gts, valid)['scale_cv'])
    assert seq['tae_gt'] < seq['tae']  # the node's depth is less consistent than the truth
    report = (out / 'report.md').read_text()
    assert 'Fused map along a trajectory' in report
    if seq['map']:   # Open3D importable (CI installs it)
        assert (out / 'map.png').is_file() and 'map.png' in report
        points = read_ply(out / 'map_node_depth.ply')
        assert len(points) == seq['map_points'] > 100
        assert seq['gt_map_accuracy_cm'] < seq['map_accuracy_cm']
    else:
        assert 'No fused map' in report


@pytest.mark.slow
def test_drive_with_odometry_is_anchored_and_fused_beside_the_drive_without(demo_run):
    from metricgold_core.evaluation.metrics import compute_metrics
    from metricgold_core.camera.poses import mount_matrix
    from metricgold_demo import CAMERA_MOUNT
    from metricgold_demo.camera_replay import base_pose, ODOM_FROM_WORLD

    out, _ = demo_run
    summary = json.loads((out / 'summary.json').read_text())
    camera = json.loads((out / 'frames.json').read_text())
    drive = [f for f in camera if f.get('odometry')]
    plain = [f for f in camera if 'pose' in f and not f['odometry']]
    assert [f['name'] for f in drive] == [f'odometry_{i:02d}' for i in range(4)]
    assert [f['pose'] for f in drive] == [f['pose'] for f in plain]   # the same drive
    # the odometry published is the robot base: with the mount it gives the camera's pose
    pose = np.array(drive[1]['pose'])
    np.testing.assert_allclose(base_pose(pose) @ mount_matrix(CAMERA_MOUNT.split()),
                               ODOM_FROM_WORLD @ pose, atol=1e-12)
    q = summary['sequence_odometry']
    node = q['node']
    # the node was switched to odometry and received the robot's odometry of every frame
    assert node['scale_source'] == 'odometry'
    assert int(node['odometry_received']) == 4
    assert int(node['odometry_fits_accepted']) >= 1
    held = q['waiting_for_scale']
    assert held is not None and held < 4 and q['frames_sent'] == 4 and q['frames'] == 4 - held
    assert 'switched to scale_source odometry' in (out / 'logs' / 'camera.log').read_text()
    # the drive's AbsRel is the mean over the frames the node published, recomputed here
    recorded = {r['stamp_ns']: r for r in json.loads((out / 'recorded.json').read_text())[
        'frames'] if 'name' in r}
    got = [f for f in drive if f['stamp_ns'] in recorded]
    assert len(got) == 4 - held
    rows = [compute_metrics(np.load(out / 'depth' / f'{recorded[f["stamp_ns"]]["name"]}.npy'),
                            np.load(out / 'gt' / f'{f["index"]:04d}.npy'), max_depth=100.0)
            for f in got]
    assert q['abs_rel'] == pytest.approx(np.mean([r['abs_rel'] for r in rows]), rel=1e-9)
    report = (out / 'report.md').read_text()
    assert '## The drive with odometry' in report
    assert re.search(rf'^\| scale_source odometry \| {4 - held} \| {held} \| ', report, re.M)
    if q['map']:   # Open3D importable (CI installs it)
        assert q['picture'] == 'map_odometry.png' and 'map_odometry.png' in report
        picture = np.asarray(Image.open(out / 'map_odometry.png'))
        # without | with odometry | ground truth, each a column
        assert picture.shape[1] > picture.shape[0]
        assert len(read_ply(out / 'map_odometry.ply')) == q['map_points'] > 100
    else:
        assert 'No fused map' in report


@pytest.mark.slow
def test_saved_cloud_is_the_back_projection_of_saved_depth(demo_run):
    out, _ = demo_run
    rec = next(r for r in json.loads((out / 'recorded.json').read_text())['frames']
               if r.get('ply'))
    depth = np.load(out / 'depth' / f'{rec["name"]}.npy')
    fx, cx, fy, cy = rec['P'][0], rec['P'][2], rec['P'][5], rec['P'][6]
    v, u = np.nonzero(np.isfinite(depth))
    z = depth[v, u].astype(np.float64)
    expected = np.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], axis=1)
    points = read_ply(out / rec['ply'])
    got = np.stack([points['x'], points['y'], points['z']], axis=1).astype(np.float64)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_demo_on_a_folder_of_own_images(tmp_path, sample_frames):
    out = tmp_path / 'own'
    result = subprocess.run([sys.executable, '-m', 'metricgold_demo.run', '--out', str(out),
                             '--count', '2', '--rate', '2', '--mode', 'fast', '--images',
                             str(sample_frames / 'rgb')],
                            cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['received'] == 2 and summary['metrics'] is None
    report = (out / 'report.md').read_text()
    assert 'No ground truth' in report and 'Fast mode' in report
    assert 'fast mode' in (out / 'logs' / 'depth_node.log').read_text()  # the node's own word
    camera = json.loads((out / 'frames.json').read_text())
    # the folder's intrinsics.json (one level up) was used, not the FOV fallback
    assert camera[0]['K'][0][0] == pytest.approx(525.0)
    assert [f['name'] for f in camera] == ['00000', '00001']
    depth = np.load(out / 'depth' / '0000.npy')
    assert depth.shape == (480, 640) and np.isfinite(depth).all()


def test_report_charges_each_lost_frame_to_whoever_lost_it(tmp_path):
    """6 camera frames: the node received 5 (one lost on the way to it), dropped one as stale
    and published 4; 3 reached the recorder (depth sequence number 2 never came), 2 were saved."""
    from metricgold_demo.report import build_report
    stamp = 10**18
    camera = [{'index': i, 'name': f'indoor_{i}', 'stamp_ns': stamp + i * 10**9,
               'has_gt': False} for i in range(6)]
    recorded = []
    for i, seq in ((0, 1), (2, 3), (3, 4)):   # frames 1 (node: stale) and 4 (transport) missing
        rec = {'stamp_ns': stamp + i * 10**9, 'index': i, 'seq': seq,
               'arrival_ns': stamp + i * 10**9 + 150 * 10**6, 'latency_ms': 150.0,
               'published_ns': stamp + i * 10**9 + 120 * 10**6, 'transport_ms': 10.0,
               'recorder_wait_ms': 20.0}
        if i != 3:
            rec.update(name=f'{i:04d}', write_ms=40.0)
        recorded.append(rec)
    diagnostics = {'name': 'metricgold_depth', 'level': 0, 'message': 'ok', 'values': {
        'frames_received': '5', 'frames_published': '4', 'dropped_stale': '1',
        'dropped_busy': '0', 'latency_p50_ms': '118.5', 'latency_p95_ms': '140',
        'max_latency_ms': '1000'}}
    (tmp_path / 'frames.json').write_text(json.dumps(camera))
    (tmp_path / 'recorded.json').write_text(json.dumps(
        {'frames': recorded, 'diagnostics': diagnostics,
         'write_errors': ["frame 3: OSError('disk full')"]}))
    summary = build_report(tmp_path)
    d = summary['delivery']
    assert (d['camera_published'], d['node_received'], d['lost_camera_to_node']) == (6, 5, 1)
    assert d['node_dropped'] == 1 and d['node_drop_reasons'] == {'dropped_stale': 1}
    assert (d['node_published'], d['recorder_received'], d['lost_node_to_recorder']) == (4, 3, 1)
    assert d['sequence_gaps'] == [2] and d['recorder_saved'] == 2
    stages = summary['latency_stages_ms']
    assert stages['node'] == {'p50': 118.5, 'p95': 140.0}
    assert stages['stamp_to_publish']['p50'] == pytest.approx(120.0)
    assert stages['transport']['p50'] == 10.0 and stages['recorder_wait']['p50'] == 20.0
    report = (tmp_path / 'report.md').read_text()
    assert '| node published (its diagnostics) | 4 | 1 | node: dropped_stale 1 |' in report
    assert 'transport node -> recorder (depth sequence numbers 2 never came)' in report
    assert '| recorder saved | 2 | 1 | recorder: frame 3: OSError' in report
