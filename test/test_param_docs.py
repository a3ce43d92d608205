"""One parameter table: config/depth.yaml and docs/NODE.md's table are generated from
params.PARAMETERS and current; every config YAML sets declared parameters with valid values;
the CLI's shared options say what the node's parameters say. No ROS process is started."""
from pathlib import Path
import re
import shutil

import pytest
import yaml

from metricgold_core.cli import build_parser
from metricgold_core.model.run_options import DESCRIPTIONS
from metricgold_ros import param_docs
from metricgold_ros.depth_node import NODE_NAME
from metricgold_ros.params import check_consistency, normalise, PARAMETERS, Spec, SPECS

ROOT = Path(__file__).resolve().parents[1]
CONFIG_YAMLS = sorted((ROOT / 'config').glob('*.yaml'))


def test_generated_files_are_current():
    stale = [str(path.relative_to(ROOT)) for path in param_docs.stale_files()]
    assert not stale, (f'{", ".join(stale)} out of date with metricgold_ros/params.py: run '
                       f'`{param_docs.COMMAND}` and commit the result')


def test_the_yaml_lists_every_parameter_with_its_description_in_order():
    text = param_docs.CONFIG.read_text()
    assert list(yaml.safe_load(text)[f'/**/{NODE_NAME}']['ros__parameters']) == \
        [spec.name for spec in PARAMETERS]
    comments = ' '.join(line.strip().removeprefix('#').strip() for line in text.splitlines()
                        if line.lstrip().startswith('#'))
    for spec in PARAMETERS:   # the full description, as `ros2 param describe` shows it
        assert ' '.join(spec.description.split()) in comments, spec.name


def test_the_readme_table_shows_the_chosen_parameters_as_described():
    text = param_docs.README.read_text()
    table = text.split(param_docs.README_BEGIN, 1)[1].split(param_docs.README_END, 1)[0]
    rows = re.findall(r'^\| `(\w+)` \| `[^`]*` \| (.*) \|$', table, re.M)
    assert [name for name, _ in rows] == list(param_docs.README_PARAMETERS)
    for name, text in rows:
        assert text.startswith(SPECS[name].description.replace('|', '\\|')), name


def test_the_node_reference_table_has_one_row_per_parameter():
    text = param_docs.NODE_DOC.read_text()
    table = text.split(param_docs.TABLE_BEGIN, 1)[1].split(param_docs.TABLE_END, 1)[0]
    rows = re.findall(r'^\| `(\w+)` \| `([^`]*)` \| ([^|]*) \| (read-only|changeable) \|', table,
                      re.M)
    assert [row[0] for row in rows] == [spec.name for spec in PARAMETERS]
    for name, default, values, run_time in rows:
        spec = SPECS[name]
        assert yaml.safe_load(default) == spec.default, name
        assert (run_time == 'read-only') == spec.read_only, name
    assert dict((r[0], r[2]) for r in rows)['steps'] == 'auto, 1, 2'
    assert dict((r[0], r[2]) for r in rows)['torch_threads'] == '0 .. 256'
    # the hand-written page around the table is kept
    assert text.count('## Parameters') == 1 and 'Values are checked at start' in text


@pytest.mark.parametrize('path', CONFIG_YAMLS, ids=lambda p: p.name)
def test_every_config_yaml_sets_declared_parameters_with_valid_values(path):
    data = yaml.safe_load(path.read_text())
    assert set(data) <= {'/**', f'/**/{NODE_NAME}', NODE_NAME, f'/{NODE_NAME}'}, list(data)
    values = {}
    for node in data.values():
        assert list(node) == ['ros__parameters'], f'{path.name}: {list(node)}'
        values.update(node['ros__parameters'])
    unknown = sorted(set(values) - set(SPECS))
    assert not unknown, f'{path.name}: not parameters of the node: {unknown}'
    for name, value in values.items():
        spec = SPECS[name]
        allowed = (str, int) if spec.dynamic else (type(spec.default),)
        # ROS refuses an integer for a double parameter, so the type must match exactly
        assert type(value) in allowed, f'{path.name}: {name}: {value!r} is not {allowed}'
        if spec.range is not None:
            assert spec.range[0] <= value <= spec.range[1], f'{path.name}: {name}: {value!r}'
        normalise(name, value)
    check_consistency({**{spec.name: spec.default for spec in PARAMETERS}, **values})


@pytest.mark.parametrize('value,text', [
    ('off', "'off'"), ('', "''"), ('yes', "'yes'"), ('1', "'1'"), ('auto', 'auto'),
    ('0.2 0 0.3 -0.5 0.5 -0.5 0.5', '0.2 0 0.3 -0.5 0.5 -0.5 0.5'), ("it's", "it's"),
    ('a: b', "'a: b'"),
    (True, 'true'), (0, '0'), (50.0, '50.0'), (1e-05, '1.0e-05'), (2 ** 31 - 1, '2147483647'),
])
def test_defaults_are_written_as_yaml_that_reads_back_the_same(value, text):
    assert param_docs.yaml_scalar(value) == text
    assert type(yaml.safe_load(text)) is type(value) and yaml.safe_load(text) == value


def test_a_new_parameter_is_one_spec():
    new = Spec('made_up_mode', 'off', 'Local scale correction: off or local | global.',
               read_only=False)
    gap = Spec('occlusion_gap', 1e-05, 'A tiny gap <in units>.', (0.0, 1.0))
    parameters = PARAMETERS + (new, gap)
    text = param_docs.render_yaml(parameters)
    values = yaml.safe_load(text)[f'/**/{NODE_NAME}']['ros__parameters']
    assert values['made_up_mode'] == 'off' and values['occlusion_gap'] == 1e-05
    assert '    # Local scale correction: off or local | global.\n    made_up_mode: ' \
           "'off'\n" in text
    assert '    # A tiny gap <in units>. Range 0 .. 1.\n    occlusion_gap: 1.0e-05\n' in text
    table = param_docs.render_table(parameters)
    assert ("| `made_up_mode` | `'off'` | text | changeable | Local scale correction: off or "
            'local \\| global. |') in table
    assert '| A tiny gap &lt;in units>. |' in table


def test_check_names_the_command_and_writing_brings_the_files_up_to_date(
        tmp_path, monkeypatch, capsys):
    config, doc, readme = tmp_path / 'depth.yaml', tmp_path / 'NODE.md', tmp_path / 'README.md'
    config.write_text(param_docs.CONFIG.read_text().replace('seed: 0', 'seed: 7'))
    shutil.copy(param_docs.NODE_DOC, doc)
    shutil.copy(param_docs.README, readme)
    monkeypatch.setattr(param_docs, 'CONFIG', config)
    monkeypatch.setattr(param_docs, 'NODE_DOC', doc)
    monkeypatch.setattr(param_docs, 'README', readme)
    monkeypatch.setattr(param_docs, 'ROOT', tmp_path)
    doc_before = doc.read_text()
    assert param_docs.main(['--check']) == 1
    err = capsys.readouterr().err
    assert 'depth.yaml is out of date' in err and param_docs.COMMAND in err
    assert 'NODE.md' not in err and 'README' not in err
    assert 'seed: 7' in config.read_text()   # --check writes nothing
    assert param_docs.main([]) == 0
    assert capsys.readouterr().out == 'wrote depth.yaml\n'
    assert config.read_text() == param_docs.render_yaml() and doc.read_text() == doc_before
    assert param_docs.main(['--check']) == 0


def test_a_page_without_the_markers_is_a_clear_error(tmp_path, monkeypatch, capsys):
    doc = tmp_path / 'NODE.md'
    doc.write_text('# The node\n\n## Parameters\n\nno table\n')
    monkeypatch.setattr(param_docs, 'NODE_DOC', doc)
    assert param_docs.main(['--check']) == 2
    assert param_docs.TABLE_BEGIN in capsys.readouterr().err


def command_help(name: str) -> str:
    """`metricgold <name> --help` with its wrapping undone."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == 'command').choices[name]
    return ' '.join(sub.format_help().split())


@pytest.mark.parametrize('command,options', [
    ('infer', ('device', 'dtype', 'mode', 'seed', 'scale_source', 'ground_max_tilt_deg',
               'camera_height_m', 'wait_for_scale')),
    ('process', ('device', 'dtype', 'mode', 'seed', 'depth_resolution', 'camera_mount',
                 'scale_smoothing', 'wait_for_scale', 'ground_max_tilt_deg')),
    ('evaluate', ('device', 'dtype', 'mode', 'seed')),
    ('bench', ('device', 'dtype', 'mode', 'compile')),
])
def test_command_help_says_what_the_node_parameters_say(command, options):
    text = command_help(command)
    for name in options:
        shared = ' '.join(DESCRIPTIONS[name].split())
        assert shared in text, f'metricgold {command} --help lacks the text of {name}'
        assert shared in SPECS[name].description, name
    for name in ('steps', 'processing_resolution', 'fallback_hfov_deg'):   # a shared start
        assert SPECS[name].description.startswith(DESCRIPTIONS[name])
    if command in ('infer', 'process'):
        assert DESCRIPTIONS['steps'] in text and DESCRIPTIONS['processing_resolution'] in text
        assert DESCRIPTIONS['fallback_hfov_deg'].split()[0] in text
