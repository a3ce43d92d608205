"""`metricgold infer` end to end on real images from ../shared/data/real."""
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from metricgold_core.cli import main


def test_infer_writes_depth_files(tmp_path, tiny_checkpoint, shared_data):
    images = [shared_data / 'real/redwood/rgb/00000.jpg', shared_data / 'real/tum/rgb/1.png']
    status = main(['infer', '--checkpoint', str(tiny_checkpoint), '--output', str(tmp_path),
                   '--processing-resolution', '128', '--seed', '3', *map(str, images)])
    assert status == 0
    for path in images:
        depth = np.load(tmp_path / f'{path.stem}_depth.npy')
        assert depth.dtype == np.float32 and depth.shape == (480, 640)
        assert np.isfinite(depth).all()
        assert (depth >= 0.1 * (1 - 1e-6)).all() and (depth <= 100 * (1 + 1e-6)).all()
        png = np.asarray(Image.open(tmp_path / f'{path.stem}_depth.png'))
        assert png.dtype == np.uint16 and png.shape == (480, 640)
        expected_mm = np.clip(np.round(depth * 1000), 0, 65535)
        np.testing.assert_array_equal(png, expected_mm.astype(np.uint16))
        colored = np.asarray(Image.open(tmp_path / f'{path.stem}_depth_colored.png'))
        assert colored.shape == (480, 640, 3) and colored.dtype == np.uint8
        assert len(np.unique(colored.reshape(-1, 3), axis=0)) > 10
    assert not list(tmp_path.glob('.*.tmp'))  # atomic writes leave no temp files


def test_unreadable_images_are_reported_and_skipped(tmp_path, tiny_checkpoint, shared_data,
                                                    caplog):
    bad = tmp_path / 'broken.png'
    bad.write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    good = shared_data / 'real/icl_nuim/rgb/1.png'
    out = tmp_path / 'out'
    status = main(['infer', '--checkpoint', str(tiny_checkpoint), '--output', str(out),
                   '--processing-resolution', '64', str(bad), str(tmp_path / 'missing.jpg'),
                   str(good)])
    assert status == 1
    assert (out / '1_depth.npy').exists()
    assert not (out / 'broken_depth.npy').exists()
    text = caplog.text
    assert 'broken.png' in text and 'missing.jpg' in text and '2 of 3 images failed' in text


def test_console_script_and_seed_determinism(tmp_path, tiny_checkpoint, shared_data):
    image = shared_data / 'real/kinect_ch5/rgb/1.png'
    exe = os.path.join(os.path.dirname(sys.executable), 'metricgold')
    runs = []
    for name in ('a', 'b'):
        result = subprocess.run([exe, 'infer', '--checkpoint', str(tiny_checkpoint), '--steps',
                                 '2', '--seed', '11', '--processing-resolution', '96',
                                 '--output', str(tmp_path / name), str(image)],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        runs.append(np.load(tmp_path / name / '1_depth.npy'))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_missing_checkpoint_is_a_clear_error(tmp_path, shared_data, capsys):
    assert main(['infer', '--checkpoint', str(tmp_path / 'nope'), '--output', str(tmp_path),
                 str(shared_data / 'real/tum/rgb/1.png')]) == 2
    err = capsys.readouterr().err
    assert 'metricgold infer: error:' in err and 'does not exist' in err
    assert 'Traceback' not in err


def test_fast_mode_needs_a_light_decoder(tmp_path, tiny_checkpoint, shared_data, capsys):
    assert main(['infer', '--checkpoint', str(tiny_checkpoint), '--mode', 'fast', '--output',
                 str(tmp_path / 'out'), str(shared_data / 'real/tum/rgb/1.png')]) == 2
    assert 'light decoder' in capsys.readouterr().err
    assert not list((tmp_path / 'out').glob('*depth*'))


def test_images_that_would_write_the_same_files_are_refused(tmp_path, shared_data, caplog):
    tum, icl = shared_data / 'real/tum/rgb/1.png', shared_data / 'real/icl_nuim/rgb/1.png'
    out = tmp_path / 'out'
    assert main(['infer', '--output', str(out), str(tum), str(icl)]) == 2
    assert 'several images named 1.*' in caplog.text and not out.exists()
