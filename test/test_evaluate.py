"""`metricgold evaluate` end to end with the tiny untrained checkpoint: files and metrics."""
from __future__ import annotations

import csv
import json
import logging

import numpy as np
from PIL import Image
import pytest

from metricgold_core.cli import main
from metricgold_core.data.registry import make_dataset
from metricgold_core.evaluation.metrics import compute_metrics, METRICS


def read_rows(path) -> list:
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def test_evaluate_a_recording_writes_consistent_results(sample_frames, tiny_checkpoint,
                                                        tmp_path, capsys):
    out = tmp_path / 'eval'
    rc = main(['evaluate', '--checkpoint', str(tiny_checkpoint), '--dataset', 'redwood',
               '--root', str(sample_frames), '--output', str(out),
               '--alignment', 'none', 'affine', '--limit', '2', '--processing-resolution', '64',
               '--save-visuals', '--save-predictions', '--device', 'cpu'])
    assert rc == 0
    captured = capsys.readouterr()
    assert 'evaluate redwood' in captured.err and '2/2' in captured.err  # progress bar
    assert '| tiny, affine |' in captured.out
    rows = read_rows(out / 'per_image.csv')
    assert [(r['name'], r['alignment']) for r in rows] == [
        ('rgb/00000', 'none'), ('rgb/00000', 'affine'),
        ('rgb/00001', 'none'), ('rgb/00001', 'affine')]
    # recompute every metric from the saved prediction and the reader's ground truth
    ds = make_dataset('redwood', sample_frames)
    for k, row in enumerate(rows):
        sample = ds[k // 2]
        pred = np.load(out / 'predictions' / f'rgb__{k // 2:05d}.npy')
        assert pred.shape == (480, 640) and pred.dtype == np.float32
        expected = compute_metrics(pred, sample['depth'], ds.eval_mask(sample), 1e-3, 10.0,
                                   alignment=row['alignment'])
        for name in METRICS:
            assert float(row[name]) == pytest.approx(expected[name], rel=1e-9, nan_ok=True)
        assert int(row['valid_pixels']) == expected['valid_pixels'] > 100_000
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['images'] == 2 and summary['untrained'] is False  # the fixture says nothing
    assert summary['max_depth_m'] == 10.0 and summary['processing_resolution'] == 64
    for mode in ('none', 'affine'):
        mean = np.mean([float(r['abs_rel']) for r in rows if r['alignment'] == mode])
        assert summary['metrics'][mode]['abs_rel'] == pytest.approx(mean)
    # the affine fit can only lower the squared error it minimises
    assert summary['metrics']['affine']['rmse'] <= summary['metrics']['none']['rmse']
    table = (out / 'summary.md').read_text()
    assert table.startswith('redwood: 2 images, depth in [0.001, 10] m')
    assert '| tiny, none | ' in table
    panel = np.asarray(Image.open(out / 'visuals' / 'rgb__00000.png'))
    assert panel.shape == (480, 4 * 640, 3)
    np.testing.assert_array_equal(panel[:, :640], ds[0]['rgb'])
    assert not panel[:, 3 * 640:][~ds[0]['valid']].any()  # unscored pixels are black


def test_evaluate_procedural_scenes(tiny_checkpoint, tmp_path):
    out = tmp_path / 'proc'
    rc = main(['evaluate', '--checkpoint', str(tiny_checkpoint), '--dataset', 'procedural',
               '--count', '2', '--size', '48', '64', '--processing-resolution', '64',
               '--output', str(out), '--alignment',
               'none', 'median', '--no-progress', '--device', 'cpu'])
    assert rc == 0
    rows = read_rows(out / 'per_image.csv')
    assert len(rows) == 4
    assert {r['name'] for r in rows} == {'procedural_indoor_12345037035',
                                         'procedural_outdoor_12345037036'}
    assert all(int(r['valid_pixels']) > 0 for r in rows)
    median_rows = [r for r in rows if r['alignment'] == 'median']
    assert all(float(r['scale']) > 0 for r in median_rows)
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['images'] == 2 and summary['max_depth_m'] == 80.0
    assert 0.0 <= summary['metrics']['median']['delta1'] <= 1.0


def test_evaluate_close_range_procedural_scenes(tiny_checkpoint, tmp_path):
    out = tmp_path / 'close'
    rc = main(['evaluate', '--checkpoint', str(tiny_checkpoint), '--dataset', 'procedural',
               '--framing', 'close', '--count', '2', '--size', '48', '64',
               '--processing-resolution', '64', '--output', str(out), '--no-progress',
               '--device', 'cpu'])
    assert rc == 0
    # the same scene seeds as the normal views, filmed close up
    assert {r['name'] for r in read_rows(out / 'per_image.csv')} == {
        'procedural_indoor_12345037035_close', 'procedural_outdoor_12345037036_close'}
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['framing'] == 'close' and summary['images'] == 2
    assert (out / 'summary.md').read_text().startswith('procedural (close range): 2 images')


def test_evaluate_reports_user_errors(tiny_checkpoint, tmp_path, caplog):
    caplog.set_level(logging.ERROR)
    rc = main(['evaluate', '--checkpoint', str(tiny_checkpoint), '--dataset', 'tum',
               '--root', str(tmp_path / 'nowhere'), '--output', str(tmp_path / 'o')])
    assert rc == 2
    assert 'tum: dataset root' in caplog.text and 'nowhere is not a directory' in caplog.text
    rc = main(['evaluate', '--dataset', 'kitti', '--output', str(tmp_path / 'o')])
    assert rc == 2 and '--root is required for --dataset kitti' in caplog.text
    rc = main(['evaluate', '--checkpoint', str(tmp_path / 'no_ckpt'), '--dataset', 'procedural',
               '--output', str(tmp_path / 'o')])
    assert rc == 2 and 'no_ckpt' in caplog.text and 'does not exist' in caplog.text
    with pytest.raises(SystemExit):
        main(['evaluate', '--dataset', 'nyu', '--root', '.', '--output', str(tmp_path / 'o')])


def test_prior_baseline_scores_the_mean_log_depth_map(tmp_path):
    from metricgold_core.commands.evaluate import mean_log_depth
    from metricgold_core.data.procedural import ProceduralScenes

    out = tmp_path / 'prior'
    assert main(['evaluate', '--dataset', 'procedural', '--count', '3', '--size', '48', '64',
                 '--scene-seed', '5000000', '--prior-baseline', '6', '--output', str(out),
                 '--no-progress']) == 0
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['checkpoint'] == 'prior_baseline(6 scenes)'
    prior = mean_log_depth(ProceduralScenes(6, 48, 64, seed=0))
    # the prior is the exp of the per-pixel mean log depth of the training scenes
    logs = [np.where(s['valid'], np.log(np.where(s['valid'], s['depth'], 1.0)), np.nan)
            for s in ProceduralScenes(6, 48, 64, seed=0)]
    expected = np.exp(np.nanmean(np.stack(logs), axis=0))
    np.testing.assert_allclose(prior, expected, rtol=1e-5)
    rows = read_rows(out / 'per_image.csv')
    for row, sample in zip(rows, ProceduralScenes(3, 48, 64, seed=5000000)):
        m = compute_metrics(prior, sample['depth'], None, summary['min_depth_m'],
                            summary['max_depth_m'])
        assert float(row['abs_rel']) == pytest.approx(m['abs_rel'], rel=1e-9)
    assert main(['evaluate', '--dataset', 'procedural', '--count', '1', '--prior-baseline', '4',
                 '--sparse-points', '10', '--output', str(tmp_path / 'x')]) == 2
