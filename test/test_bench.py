"""`metricgold bench`: times both pipelines on the same weights and checks their outputs agree."""
import json

import numpy as np

from metricgold_core.cli import main


def test_bench_reports_stage_times_ratio_and_agreement(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert main(['bench', '--height', '48', '--width', '64', '--repeats', '1', '--device', 'cpu',
                 '--dtype', 'float32', '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['max_abs_diff'] <= 1e-4 and result['depth_rel_diff']['max'] < 1e-4
    assert result['ratio'] == result['ours_ms']['total'] / result['diffusers_ms']['total']
    for stage in ('preprocess', 'encode', 'denoise', 'decode', 'postprocess', 'total'):
        assert result['ours_ms'][stage] >= 0
    for stage in ('encode', 'denoise', 'decode', 'total'):
        assert result['diffusers_ms'][stage] > 0
    printed = capsys.readouterr().out
    assert 'ratio ours/diffusers' in printed and '| decode |' in printed


def test_the_packaged_model_agrees_with_diffusers_on_its_normalised_input(tmp_path):
    """The packaged model normalises its input's exposure, which diffusers' pipeline does not
    do: the bench gives diffusers the same normalised image, so exact float32 still agrees."""
    from metricgold_core.commands.bench import diffusers_input
    from metricgold_core.model.network import load_default_or
    assert load_default_or(None).input_normalization   # else this test checks nothing new
    image = (50 + np.arange(24 * 32 * 3).reshape(24, 32, 3) % 51).astype(np.uint8)
    assert diffusers_input(image, None) is image
    shown = diffusers_input(image, {'mean': 0.0})   # mean grey 0.5 in [0, 1], one gain
    assert shown.dtype == np.float32 and shown.shape == image.shape
    assert abs(shown.mean() - 0.5) < 1e-3
    np.testing.assert_allclose(shown / (image / 255.0), 0.5 / (image / 255.0).mean(), rtol=1e-4)
    out = tmp_path / 'bench.json'
    assert main(['bench', '--preset', 'default', '--height', '48', '--width', '64',
                 '--repeats', '1', '--device', 'cpu', '--dtype', 'float32',
                 '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['max_abs_diff'] <= 1e-4 and result['depth_rel_diff']['max'] < 1e-4


def test_fast_mode_on_a_preset_times_an_untrained_light_decoder(tmp_path):
    out = tmp_path / 'bench.json'
    assert main(['bench', '--height', '48', '--width', '64', '--repeats', '1', '--device', 'cpu',
                 '--mode', 'fast', '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['mode'] == 'fast' and result['ours_ms']['decode'] > 0
    assert result['max_abs_diff'] > 1e-4   # an approximation (here: an untrained one)


def test_matrix_table_has_one_row_per_case():
    # a real matrix run takes minutes at 480x640; the suite checks the table it prints
    from metricgold_core.commands.bench import matrix_table
    row = {'height': 240, 'width': 320, 'steps': 1, 'ratio': 0.5, 'max_abs_diff': 1e-5,
           'peak_memory_mb': 100.0, 'diffusers_ms': {'total': 20.0},
           'ours_ms': {'preprocess': 1.0, 'encode': 2.0, 'denoise': 3.0, 'decode': 4.0,
                       'postprocess': 0.5, 'total': 10.5}}
    table = matrix_table([row])
    lines = table.splitlines()
    assert len(lines) == 3 and lines[2].startswith('| 240x320 | 1 | 1.0 | 2.0 | 3.0 | 4.0 |')
    assert '| 0.500 |' in lines[2]


def test_variants_are_timed_against_one_diffusers_run(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert main(['bench', '--height', '32', '--width', '48', '--repeats', '1', '--device', 'cpu',
                 '--variants', 'exact:float32,exact:bfloat16,fast:float32',
                 '--json', str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r['mode'], r['dtype']) for r in rows] == [
        ('exact', 'float32'), ('exact', 'bfloat16'), ('fast', 'float32')]
    assert len({r['diffusers_ms']['total'] for r in rows}) == 1   # the same diffusers runs
    assert all(r['diffusers_dtype'] == 'float32' for r in rows)
    assert rows[0]['max_abs_diff'] <= 1e-4 < rows[1]['max_abs_diff']   # bf16 rounds
    for r in rows:
        assert r['ratio'] == r['ours_ms']['total'] / r['diffusers_ms']['total']
        assert r['cpu_ratio'] == r['ours_ms']['cpu_total'] / r['diffusers_ms']['cpu_total']
    printed = capsys.readouterr().out
    assert '| exact bfloat16 |' in printed and '| fast float32 |' in printed
    assert main(['bench', '--variants', 'exact:int8']) == 2
