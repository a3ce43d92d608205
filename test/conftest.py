"""Shared fixtures: generated camera frames, the ../shared/data folder, a tiny untrained
checkpoint, a unique ROS domain.

Tests that only need an image or an RGB-D pair use `sample_frames` (rendered here, so a bare
clone runs them). Tests that need the real recordings or the dataset-format samples use
`shared_data`, which skips them, all with one reason, when the folder is absent. With
METRICGOLD_REQUIRE_SHARED_DATA=1 (scripts/run_tests.py sets it when ../shared/data is there,
as in CI) any such skip fails the run instead: there every one of those tests must run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get('METRICGOLD_SHARED_DATA', ROOT.parent / 'shared' / 'data'))
SHARED_DATA_MISSING = (
    f'needs the real test frames: {SHARED_DATA} is missing (put the project\'s shared/data '
    'folder at ../shared/data beside the repository, or set METRICGOLD_SHARED_DATA to it)')
_missing_data_skips = []

# Redwood / PrimeSense calibration (640x480): generated frames film with the same camera.
SAMPLE_INTRINSICS = {'width': 640, 'height': 480, 'fx': 525.0, 'fy': 525.0, 'cx': 319.5,
                     'cy': 239.5, 'depth_scale': 1000}


@pytest.fixture(scope='session')
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(SHARED_DATA_MISSING)
    return SHARED_DATA


def pytest_runtest_logreport(report):
    if report.skipped and isinstance(report.longrepr, tuple) and \
            SHARED_DATA_MISSING in str(report.longrepr[2]):
        _missing_data_skips.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _missing_data_skips and os.environ.get('METRICGOLD_REQUIRE_SHARED_DATA') == '1':
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _missing_data_skips:
        return
    if os.environ.get('METRICGOLD_REQUIRE_SHARED_DATA') == '1':
        terminalreporter.write_line(
            f'FAILED: {len(_missing_data_skips)} tests skipped for missing shared data although '
            'this run requires it (METRICGOLD_REQUIRE_SHARED_DATA=1): point '
            f'METRICGOLD_SHARED_DATA at the data (now {SHARED_DATA}).', red=True)
    else:
        terminalreporter.write_line(
            f'{len(_missing_data_skips)} tests skipped: they need the real test frames '
            f'({SHARED_DATA} is missing).', yellow=True)


def write_sample_sequence(folder: Path, frames: int = 5, seed: int = 3) -> Path:
    """A procedural indoor walk written as a Redwood recording: rgb/NNNNN.jpg, depth/NNNNN.png
    (uint16 millimetres, 0 = no measurement), intrinsics.json and trajectory.log (camera ->
    world, optical frame). The folder."""
    import numpy as np

    from metricgold_core.data.trajectory import render_trajectory
    from metricgold_core.camera.geometry import make_K
    from metricgold_core.io_utils import save_png
    from PIL import Image as PILImage

    intr = SAMPLE_INTRINSICS
    K = make_K(intr['fx'], intr['fy'], intr['cx'], intr['cy'])
    sequence = render_trajectory(seed, intr['height'], intr['width'], kind='indoor',
                                 frames=frames, K=K)
    (folder / 'rgb').mkdir(parents=True)
    (folder / 'depth').mkdir()
    log = []
    for i in range(frames):
        PILImage.fromarray(sequence['rgb'][i]).save(folder / 'rgb' / f'{i:05d}.jpg', quality=95)
        depth_mm = np.nan_to_num(sequence['depth'][i] * intr['depth_scale'], nan=0.0)
        save_png(folder / 'depth' / f'{i:05d}.png',
                 np.clip(np.round(depth_mm), 0, 65535).astype(np.uint16))
        log.append(f'{i} {i} {i + 1}')
        log.extend(' '.join(f'{v:.9f}' for v in row) for row in sequence['poses'][i])
    (folder / 'trajectory.log').write_text('\n'.join(log) + '\n')
    (folder / 'intrinsics.json').write_text(json.dumps(intr))
    return folder


@pytest.fixture(scope='session')
def sample_frames(tmp_path_factory) -> Path:
    """Five generated 640x480 RGB-D frames of an indoor scene with their poses, laid out as a
    Redwood recording (see write_sample_sequence); read only."""
    return write_sample_sequence(tmp_path_factory.mktemp('sample_frames') / 'indoor')


@pytest.fixture(scope='session')
def tiny_model():
    """A deterministic, untrained tiny MetricGoldModel (same architecture as SD, ~5M params)."""
    import torch
    from metricgold_core.model.network import MetricGoldModel
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    return MetricGoldModel.from_preset('tiny', seed=0)


@pytest.fixture(scope='session')
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    """The tiny model saved in the checkpoint format (shared by the whole session: read only)."""
    path = tmp_path_factory.mktemp('ckpt') / 'tiny'
    tiny_model.save(path)
    return path


@pytest.fixture(scope='session')
def checkpoint_with_meta(tmp_path_factory, tiny_checkpoint):
    """make(name, **entries): a copy of the tiny checkpoint whose metricgold.json has these
    entries replaced (e.g. depth_type='affine_invariant', canonical_focal_px=100.0)."""
    import shutil

    def make(name: str, **entries) -> Path:
        path = tmp_path_factory.mktemp(name) / name
        shutil.copytree(tiny_checkpoint, path)
        meta = json.loads((path / 'metricgold.json').read_text())
        meta.update(entries)
        (path / 'metricgold.json').write_text(json.dumps(meta))
        return path
    return make


@pytest.fixture(scope='module')
def frames_K(sample_frames):
    """Four generated frames (sample_frames) at bag_frames.HW and their K (640x480 intrinsics
    scaled to HW): the camera of the bag tests (skipped, as those are, without rosbags)."""
    import numpy as np

    from bag_frames import HW
    from metricgold_core.camera.geometry import make_K, scale_intrinsics
    from PIL import Image as PILImage

    intr = json.loads((sample_frames / 'intrinsics.json').read_text())
    K = scale_intrinsics(make_K(intr['fx'], intr['fy'], intr['cx'], intr['cy']),
                         (intr['height'], intr['width']), HW)
    frames = []
    for i in range(4):
        with PILImage.open(sample_frames / 'rgb' / f'{i:05d}.jpg') as image:
            frames.append(np.asarray(image.convert('RGB').resize(HW[::-1], PILImage.BILINEAR)))
    return frames, K


@pytest.fixture
def fakes_importable(monkeypatch):
    """The test folder on sys.path (training recipes name `training_fakes:FakeScenes`) and the
    torch thread count restored afterwards (a run sets its own)."""
    import torch

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
