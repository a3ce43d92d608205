"""Run pytest; "no tests collected" (exit 5) counts as a failure with a clear message."""
import os
import sys

import pytest

if __name__ == '__main__':
    os.environ.setdefault('PYTHONDONTWRITEBYTECODE', '1')
    status = pytest.main(['-q', '-rs', '--durations=10', *sys.argv[1:]])
    if status == pytest.ExitCode.NO_TESTS_COLLECTED:
        print('run_tests: pytest collected no tests: the suite is missing or misconfigured.',
              file=sys.stderr)
        status = 1
    sys.exit(int(status))
