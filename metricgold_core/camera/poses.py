"""Camera poses for the odometry scale source: quaternions, TUM trajectory files, mounting,
interpolation to an image's stamp. 4x4 float64 rigid transforms throughout (T_ab maps points
of frame b into frame a); quaternions are (qx, qy, qz, qw), as ROS and the TUM format write
them.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def quaternion_matrix(qx: float, qy: float, qz: float, qw: float) -> np.ndarray:
    """Rotation (3, 3) of a quaternion (normalised here; Hamilton convention, w last)."""
    q = np.array([qx, qy, qz, qw], np.float64)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f'quaternion {q.tolist()} has no direction.')
    x, y, z, w = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def matrix_quaternion(R: np.ndarray) -> np.ndarray:
    """(qx, qy, qz, qw) of a 3x3 rotation, qw >= 0."""
    m = np.asarray(R, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax([m[0, 0], m[1, 1], m[2, 2]]))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * math.sqrt(max(1.0 + m[i, i] - m[j, j] - m[k, k], 1e-12))
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.array(q)
    return q if q[3] >= 0 else -q


def pose_matrix(xyz, q) -> np.ndarray:
    """4x4 transform of a translation (x, y, z) and a quaternion (qx, qy, qz, qw)."""
    T = np.eye(4)
    T[:3, :3] = quaternion_matrix(*(float(v) for v in q))
    T[:3, 3] = np.asarray(xyz, dtype=np.float64)
    if not np.isfinite(T).all():
        raise ValueError(f'not a finite translation: {tuple(xyz)}')
    return T


def mount_matrix(values) -> np.ndarray:
    """4x4 mount from 7 numbers x y z qx qy qz qw (m, quaternion w last, normalised): the
    camera_mount and sparse_points_mount parameters, --camera-mount.

    ValueError saying what is wrong: not 7 numbers, a number that is not finite, a zero
    quaternion."""
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise ValueError(f'a mount is 7 numbers "x y z qx qy qz qw", got {values!r}') from exc
    if len(values) != 7:
        raise ValueError(f'a mount is 7 numbers "x y z qx qy qz qw", got {len(values)}')
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f'every number of a mount must be finite, got {values}')
    if math.sqrt(sum(v * v for v in values[3:])) < 1e-6:
        raise ValueError('the quaternion qx qy qz qw of a mount must not be zero (no rotation '
                         f'is 0 0 0 1), got {values[3:]}')
    return pose_matrix(values[:3], values[3:])


def parse_mount(text: str) -> np.ndarray | None:
    """mount_matrix of a parameter's text "x y z qx qy qz qw" (commas and tf2_echo's brackets
    allowed); '' gives None (the caller then asks TF)."""
    fields = str(text).replace(',', ' ').replace('[', ' ').replace(']', ' ').split()
    if not fields:
        return None
    try:
        return mount_matrix(fields)
    except ValueError as exc:
        raise ValueError(f'{exc} ({text!r})') from None


def slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    """Unit quaternion a of the way from q0 to q1 (shortest path)."""
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
    dot = float(q0 @ q1)
    if dot < 0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = math.acos(min(dot, 1.0))
    return (math.sin((1 - a) * theta) * q0 + math.sin(a * theta) * q1) / math.sin(theta)


def interpolate_pose(t0: float, T0: np.ndarray, t1: float, T1: np.ndarray, t: float
                     ) -> np.ndarray:
    """The pose at time t between (t0, T0) and (t1, T1): linear translation, slerp rotation."""
    a = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
    T = np.eye(4)
    T[:3, 3] = T0[:3, 3] + a * (T1[:3, 3] - T0[:3, 3])
    T[:3, :3] = quaternion_matrix(*slerp(matrix_quaternion(T0[:3, :3]),
                                         matrix_quaternion(T1[:3, :3]), a))
    return T


def read_tum(path, count: int | None = None) -> tuple:
    """(timestamps float64 (N,), poses float64 (N, 4, 4)) of a TUM trajectory file: one line
    `timestamp tx ty tz qx qy qz qw` per pose ('#' comments and blank lines skipped). With
    `count`, the file must hold exactly that many poses (one per image)."""
    path = Path(path)
    stamps, poses = [], []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        fields = line.replace(',', ' ').split()
        try:
            if len(fields) != 8:
                raise ValueError(f'{len(fields)} fields, expected 8')
            values = [float(f) for f in fields]
            poses.append(pose_matrix(values[1:4], values[4:]))
        except ValueError as exc:
            raise ValueError(f'{path}:{number}: not a TUM pose line `timestamp tx ty tz qx qy '
                             f'qz qw` ({exc})') from exc
        stamps.append(values[0])
    if count is not None and len(poses) != count:
        raise ValueError(f'{path}: {len(poses)} poses for {count} images (one line per image, '
                         'in order)')
    return np.array(stamps, dtype=np.float64), np.array(poses).reshape(-1, 4, 4)


def write_tum(path, stamps, poses) -> None:
    """A TUM trajectory file of (timestamps, 4x4 poses), written atomically."""
    from ..io_utils import save_text

    lines = []
    for t, T in zip(stamps, poses):
        q = matrix_quaternion(T[:3, :3])
        lines.append(' '.join(f'{v:.9g}' for v in (t, *T[:3, 3], *q)))
    save_text(path, '\n'.join(lines) + '\n')


def valid_pose(pose) -> bool:
    """A finite 4x4 rigid transform (rotation orthonormal to 1e-3)."""
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        return False
    R = pose[:3, :3]
    return bool(np.abs(R @ R.T - np.eye(3)).max() < 1e-3 and np.linalg.det(R) > 0)


class PoseBuffer:
    """Timed poses (odometry) to interpolate at an image's stamp; out-of-order, non-finite and
    non-rigid poses are refused (counted by the caller)."""

    def __init__(self, size: int = 400, max_gap_s: float = 0.5):
        self.size = size
        self.max_gap_ns = int(max_gap_s * 1e9)
        self.stamps = []
        self.poses = []

    def add(self, stamp_ns: int, pose: np.ndarray) -> str:
        """'' or why this pose was refused."""
        if not valid_pose(pose):
            return 'not a finite rigid pose'
        if self.stamps and stamp_ns <= self.stamps[-1]:
            if stamp_ns < self.stamps[-1] - 10 ** 9:   # a restart (bag loop): start again
                self.stamps, self.poses = [], []
            else:
                return 'stamp not after the previous one'
        self.stamps.append(int(stamp_ns))
        self.poses.append(np.asarray(pose, dtype=np.float64))
        if len(self.stamps) > self.size:
            del self.stamps[0], self.poses[0]
        return ''

    def at(self, stamp_ns: int) -> np.ndarray | None:
        """The pose interpolated at stamp_ns; None outside the buffer or across a gap."""
        import bisect

        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return self.poses[i]
        if i == 0 or i == len(self.stamps):
            return None
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        if t1 - t0 > self.max_gap_ns:
            return None
        return interpolate_pose(t0, self.poses[i - 1], t1, self.poses[i], stamp_ns)
