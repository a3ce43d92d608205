"""Lint with flake8 (setup.cfg's [flake8]), then run pytest; "no tests collected" (exit 5)
counts as a failure with a clear message. A lint finding fails the run before any test.

Where ../shared/data is beside the repository (CI), every test that needs it must run: a test
skipped because the data is missing (METRICGOLD_SHARED_DATA pointing elsewhere) fails the run
(test/conftest.py counts those skips under METRICGOLD_REQUIRE_SHARED_DATA=1)."""
import os
from pathlib import Path
import subprocess
import sys

import pytest

if __name__ == '__main__':
    os.environ.setdefault('PYTHONDONTWRITEBYTECODE', '1')
    root = Path(__file__).resolve().parents[1]
    if (root.parent / 'shared' / 'data').is_dir():
        os.environ.setdefault('METRICGOLD_REQUIRE_SHARED_DATA', '1')
    lint = subprocess.run([sys.executable, '-m', 'flake8', str(root)], cwd=root)
    if lint.returncode:
        print('run_tests: flake8 found the problems above (config: setup.cfg [flake8]).',
              file=sys.stderr)
        sys.exit(1)
    status = pytest.main(['-q', '-rs', '--durations=10', *sys.argv[1:]])
    if status == pytest.ExitCode.NO_TESTS_COLLECTED:
        print('run_tests: pytest collected no tests: the suite is missing or misconfigured.',
              file=sys.stderr)
        status = 1
    sys.exit(int(status))
