"""The core's layout: which part may import which (the table below, also written in each
package's docstring), no import cycle, no module over 450 lines, no ROS in the core."""
from __future__ import annotations

import ast
from pathlib import Path

import metricgold_core

CORE = Path(metricgold_core.__file__).parent
MAX_LINES = 450

# The parts of metricgold_core (a sub-package, or a top-level module) and the parts each may
# import. A part always may import its own modules.
MAY_IMPORT = {
    'io_utils': set(),
    'visualize': set(),
    'camera': {'io_utils'},
    'model': {'io_utils'},
    # triangulation's tracking benchmark renders its frames with data.trajectory
    'scale': {'camera', 'data'},
    'data': {'camera', 'io_utils'},
    'ros_format': {'camera', 'scale', 'io_utils'},
    'evaluation': {'camera', 'visualize'},
    'metric_depth': {'model', 'camera', 'scale'},
    'offline': {'ros_format', 'camera', 'data', 'io_utils'},
    'training': {'model', 'data', 'evaluation', 'metric_depth', 'visualize', 'io_utils'},
    'commands': {'model', 'camera', 'scale', 'ros_format', 'data', 'evaluation', 'metric_depth',
                 'offline', 'training', 'visualize', 'io_utils'},
    'cli': {'commands'},
    '__init__': {'model'},   # the lazy names of the package (LogDepthCodec, ...)
}
ROS_PREFIXES = ('rclpy', 'metricgold_ros', 'sensor_msgs', 'std_msgs', 'geometry_msgs',
                'nav_msgs', 'diagnostic_msgs', 'builtin_interfaces', 'tf2_ros', 'rosidl',
                'rcl_interfaces', 'message_filters', 'cv_bridge')


def module_name(path: Path) -> str:
    parts = ('metricgold_core',) + path.relative_to(CORE).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def core_modules() -> dict:
    """name -> (path, {'core': the metricgold_core modules it imports, 'external': the rest})
    for every module of the core, imports inside functions included."""
    names = {module_name(p): p for p in CORE.rglob('*.py')}
    out = {}
    for name, path in names.items():
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
        found = {'core': set(), 'external': set()}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split('.')[:len(package.split('.')) - node.level + 1]
                    module = '.'.join(base + ([node.module] if node.module else []))
                else:
                    module = node.module
                # `from . import x` names a module when x is one
                targets = [f'{module}.{a.name}' if f'{module}.{a.name}' in names else module
                           for a in node.names]
            for target in targets:
                if target.startswith('metricgold_core'):
                    found['core'].add(target)
                else:
                    found['external'].add(target)
        out[name] = (path, found)
    return out


def part(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


def find_cycle(graph: dict) -> list | None:
    """One cycle of a directed graph {node: set of nodes}, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = 'done'
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b', 'c'}, 'b': {'c'}, 'c': set()}) is None


def test_each_part_imports_only_the_parts_its_docstring_allows():
    modules = core_modules()
    assert {part(m) for m in modules} == set(MAY_IMPORT), 'a new part: add it to MAY_IMPORT'
    wrong = sorted(f'{m} imports {t}' for m, (_, found) in modules.items()
                   for t in found['core']
                   if part(t) != part(m) and part(t) not in MAY_IMPORT[part(m)])
    assert wrong == []


def test_no_import_cycle_between_parts_or_modules():
    modules = core_modules()
    parts = {}
    for m, (_, found) in modules.items():   # every import, inside functions included
        parts.setdefault(part(m), set()).update(t for t in map(part, found['core'])
                                                if t != part(m))
    assert find_cycle(parts) is None
    graph = {m: {t for t in found['core'] if t in modules and t != m}
             for m, (_, found) in modules.items()}
    assert find_cycle(graph) is None


def test_no_module_of_the_core_is_over_450_lines():
    long = {m: n for m, (path, _) in core_modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_core_never_imports_ros():
    ros = sorted(f'{m} imports {t}' for m, (_, found) in core_modules().items()
                 for t in found['external'] if t.split('.')[0] in ROS_PREFIXES)
    assert ros == []


def test_every_package_says_what_it_holds_and_what_it_may_import():
    for init in CORE.rglob('__init__.py'):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ''
        if init.parent == CORE:
            assert 'test_layout' in doc, init
        else:
            assert 'May import' in doc or 'may import' in doc, init
