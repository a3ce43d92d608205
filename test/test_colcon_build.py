"""The package as a ROS 2 user builds and runs it: `colcon build` in a workspace, the install
space where `ros2 run` / `ros2 launch` look, and the installed node answering a frame with the
install space sourced.

colcon runs under this interpreter so the executables it installs start it (their shebang),
the one with torch and the ROS wheels. Skipped when colcon with colcon-ros is not installed
(Debian: apt-get install colcon python3-colcon-ros; scripts/setup_env.sh does it as root).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pytest

from node_harness import answering, Client, load_sequence, NodeProcess, pick_domain_id, Rig
from node_harness import ros_env, write_params

pytestmark = [pytest.mark.slow, pytest.mark.ros]

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'metricgold_ros'
# What `ros2 run metricgold_ros <name>` starts (setup.py console_scripts; the launch files').
EXECUTABLES = ('depth_node', 'camera_replay', 'demo_recorder', 'metricgold', 'metricgold_demo')
NOT_SOURCES = shutil.ignore_patterns('.git', '.venv', 'build', 'install', 'log', '__pycache__',
                                     '*.egg-info', 'demo_output', '.pytest_cache')
# colcon with the folder that holds it in front of sys.path: Debian's colcon 0.12 needs its
# own empy 3, and the ROS wheels bring empy 4 under the same module name `em`.
COLCON = ('import sys\nsite = sys.argv.pop(1)\nif site:\n    sys.path.insert(0, site)\n'
          'from colcon_core.command import main\nsys.exit(main())')


def colcon_site() -> str | None:
    """'' when this interpreter imports colcon and colcon-ros itself; else the folder where the
    installed `colcon` command's interpreter finds them; None when there is no such colcon."""
    if importlib.util.find_spec('colcon_core') and importlib.util.find_spec('colcon_ros'):
        return ''
    colcon = shutil.which('colcon')
    if not colcon:
        return None
    with open(colcon, 'rb') as f:
        first = f.readline().decode(errors='replace')
    if not first.startswith('#!'):
        return None
    result = subprocess.run(
        [*first[2:].split(), '-c', 'import os, colcon_core, colcon_ros; '
         'print(os.path.dirname(os.path.dirname(colcon_core.__file__)))'],
        capture_output=True, text=True, timeout=60)
    return result.stdout.strip() if result.returncode == 0 else None


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """A workspace with this package in src/, built by `colcon build`: its folder."""
    site = colcon_site()
    if site is None:
        pytest.skip('colcon with colcon-ros is not installed (Debian: apt-get install colcon '
                    'python3-colcon-ros; scripts/setup_env.sh installs them as root)')
    ws = tmp_path_factory.mktemp('colcon_ws')
    shutil.copytree(ROOT, ws / 'src' / PACKAGE, ignore=NOT_SOURCES)
    env = dict(os.environ, COLCON_HOME=str(ws / '.colcon'), PYTHONDONTWRITEBYTECODE='1')
    result = subprocess.run([sys.executable, '-c', COLCON, site, 'build', '--base-paths', 'src'],
                            cwd=ws, env=env, capture_output=True, text=True, timeout=900)
    (ws / 'colcon_build.log').write_text(result.stdout + result.stderr)
    print('colcon build, last lines:\n' + '\n'.join(result.stdout.splitlines()[-4:]))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    assert f'Finished <<< {PACKAGE}' in result.stdout
    return ws


def sourced_env(ws: Path, base: dict) -> dict:
    """`base` after sourcing the workspace's install/local_setup.sh, as a user's shell is."""
    base = dict(base)
    # Nothing of the source tree: every module must come from the install space.
    base['PYTHONPATH'] = os.pathsep.join(
        p for p in base.get('PYTHONPATH', '').split(os.pathsep)
        if p and Path(p).resolve() != ROOT)
    result = subprocess.run(['sh', '-c', '. "$0/install/local_setup.sh" && env -0', str(ws)],
                            env=base, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr.decode(errors='replace')
    return dict(item.split('=', 1) for item in result.stdout.decode().split('\0') if '=' in item)


def test_install_space_has_the_executables_launch_files_config_and_index(workspace):
    prefix = workspace / 'install' / PACKAGE
    for name in EXECUTABLES:
        exe = prefix / 'lib' / PACKAGE / name
        assert exe.is_file() and os.access(exe, os.X_OK), exe
        # started by the interpreter that built them (torch and rclpy are there)
        assert exe.read_text().splitlines()[0] == '#!' + sys.executable
    share = prefix / 'share' / PACKAGE
    assert (share / 'package.xml').read_bytes() == (ROOT / 'package.xml').read_bytes()
    for launch in (ROOT / 'launch').glob('*.launch.py'):
        assert (share / 'launch' / launch.name).read_bytes() == launch.read_bytes()
    for config in (ROOT / 'config').iterdir():
        assert (share / 'config' / config.name).read_bytes() == config.read_bytes()
    assert (prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / PACKAGE).is_file()

    env = sourced_env(workspace, os.environ)
    assert str(prefix) in env['AMENT_PREFIX_PATH'].split(os.pathsep)
    found = subprocess.run(
        [sys.executable, '-c', 'import metricgold_core, metricgold_ros, os\n'
         'from ament_index_python.packages import get_package_prefix as prefix\n'
         'from ament_index_python.packages import get_package_share_directory as share\n'
         f'print(prefix("{PACKAGE}")); print(share("{PACKAGE}"))\n'
         'print(os.path.dirname(metricgold_ros.__file__))\n'
         'print(os.path.dirname(metricgold_core.__file__))'],
        env=env, cwd=workspace, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    package_prefix, package_share, ros_dir, core_dir = found.stdout.split()
    # what `ros2 run` (prefix/lib/<package>) and `ros2 launch` (the share folder) look up
    assert Path(package_prefix) == prefix and Path(package_share) == share
    assert Path(ros_dir).is_relative_to(prefix) and Path(core_dir).is_relative_to(prefix)
    # the packaged default model and the Fast DDS profile are package data
    assert (Path(core_dir) / 'default_model' / 'metricgold.json').is_file()
    assert (Path(ros_dir) / 'fastdds_profile.xml').is_file()


def test_the_installed_node_answers_a_frame(workspace, sample_frames, tmp_path):
    domain = pick_domain_id()
    env = sourced_env(workspace, ros_env(domain))
    params = write_params(tmp_path / 'params.yaml', {
        'checkpoint': '', 'steps': 1, 'processing_resolution': 64,
        'min_processing_resolution': 64, 'max_latency_ms': 60000.0,
        'max_frame_age_ms': 60000.0, 'camera_info_wait_ms': 1000.0, 'torch_threads': 1,
        'publish_points': False})
    exe = workspace / 'install' / PACKAGE / 'lib' / PACKAGE / 'depth_node'
    node = NodeProcess(params, env, tmp_path / 'node.log', program=(str(exe),),
                       interpreter=None, cwd=workspace)
    client = Client(domain, camera_reliable=True)
    rgbs, intr = load_sequence(sample_frames, 1)
    rig = Rig(node, client, rgbs, intr)
    with answering(node, client, lambda: rig.roundtrip(timeout_s=1.0), 120.0):
        out = rig.roundtrip(outputs=('depth', 'depth/camera_info'), timeout_s=60.0)
        assert out, node.log()
        depth, info = out['depth'], out['depth/camera_info']
        assert depth.header.stamp == out['header'].stamp and depth.encoding == '32FC1'
        metres = np.frombuffer(bytes(depth.data), np.float32)
        assert metres.size == depth.height * depth.width
        assert np.isfinite(metres).mean() > 0.9 and np.nanmin(metres) > 0.0
        assert (info.width, info.height) == (depth.width, depth.height)
