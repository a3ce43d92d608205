"""Launch file, parameter YAML and start-up checks (the `launch` package is not installed here).

What can be checked without `launch`: the launch file names an executable, package, node name
and config file that exist; the real node accepts config/depth.yaml (its content is checked in
test_param_docs.py); invalid values stop the node at start with a message.
"""
import ast
import configparser
from pathlib import Path
import re
import subprocess
import sys

import pytest
import yaml

from metricgold_ros.depth_node import NODE_NAME
from node_harness import node_command, pick_domain_id, ros_env, write_params

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ROOT / 'launch' / 'depth.launch.py'
CONFIG = ROOT / 'config' / 'depth.yaml'


def launch_calls():
    """{callee name: [keyword dicts]} of the literal calls in the launch file."""
    tree = ast.parse(LAUNCH.read_text())
    calls = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            kwargs = {kw.arg: kw.value for kw in node.keywords if kw.arg}
            args = [a.value for a in node.args if isinstance(a, ast.Constant)]
            calls.setdefault(node.func.id, []).append((args, kwargs))
    return calls


def test_launch_file_declares_the_documented_arguments():
    declared = {args[0] for args, _ in launch_calls()['DeclareLaunchArgument']}
    assert declared == {'image', 'camera_info', 'sparse_depth', 'sparse_points', 'odom',
                        'params_file', 'namespace'}


def test_launch_file_names_an_installed_executable_package_and_node():
    (_, node), = launch_calls()['Node']
    source = LAUNCH.read_text()
    assert node['package'].id == 'PACKAGE'
    assert re.search(r"^PACKAGE = 'metricgold_ros'$", source, re.M)
    assert '<name>metricgold_ros</name>' in (ROOT / 'package.xml').read_text()
    assert ast.literal_eval(node['executable']) == 'depth_node'
    assert ast.literal_eval(node['name']) == NODE_NAME
    setup = (ROOT / 'setup.py').read_text()
    assert "'depth_node = metricgold_ros.depth_node:main'" in setup
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / 'setup.cfg')
    # `ros2 run/launch` look for executables in lib/<package>.
    assert cfg['install']['install_scripts'] == '$base/lib/metricgold_ros'
    assert cfg['develop']['script_dir'] == '$base/lib/metricgold_ros'
    # The default params file is installed to share/<package>/config, where it is looked up.
    assert "'config', 'depth.yaml'" in source and 'get_package_share_directory(PACKAGE)' in source
    assert "(os.path.join('share', PACKAGE, 'config'), glob('config/*'))" in setup
    assert "glob('launch/*.launch.py')" in setup


def test_rviz_config_shows_the_depth_image_and_the_cloud():
    rviz = yaml.safe_load((ROOT / 'config' / 'depth.rviz').read_text())
    displays = {d['Class']: d for d in rviz['Visualization Manager']['Displays']}
    assert displays['rviz_default_plugins/PointCloud2']['Topic']['Value'] == '/points'
    assert displays['rviz_default_plugins/PointCloud2']['Color Transformer'] == 'RGB8'
    topics = [d['Topic']['Value'] for d in rviz['Visualization Manager']['Displays']
              if d['Class'] == 'rviz_default_plugins/Image']
    assert '/depth/colored' in topics


def run_node(tmp_path, params: dict, files=(), timeout_s=60):
    params_file = write_params(tmp_path / 'override.yaml', params)
    cmd = node_command(params_file)
    for extra in files:   # earlier files first, so the override wins
        i = cmd.index('--params-file')
        cmd[i:i] = ['--params-file', str(extra)]
    return subprocess.run(cmd, env=ros_env(pick_domain_id()), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout_s)


@pytest.mark.slow
def test_the_shipped_yaml_is_accepted_by_the_real_node(tmp_path):
    # A missing checkpoint stops the node after every parameter was parsed and declared: the
    # error must be about the model, not about a value from depth.yaml.
    missing = tmp_path / 'no_such_checkpoint'
    result = run_node(tmp_path, {'checkpoint': str(missing)}, files=[CONFIG])
    assert result.returncode == 2, result.stderr
    assert 'cannot load the model' in result.stderr and str(missing) in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.slow
def test_fast_mode_without_a_light_decoder_stops_the_node(tmp_path, tiny_checkpoint):
    result = run_node(tmp_path, {'checkpoint': str(tiny_checkpoint), 'mode': 'fast'})
    assert result.returncode == 2, result.stderr
    assert 'cannot load the model' in result.stderr and 'light decoder' in result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('params,needle', [
    ({'max_latency_ms': -5.0}, 'max_latency_ms'),
    ({'steps': 'three'}, '`steps`'),
    ({'input_transport': 'udp'}, '`input_transport`'),
    ({'mode': 'turbo'}, '`mode`'),
    ({'points_decimation': 'many'}, 'points_decimation'),
    ({'colored_min_m': 5.0, 'colored_max_m': 1.0}, '`colored_min_m`'),
])
def test_invalid_yaml_values_stop_the_node_at_start_with_a_clear_message(tmp_path, params,
                                                                         needle):
    result = run_node(tmp_path, params)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert 'cannot start' in result.stderr and needle in result.stderr, result.stderr
    assert 'Traceback' not in result.stderr


@pytest.mark.slow
def test_node_module_does_not_import_torch_before_parameters_are_valid():
    code = ('import sys; import metricgold_ros.depth_node; '
            'print("torch" in sys.modules, "diffusers" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.split()
    assert out == ['False', 'False']


DEMO_LAUNCH = ROOT / 'launch' / 'demo.launch.py'


def console_scripts() -> dict:
    """{executable: 'module:function'} from setup.py's console_scripts."""
    setup = (ROOT / 'setup.py').read_text()
    return dict(re.findall(r"'(\w+) = ([\w.]+:\w+)'", setup))


def test_every_console_script_points_at_a_function_that_exists():
    import importlib
    scripts = console_scripts()
    assert {'depth_node', 'metricgold', 'metricgold_demo', 'camera_replay',
            'demo_recorder'} <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(':')
        assert callable(getattr(importlib.import_module(module), function)), name


def test_demo_launch_file_starts_the_runners_processes_with_valid_arguments():
    import metricgold_demo
    from metricgold_demo import camera_replay, recorder

    source = DEMO_LAUNCH.read_text()
    tree = ast.parse(source)
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}
    assert consts['PACKAGE'] == 'metricgold_ros'
    assert consts['CAMERA_NAMESPACE'] == metricgold_demo.CAMERA_NAMESPACE
    assert consts['NODE_NAMESPACE'] == metricgold_demo.NODE_NAMESPACE
    executables = {ast.literal_eval(kw.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'Node'
                   for kw in node.keywords if kw.arg == 'executable'}
    assert executables == {'depth_node', 'camera_replay', 'demo_recorder'}
    assert executables <= set(console_scripts())
    declared = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'DeclareLaunchArgument':
            default = [kw.value for kw in node.keywords if kw.arg == 'default_value'][0]
            declared[node.args[0].value] = (default.value if isinstance(default, ast.Constant)
                                            else None)
    assert set(declared) == {'out', 'count', 'rate', 'images', 'params_file'}
    # The argument lists, with the launch defaults substituted, parse with the scripts' own
    # parsers (what launch_ros hands them, before its --ros-args).
    camera = camera_replay.parse_args(['--out', declared['out'], '--count', declared['count'],
                                       '--rate', declared['rate']])
    assert (camera.count, camera.rate) == (24, 2.0)
    rec = recorder.parse_args(['--out', declared['out'], '--count', declared['count'],
                               '--camera-topic', consts['CAMERA_NAMESPACE'] + '/image',
                               '--report'])
    assert rec.report and rec.camera_topic == '/demo_camera/image'
    assert "'--report'" in source and 'OnProcessExit(target_action=recorder' in source
