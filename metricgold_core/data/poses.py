"""Camera poses of recorded RGB-D sequences, as camera -> world 4x4 in the optical frame.

Formats read (found in the dataset root):
- `trajectory.log` (Open3D / Redwood): per frame a line "i j k" then 4 rows of the 4x4
  camera -> world matrix; the camera frame is already optical (x right, y down, z forward).
- `pose.txt` (TUM-like, as the ICL-NUIM and Kinect samples ship it): per frame one line
  "tx ty tz qx qy qz qw", camera -> world translation and unit quaternion.

ICL-NUIM's camera has its y axis up (its calibration has fy < 0): its poses map (x right, y up,
z forward) camera points. `y_up_camera=True` turns them into optical-frame poses, mirroring the
world's y as well so that the rotations stay proper (a mirror keeps every distance).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..camera.poses import pose_matrix

POSE_FILES = ('trajectory.log', 'pose.txt')


def read_pose_txt(path) -> np.ndarray:
    """`tx ty tz qx qy qz qw` lines (blank and # lines skipped) -> poses (N, 4, 4)."""
    poses = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        cols = line.split()
        if not cols or cols[0].startswith('#'):
            continue
        if len(cols) != 7:
            raise ValueError(f'{path}:{number}: expected "tx ty tz qx qy qz qw", got {line!r}')
        v = [float(c) for c in cols]
        poses.append(pose_matrix(v[:3], v[3:]))
    return np.asarray(poses).reshape(-1, 4, 4)


def read_trajectory_log(path) -> np.ndarray:
    """Open3D .log trajectory -> poses (N, 4, 4), camera -> world."""
    rows = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if len(rows) % 5:
        raise ValueError(f'{path}: {len(rows)} lines; a .log trajectory has 5 per frame.')
    poses = []
    for k in range(0, len(rows), 5):
        matrix = np.array([[float(c) for c in row] for row in rows[k + 1:k + 5]])
        if matrix.shape != (4, 4):
            raise ValueError(f'{path}: frame {k // 5} is not a 4x4 matrix.')
        poses.append(matrix)
    return np.asarray(poses).reshape(-1, 4, 4)


def read_sequence_poses(root, y_up_camera: bool = False) -> np.ndarray:
    """Poses (N, 4, 4) camera -> world, optical frame, from the pose file in `root`."""
    root = Path(root)
    for name in POSE_FILES:
        path = root / name
        if path.is_file():
            poses = read_trajectory_log(path) if name.endswith('.log') else read_pose_txt(path)
            break
    else:
        raise FileNotFoundError(f'{root}: no camera poses ({" or ".join(POSE_FILES)}); a '
                                f'sequence evaluation needs one pose per frame.')
    if y_up_camera:
        flip = np.diag([1.0, -1.0, 1.0, 1.0])
        poses = flip @ poses @ flip
    return poses


class PosedFrames:
    """A recorded dataset read as one posed sequence: its samples gain `pose` (4, 4),
    `sequence` (the dataset's name) and `kind` ('indoor': the RGB-D recordings are rooms).

    The i-th pose belongs to the i-th frame in the reader's (natural) order; a count mismatch
    is an error. The reader's evaluation caps and mask pass through.
    """

    def __init__(self, dataset, sequence_name: str, kind: str = 'indoor'):
        self.dataset = dataset
        self.poses = read_sequence_poses(dataset.root,
                                         y_up_camera=getattr(dataset, 'y_up_camera', False))
        if len(self.poses) != len(dataset):
            raise ValueError(f'{dataset.root}: {len(self.poses)} poses for {len(dataset)} '
                             f'frames; a sequence needs one pose per frame.')
        self.sequence_name, self.kind = sequence_name, kind
        self.eval_min_depth_m = dataset.eval_min_depth_m
        self.eval_max_depth_m = dataset.eval_max_depth_m
        self.eval_mask = dataset.eval_mask

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return dict(self.dataset[i], pose=self.poses[i], sequence=self.sequence_name,
                    kind=self.kind)
