"""config/depth.yaml and the parameter tables of docs/NODE.md and README.md, generated from
params.PARAMETERS.

    python -m metricgold_ros.param_docs            # rewrite both from the table
    python -m metricgold_ros.param_docs --check    # exit 1 naming what is out of date

A parameter is described once, in params.py: adding one there and running this command is the
whole change (test/test_param_docs.py fails until the files are regenerated).
"""
from __future__ import annotations

import argparse
from pathlib import Path
import sys
import textwrap

import yaml

from metricgold_core.io_utils import save_text
from .depth_node import NODE_NAME
from .params import CHOICES, full_description, PARAMETERS, SECTIONS, Spec

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / 'config' / 'depth.yaml'
NODE_DOC = ROOT / 'docs' / 'NODE.md'
README = ROOT / 'README.md'
COMMAND = 'python -m metricgold_ros.param_docs'
TABLE_BEGIN = (f'<!-- parameter table: generated from metricgold_ros/params.py by `{COMMAND}`;'
               ' edit it there -->')
TABLE_END = '<!-- end of the generated parameter table -->'
# README.md's short table: the parameters people change most (their rows come from PARAMETERS).
README_PARAMETERS = ('checkpoint', 'device', 'mode', 'max_latency_ms', 'steps',
                     'processing_resolution', 'rectify', 'input_transport', 'scale_source',
                     'points_max_depth_m')
README_BEGIN = TABLE_BEGIN.replace('parameter table', 'table of the most used parameters')
README_END = TABLE_END.replace('parameter table', 'table of the most used parameters')
WIDTH = 99   # the project's line length (setup.cfg)

YAML_HEADER = (
    f'Parameters of the MetricGold depth node (executable `depth_node`, node name `{NODE_NAME}`): '
    'every parameter the node declares, with its default and description. Generated from '
    f'metricgold_ros/params.py by `{COMMAND}`: change a description or default there, not '
    f'here. `ros2 param describe /{NODE_NAME} <name>` shows the same text. Read-only parameters '
    'need a restart; the others can be changed at run time with `ros2 param set`. A params file '
    'of your own may list only the parameters it changes.')


def yaml_scalar(value) -> str:
    """`value` written as a YAML scalar that reads back as the same Python type and value
    (PyYAML and ROS 2's params-file parser alike: 'off' quoted, floats with a point)."""
    if isinstance(value, bool):
        text = 'true' if value else 'false'
    elif isinstance(value, (int, float)):
        text = repr(value)
        mantissa, e, exponent = text.partition('e')
        if isinstance(value, float) and e and '.' not in mantissa:
            text = f'{mantissa}.0e{exponent}'   # YAML 1.1 floats need the point: 1.0e-05
    elif isinstance(value, str):
        text = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6)
        text = text.rstrip('\n').removesuffix('\n...').rstrip('\n')
    else:
        raise ValueError(f'a parameter default must be bool, int, float or str, got {value!r}')
    back = yaml.safe_load(text)
    if type(back) is not type(value) or back != value:
        raise ValueError(f'{value!r} does not survive YAML as {text!r}')
    return text


def value_range(spec: Spec) -> str:
    """What values the parameter takes, in words: its choices, range or type."""
    choices = CHOICES.get(spec.name)
    if choices:
        return ', '.join(choices)
    if spec.range is not None:
        return f'{spec.range[0]:g} .. {spec.range[1]:g}'
    return {bool: 'true, false', str: 'text'}.get(type(spec.default), type(spec.default).__name__)


def comment(spec: Spec) -> str:
    """The comment above a parameter in the YAML: description, range, read-only."""
    text = full_description(spec)
    if spec.range is not None:
        text += f' Range {value_range(spec)}.'
    return text + (' Read-only.' if spec.read_only else '')


def render_yaml(parameters=PARAMETERS) -> str:
    """config/depth.yaml: each parameter with its description as a comment and its default."""
    lines = textwrap.wrap(YAML_HEADER, WIDTH, initial_indent='# ', subsequent_indent='# ',
                          break_on_hyphens=False)
    lines += [f'/**/{NODE_NAME}:', '  ros__parameters:']
    indent = ' ' * 4
    for spec in parameters:
        if spec.name in SECTIONS:
            if lines[-1] != '  ros__parameters:':
                lines.append('')
            title = f'{indent}# ---- {SECTIONS[spec.name]} '
            lines.append(title + '-' * (WIDTH - len(title)))
        lines.append('')
        lines += textwrap.wrap(comment(spec), WIDTH, initial_indent=indent + '# ',
                               subsequent_indent=indent + '# ', break_on_hyphens=False)
        lines.append(f'{indent}{spec.name}: {yaml_scalar(spec.default)}')
    return '\n'.join(lines) + '\n'


def _cell(text: str) -> str:
    """Markdown table cell: pipes escaped, `<...>` kept as text (GitHub drops unknown tags)."""
    return text.replace('|', '\\|').replace('<', '&lt;')


def render_table(parameters=PARAMETERS) -> str:
    """docs/NODE.md's parameter table, markers included."""
    lines = [TABLE_BEGIN, '', '| parameter | default | values | at run time | description |',
             '|---|---|---|---|---|']
    for spec in parameters:
        if spec.name in SECTIONS:
            lines.append(f'| **{SECTIONS[spec.name]}** | | | | |')
        lines.append(f'| `{spec.name}` | `{yaml_scalar(spec.default)}` | '
                     f'{_cell(value_range(spec))} | '
                     f'{"read-only" if spec.read_only else "changeable"} | '
                     f'{_cell(spec.description)} |')
    return '\n'.join(lines + ['', TABLE_END])


def render_readme_table(names=README_PARAMETERS, parameters=PARAMETERS) -> str:
    """README.md's table of the parameters `names`, markers included."""
    specs = {spec.name: spec for spec in parameters}
    lines = [README_BEGIN, '', '| parameter | default | description |', '|---|---|---|']
    for name in names:
        spec = specs[name]
        read_only = ' (read-only)' if spec.read_only else ''
        lines.append(f'| `{name}` | `{yaml_scalar(spec.default)}` | '
                     f'{_cell(full_description(spec))}{read_only} |')
    return '\n'.join(lines + ['', README_END])


def with_table(path: Path, table: str, begin_marker: str = TABLE_BEGIN,
               end_marker: str = TABLE_END) -> str:
    """The text of `path` with the part between the markers (included) replaced by `table`."""
    page = path.read_text(encoding='utf-8')
    begin, end = page.find(begin_marker), page.find(end_marker)
    if begin < 0 or end < begin:
        raise ValueError(f'{path.name} has no generated-table markers: put the lines\n'
                         f'{begin_marker}\n{end_marker}\nwhere the table belongs.')
    return page[:begin] + table + page[end + len(end_marker):]


def expected_files() -> dict:
    """{path: the text it should have} for every generated file."""
    return {CONFIG: render_yaml(),
            NODE_DOC: with_table(NODE_DOC, render_table()),
            README: with_table(README, render_readme_table(), README_BEGIN, README_END)}


def stale_files() -> list:
    """The generated files whose text differs from what PARAMETERS gives."""
    return [path for path, text in expected_files().items()
            if not path.exists() or path.read_text(encoding='utf-8') != text]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split('\n', 1)[0])
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 if a generated file is out of date')
    args = parser.parse_args(argv)
    try:
        expected = expected_files()
    except ValueError as exc:
        print(f'{COMMAND}: error: {exc}', file=sys.stderr)
        return 2
    stale = [path for path, text in expected.items()
             if not path.exists() or path.read_text(encoding='utf-8') != text]
    for path in stale:
        name = path.relative_to(ROOT)
        if args.check:
            print(f'{name} is out of date with metricgold_ros/params.py: run `{COMMAND}`',
                  file=sys.stderr)
        else:
            save_text(path, expected[path])
            print(f'wrote {name}')
    return 1 if args.check and stale else 0


if __name__ == '__main__':
    sys.exit(main())
