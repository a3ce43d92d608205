"""The node's Fast DDS profile: a shared-memory segment that holds a frame's outputs.

Fast DDS reaches subscribers on the same host through shared memory, in a segment of 512 KB
per participant by default. One frame's outputs are 7 MB at 640x480 (the 4.9 MB cloud alone):
they do not fit, fragments are lost, and a reliable subscriber gets them only when the writer's
next heartbeat has them sent again. Measured with `scripts/bench_node.py flood` (every output
subscribed against depth only): p95 latency +148 to +191 ms, a few frames 2.9 s late over UDP
alone, and a best-effort subscriber got next to none of them; with a 16 MB segment in the node:
p95 +3 to -9 ms and every message (docs/PERFORMANCE.md).

`apply(environ)`, called before rclpy.init, points Fast DDS at the packaged profile
(fastdds_profile.xml: the usual shared-memory and UDPv4 transports, a 16 MB segment) unless the
user has made a choice of their own: another RMW, a profile file (by variable or the default
file name in the working directory), FASTDDS_BUILTIN_TRANSPORTS, or METRICGOLD_FASTDDS_PROFILE=off.
"""
from __future__ import annotations

import os
from pathlib import Path
import sys

PROFILE = Path(__file__).resolve().with_name('fastdds_profile.xml')
PROFILE_VARIABLES = ('FASTDDS_DEFAULT_PROFILES_FILE',    # Fast DDS 3 (libfastdds)
                     'FASTRTPS_DEFAULT_PROFILES_FILE')   # Fast DDS 2 (libfastrtps: Humble, Jazzy)
DEFAULT_PROFILE_FILES = ('DEFAULT_FASTDDS_PROFILES.xml', 'DEFAULT_FASTRTPS_PROFILES.xml')
FAST_DDS_RMWS = ('rmw_fastrtps_cpp', 'rmw_fastrtps_dynamic_cpp')
OPT_OUT = 'METRICGOLD_FASTDDS_PROFILE'


def fast_dds_major(environ, library_dirs: list | None = None) -> int | None:
    """3 or 2: the Fast DDS the loader finds first (LD_LIBRARY_PATH, the ament prefixes, then
    this Python's prefix, where the ros-* wheels put theirs); None when none is found."""
    if library_dirs is None:
        library_dirs = [p for p in environ.get('LD_LIBRARY_PATH', '').split(os.pathsep) if p]
        library_dirs += [os.path.join(p, 'lib')
                         for p in environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
        library_dirs.append(os.path.join(sys.prefix, 'lib'))
    for directory in map(Path, library_dirs):
        if any(directory.glob('libfastdds.so*')):
            return 3
        if any(directory.glob('libfastrtps.so*')):
            return 2
    return None


def apply(environ=None, cwd: Path | None = None, library_dirs: list | None = None) -> str:
    """Set the profile variable of the installed Fast DDS (both where it is not found: each
    version reads its own, Fast DDS 3 warns about the old one) in `environ` (default:
    os.environ) where the user chose nothing; returns what was done, a line for the node's log.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else cwd
    if environ.get(OPT_OUT, '').strip().lower() in ('off', '0', 'false', 'no'):
        return f'not used ({OPT_OUT}={environ[OPT_OUT]})'
    rmw = environ.get('RMW_IMPLEMENTATION', '')
    if rmw and rmw not in FAST_DDS_RMWS:
        return f'not used (RMW_IMPLEMENTATION={rmw})'
    for name in PROFILE_VARIABLES + ('FASTDDS_BUILTIN_TRANSPORTS',):
        if environ.get(name):
            return f'not used ({name} is set)'
    for name in DEFAULT_PROFILE_FILES:
        if (cwd / name).is_file():
            return f'not used (./{name} is there)'
    if not PROFILE.is_file():
        return f'not used ({PROFILE} is missing)'
    major = fast_dds_major(environ, library_dirs)
    names = {3: PROFILE_VARIABLES[:1], 2: PROFILE_VARIABLES[1:]}.get(major, PROFILE_VARIABLES)
    for name in names:
        environ[name] = str(PROFILE)
    return f'{PROFILE} (16 MB shared-memory segment; {", ".join(names)})'
