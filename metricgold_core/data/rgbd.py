"""Readers for RGB-D camera recordings: TUM RGB-D, ICL-NUIM, Redwood, Kinect, and any folder
described by a small YAML file.

They share one layout: `rgb/` and `depth/` folders paired by file stem (TUM's timestamped files
are paired through its association or rgb.txt / depth.txt lists), 16-bit PNG or PGM depth with a
fixed number of units per metre, 0 = no measurement, and an optional `intrinsics.json` (fx, fy,
cx, cy[, depth_scale]) in the root that overrides the dataset's published calibration.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import (DepthDataset, K_from_values, load_npy, pair_by_stem, read_depth_png,
                   read_intrinsics_json, scaled_depth)


class PairedFolderDataset(DepthDataset):
    """rgb/<stem>.<ext> + depth/<stem>.png pairs; depth = raw / units_per_metre, 0 invalid."""

    units_per_metre = 1000.0
    default_intrinsics = None  # dict fx, fy, cx, cy: the dataset's published calibration
    rgb_exts = ('.png', '.jpg', '.jpeg')
    depth_exts = ('.png', '.pgm')
    layout = 'rgb/ and depth/ folders with files of the same name'

    def __init__(self, root, split=None):
        super().__init__(root, split)
        calib = self.root / 'intrinsics.json'
        values = read_intrinsics_json(calib) if calib.is_file() else self.default_intrinsics
        if values is None:
            raise FileNotFoundError(f'{self.name}: {calib} is missing and this dataset has no '
                                    f'published calibration; write fx, fy, cx, cy there.')
        self.K = K_from_values(values)
        self.units = float(values.get('depth_scale', self.units_per_metre))

    def discover(self) -> list:
        rgb_dir, depth_dir = self.root / 'rgb', self.root / 'depth'
        for folder in (rgb_dir, depth_dir):
            if not folder.is_dir():
                raise FileNotFoundError(
                    f'{self.name}: {folder} is missing; expected {self.layout}.')
        records = pair_by_stem(rgb_dir, depth_dir, self.rgb_exts, self.depth_exts)
        for record in records:
            record['name'] = self.record_name(record)
        return records

    def read_depth(self, record: dict) -> np.ndarray:
        return scaled_depth(read_depth_png(record['depth']), self.units)

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        return self.K


class TUMDataset(PairedFolderDataset):
    """TUM RGB-D: PNG depth / 5000 = metres; freiburg1 calibration unless intrinsics.json says."""

    name = 'tum'
    units_per_metre = 5000.0
    default_intrinsics = {'fx': 517.3, 'fy': 516.5, 'cx': 318.6, 'cy': 255.3}  # freiburg1
    eval_max_depth_m = 10.0
    layout = 'rgb/ and depth/ (paired by name, or by associations.txt / rgb.txt + depth.txt)'
    max_time_gap_s = 0.02

    def discover(self) -> list:
        assoc = self.root / 'associations.txt'
        if assoc.is_file():  # "t_rgb rgb/x.png t_depth depth/y.png" per line
            records = [{'rgb': self.root / cols[1], 'depth': self.root / cols[3]}
                       for cols in _table(assoc) if len(cols) >= 4]
        elif (self.root / 'rgb.txt').is_file() and (self.root / 'depth.txt').is_file():
            records = self._associate(_table(self.root / 'rgb.txt'),
                                      _table(self.root / 'depth.txt'))
        else:
            return super().discover()
        for record in records:
            record['name'] = self.record_name(record)
        return records

    def _associate(self, rgb_rows: list, depth_rows: list) -> list:
        """Pair each colour frame with the depth frame nearest in time (within 20 ms)."""
        if not depth_rows:
            return []
        depth_t = np.array([float(row[0]) for row in depth_rows])
        records = []
        for row in rgb_rows:
            j = int(np.argmin(np.abs(depth_t - float(row[0]))))
            if abs(depth_t[j] - float(row[0])) <= self.max_time_gap_s:
                records.append({'rgb': self.root / row[1], 'depth': self.root / depth_rows[j][1]})
        return records


class ICLNUIMDataset(PairedFolderDataset):
    """ICL-NUIM: PNG z-depth / 5000; its calibration has fy = -480 (y up), read as +480."""

    name = 'icl_nuim'
    y_up_camera = True  # its poses map (x right, y up, z forward) camera points (poses.py)
    units_per_metre = 5000.0
    default_intrinsics = {'fx': 481.2, 'fy': -480.0, 'cx': 319.5, 'cy': 239.5}
    eval_max_depth_m = 10.0


class RedwoodDataset(PairedFolderDataset):
    """Redwood / PrimeSense recordings: PNG millimetres."""

    name = 'redwood'
    units_per_metre = 1000.0
    default_intrinsics = {'fx': 525.0, 'fy': 525.0, 'cx': 319.5, 'cy': 239.5}
    eval_max_depth_m = 10.0


class KinectDataset(PairedFolderDataset):
    """Kinect recordings: 16-bit PNG or binary PGM millimetres; needs intrinsics.json."""

    name = 'kinect'
    units_per_metre = 1000.0
    eval_max_depth_m = 10.0


class GenericFolderDataset(DepthDataset):
    """Any folder of RGB + depth described by a YAML file (the root is the file, or a folder
    holding dataset.yaml).

        root: ../recordings/lab    # optional: where the globs start (default: the YAML's folder)
        rgb: rgb/*.jpg             # glob relative to root
        depth: depth/*.png         # glob; paired with rgb by file stem
        depth_scale: 1000          # stored value / depth_scale = metres (1 for .npy metres)
        invalid_values: [0]        # stored values meaning "no depth"
        intrinsics: {fx: 525, fy: 525, cx: 319.5, cy: 239.5}   # or a path to a JSON file
        eval_max_depth: 10         # optional cap (metres) for evaluation
    """

    name = 'folder'
    layout = 'a dataset.yaml (rgb, depth, depth_scale, intrinsics) and the files it names'

    def __init__(self, root, split=None):
        import yaml
        path = Path(root).expanduser()
        config_path = path / 'dataset.yaml' if path.is_dir() else path
        if not config_path.is_file():
            raise FileNotFoundError(f'folder: {config_path} does not exist; write a YAML with '
                                    'keys rgb, depth, depth_scale, intrinsics (see docs/DATA.md).')
        try:
            config = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ValueError(f'{config_path}: not valid YAML ({exc}).') from exc
        missing = [key for key in ('rgb', 'depth', 'intrinsics') if key not in config]
        if missing:
            raise ValueError(f'{config_path}: missing key(s) {", ".join(missing)}.')
        self.config, self.config_path = config, config_path
        self.name = str(config.get('name', 'folder'))
        self.eval_max_depth_m = float(config.get('eval_max_depth', float('inf')))
        self.eval_min_depth_m = float(config.get('eval_min_depth', 1e-3))
        files_root = config_path.parent / str(config.get('root', '.'))
        super().__init__(files_root, split)
        intr = config['intrinsics']
        if isinstance(intr, str):
            intr = read_intrinsics_json(self.root / intr)
        try:
            self.K = K_from_values({key: float(intr[key]) for key in ('fx', 'fy', 'cx', 'cy')})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f'{config_path}: `intrinsics` needs numbers fx, fy, cx, cy '
                             f'({exc}).') from exc
        self.units = float(config.get('depth_scale', intr.get('depth_scale', 1.0)))
        self.invalid = tuple(config.get('invalid_values', [0]))

    def discover(self) -> list:
        depth_by_stem = {p.stem: p for p in self.root.glob(self.config['depth'])}
        records = []
        for rgb in sorted(self.root.glob(self.config['rgb'])):
            if rgb.stem not in depth_by_stem:
                raise FileNotFoundError(f'{self.config_path}: {rgb} has no depth file of the '
                                        f'same name matching {self.config["depth"]!r}.')
            record = {'rgb': rgb, 'depth': depth_by_stem[rgb.stem]}
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def read_depth(self, record: dict) -> np.ndarray:
        path = Path(record['depth'])
        if path.suffix == '.npy':
            depth = load_npy(path).astype(np.float32).squeeze() / np.float32(self.units)
            depth[np.isin(depth * self.units, self.invalid)] = np.nan
            return depth
        raw = read_depth_png(path)
        return scaled_depth(raw, self.units, [v for v in self.invalid if 0 <= v <= 65535])

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        return self.K


def _table(path: Path) -> list:
    """Whitespace-separated rows of a text file, without comments and blank lines."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.split('#', 1)[0].strip()
        if line:
            rows.append(line.split())
    return rows
