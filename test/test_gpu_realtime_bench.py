"""scripts/gpu_realtime_bench.py: its CPU dry run writes every figure the GPU run reports."""
import importlib.util
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # builds and times models for a minute or two
SCRIPT = Path(__file__).resolve().parents[1] / 'scripts' / 'gpu_realtime_bench.py'


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('gpu_realtime_bench', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_writes_the_matrix_and_the_variants(bench, tmp_path, capsys):
    assert bench.main(['--dry-run', '--out', str(tmp_path)]) == 0
    data = json.loads((tmp_path / 'gpu_realtime.json').read_text())
    assert data['dry_run'] and data['preset'] == 'tiny' and not data['errors']
    assert data['environment']['device'] == 'cpu' and 'torch' in data['environment']
    cases = {(r['mode'], r['steps']) for r in data['matrix']}
    assert cases == {('exact', 1), ('exact', 2), ('fast', 1), ('fast', 2)}
    for row in data['matrix'] + data['variants']:
        stages = row['ours_ms']
        assert stages['total'] >= stages['encode'] + stages['denoise'] + stages['decode'] > 0
        assert row['hz'] == pytest.approx(1e3 / stages['total'])
        assert row['diffusers_ms']['total'] > 0 and row['ratio'] > 0
        assert set(row['depth_rel_diff']) == {'mean', 'p99', 'max'}
    exact = [r for r in data['matrix'] if r['mode'] == 'exact']
    assert max(r['max_abs_diff'] for r in exact) < 1e-4   # float32 exact = diffusers' maths
    configs = {r['config'] for r in data['variants']}
    assert configs == {'exact float32', 'fast float32', 'exact float32 nchw', 'fast float32 nchw',
                       'exact bfloat16', 'fast bfloat16'}
    assert 'wrote' in capsys.readouterr().out


def test_refuses_a_full_run_without_cuda(bench, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    assert bench.main(['--out', str(tmp_path)]) == 2
    assert not (tmp_path / 'gpu_realtime.json').exists()
