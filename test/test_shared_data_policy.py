"""Tests that need ../shared/data are skipped with one stated reason where it is missing, and
fail the run instead where the run requires it (scripts/run_tests.py beside ../shared/data)."""
import os
from pathlib import Path
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow   # each test runs pytest in a child process
ROOT = Path(__file__).resolve().parents[1]
NEEDS_DATA = 'test/test_readers.py::test_kinect_pgm_values_are_millimetres'


def run_without_data(tmp_path, require: bool):
    env = dict(os.environ, METRICGOLD_SHARED_DATA=str(tmp_path / 'absent'))
    env.pop('METRICGOLD_REQUIRE_SHARED_DATA', None)
    if require:
        env['METRICGOLD_REQUIRE_SHARED_DATA'] = '1'
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-rs', '-p', 'no:cacheprovider',
                           NEEDS_DATA], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_missing_data_skips_with_the_reason_and_how_to_get_it(tmp_path):
    result = run_without_data(tmp_path, require=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert '1 skipped' in result.stdout
    assert f'{tmp_path / "absent"} is missing' in result.stdout
    assert 'METRICGOLD_SHARED_DATA' in result.stdout and '../shared/data' in result.stdout


def test_a_run_that_requires_the_data_fails_on_such_a_skip(tmp_path):
    result = run_without_data(tmp_path, require=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert '1 tests skipped for missing shared data although this run requires it' \
        in result.stdout
