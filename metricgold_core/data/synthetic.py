"""Readers for the synthetic training sets: Hypersim, Virtual KITTI 2, TartanAir."""
from __future__ import annotations

import csv
import functools
import logging
from pathlib import Path

import numpy as np

from .base import _existing, DepthDataset, load_npy, read_depth_png, scaled_depth
from ..camera.geometry import make_K

LOG = logging.getLogger(__name__)


# --- Hypersim ------------------------------------------------------------------------------
def hypersim_rays(camera: dict, height: int, width: int) -> np.ndarray:
    """Per-pixel camera-space ray directions (H, W, 3) from a Hypersim metadata row.

    Uses M_cam_from_uv, which maps NDC (u right, v up, in [-1, 1] at the image edges) to an
    OpenGL camera-frame ray (x right, y up, looking along -z). Valid for the standard and the
    tilt-shift cameras alike.
    """
    M = np.array([[float(camera[f'M_cam_from_uv_{r}{c}']) for c in range(3)] for r in range(3)])
    u = (np.arange(width) + 0.5) / width * 2.0 - 1.0
    v = 1.0 - (np.arange(height) + 0.5) / height * 2.0
    uv1 = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), axis=-1)
    return uv1 @ M.T  # [H, W, 3]


def hypersim_distance_to_z(distance_m: np.ndarray, camera: dict) -> np.ndarray:
    """Hypersim distance to the camera centre (H, W) -> z-depth along the optical axis."""
    rays = hypersim_rays(camera, *distance_m.shape)
    cos = -rays[..., 2] / np.linalg.norm(rays, axis=-1)  # the camera looks along -z
    return (distance_m.astype(np.float64) * cos).astype(np.float32)


def hypersim_K(camera: dict, height: int, width: int) -> tuple:
    """Best pinhole K (OpenCV convention) for a Hypersim camera, and its max error in pixels.

    Exact for standard cameras; a tilt-shift camera is only approximately a centred pinhole,
    so K is the least-squares fit of pixel = f * ray / z + c over all pixels.
    """
    rays = hypersim_rays(camera, height, width)
    x = rays[..., 0] / -rays[..., 2]
    y = -rays[..., 1] / -rays[..., 2]  # OpenCV y points down
    cols, rows = np.meshgrid(np.arange(width, dtype=np.float64),
                             np.arange(height, dtype=np.float64))
    A = np.stack([x.ravel(), np.ones(x.size)], axis=1)
    (fx, cx), *_ = np.linalg.lstsq(A, cols.ravel(), rcond=None)
    B = np.stack([y.ravel(), np.ones(y.size)], axis=1)
    (fy, cy), *_ = np.linalg.lstsq(B, rows.ravel(), rcond=None)
    err = max(np.abs(fx * x + cx - cols).max(), np.abs(fy * y + cy - rows).max())
    return make_K(fx, fy, cx, cy), float(err)


def tonemap_hypersim(hdr: np.ndarray) -> np.ndarray:
    """Linear HDR colour (H, W, 3) -> uint8 with Hypersim's published rule: gamma 2.2 and an
    exposure that puts the 90th percentile of brightness at 0.8."""
    gamma = 2.2
    brightness = 0.3 * hdr[..., 0] + 0.59 * hdr[..., 1] + 0.11 * hdr[..., 2]
    finite = np.isfinite(brightness)
    p90 = np.percentile(brightness[finite], 90) if finite.any() else 0.0
    scale = 0.8 ** gamma / p90 if p90 > 1e-4 else 1.0
    out = np.power(np.clip(np.nan_to_num(hdr) * scale, 0.0, None), 1.0 / gamma)
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def read_hdf5(path) -> np.ndarray:
    """The `dataset` array of a Hypersim HDF5 file."""
    try:
        import h5py
    except ImportError as exc:
        raise ImportError('Hypersim files are HDF5: pip install h5py (or the `data` extra).') \
            from exc
    path = _existing(path)
    try:
        with h5py.File(path, 'r') as f:
            return f['dataset'][()]
    except (OSError, KeyError) as exc:
        raise ValueError(f'{path}: not a Hypersim HDF5 file with a `dataset` array ({exc}).') \
            from exc


class HypersimDataset(DepthDataset):
    """Hypersim: HDF5 float16 distance-to-centre -> z-depth; tonemapped JPEG or HDR colour."""

    name = 'hypersim'
    layout = ('<scene>/images/scene_cam_XX_geometry_hdf5/frame.NNNN.depth_meters.hdf5 (+ '
              'scene_cam_XX_final_preview/*.tonemap.jpg or final_hdf5/*.color.hdf5) and '
              'metadata_camera_parameters.csv')
    eval_max_depth_m = 65.0

    def __init__(self, root, split=None, camera_csv=None):
        super().__init__(root, split)
        csv_path = Path(camera_csv) if camera_csv else self.root / 'metadata_camera_parameters.csv'
        if not csv_path.is_file():
            raise FileNotFoundError(f'hypersim: camera metadata {csv_path} is missing; it comes '
                                    f'with Hypersim (contrib/mikeroberts3000) and gives each '
                                    f"scene's per-pixel rays.")
        with open(csv_path, newline='') as f:
            self.cameras = {row['scene_name']: row for row in csv.DictReader(f)}

    def discover(self) -> list:
        records = []
        for depth in sorted(self.root.glob('*/images/scene_cam_*_geometry_hdf5/'
                                           'frame.*.depth_meters.hdf5')):
            cam_dir = depth.parent.name.replace('_geometry_hdf5', '')
            frame = depth.name.split('.depth_meters')[0]
            images = depth.parent.parent
            rgb = images / f'{cam_dir}_final_preview' / f'{frame}.tonemap.jpg'
            if not rgb.is_file():
                rgb = images / f'{cam_dir}_final_hdf5' / f'{frame}.color.hdf5'
            record = {'rgb': rgb, 'depth': depth}
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def record_name(self, record: dict) -> str:
        depth = Path(record['depth'])
        return f'{self.scene_of(record)}/{depth.parent.name.split("_geometry")[0]}/' \
               f'{depth.name.split(".depth_meters")[0]}'

    @staticmethod
    def scene_of(record: dict) -> str:
        parts = Path(record['depth']).parts
        return parts[parts.index('images') - 1] if 'images' in parts else parts[-4]

    def camera(self, record: dict) -> dict:
        scene = self.scene_of(record)
        if scene not in self.cameras:
            raise KeyError(f'hypersim: scene {scene} has no row in the camera metadata CSV.')
        return self.cameras[scene]

    def read_rgb(self, record: dict) -> np.ndarray:
        rgb = Path(record['rgb'])
        if rgb.suffix == '.hdf5':
            return tonemap_hypersim(read_hdf5(rgb).astype(np.float32))
        return super().read_rgb(record)

    def read_depth(self, record: dict) -> np.ndarray:
        distance = read_hdf5(record['depth']).astype(np.float32)  # NaN where no geometry
        return hypersim_distance_to_z(distance, self.camera(record))

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        return self._K(self.scene_of(record), height, width)

    @functools.lru_cache(maxsize=64)
    def _K(self, scene: str, height: int, width: int) -> np.ndarray:
        K, err = hypersim_K(self.cameras[scene], height, width)
        if err > 0.5:
            LOG.debug('hypersim scene %s: pinhole K is off by up to %.2f px (tilt-shift)', scene,
                      err)
        return K


# --- Virtual KITTI 2 -----------------------------------------------------------------------
class VirtualKITTI2Dataset(DepthDataset):
    """Virtual KITTI 2: depth PNG uint16 centimetres, 65535 = sky (invalid)."""

    name = 'vkitti2'
    layout = ('Scene*/<variation>/frames/rgb/Camera_N/rgb_NNNNN.jpg and '
              'frames/depth/Camera_N/depth_NNNNN.png')
    eval_max_depth_m = 80.0
    default_K = (725.0087, 725.0087, 620.5, 187.0)  # at 1242x375, all scenes

    def discover(self) -> list:
        records = []
        for rgb in sorted(self.root.glob('**/frames/rgb/Camera_*/rgb_*.jpg')):
            frames = rgb.parents[2]
            depth = frames / 'depth' / rgb.parent.name / rgb.name.replace('rgb_', 'depth_') \
                .replace('.jpg', '.png')
            record = {'rgb': rgb, 'depth': depth}
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def read_depth(self, record: dict) -> np.ndarray:
        return scaled_depth(read_depth_png(record['depth']), 100.0, invalid=(0, 65535))

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        """Per-frame K from textgt/intrinsic.txt when present, else the published constant."""
        rgb = Path(record['rgb'])
        table = rgb.parents[3] / 'textgt' / 'intrinsic.txt' if len(rgb.parents) > 3 else None
        if table is not None and table.is_file():
            frame = int(rgb.stem.split('_')[-1])
            camera = int(rgb.parent.name.split('_')[-1])
            for line in table.read_text().splitlines()[1:]:
                cols = line.split()
                if len(cols) >= 6 and int(cols[0]) == frame and int(cols[1]) == camera:
                    return make_K(*(float(c) for c in cols[2:6]))
        return make_K(*self.default_K)


# --- TartanAir -----------------------------------------------------------------------------
class TartanAirDataset(DepthDataset):
    """TartanAir v1: depth .npy float32 metres; sky carries huge values (>= 1000 m -> invalid)."""

    name = 'tartanair'
    layout = '[<env>/<level>/<P00N>/]image_left/NNNNNN_left.png and depth_left/*_left_depth.npy'
    sky_depth_m = 1000.0  # nothing real in TartanAir is this far; sky is ~2500-3000 m
    eval_max_depth_m = 80.0

    def discover(self) -> list:
        records = []
        for side in ('left', 'right'):
            for rgb in sorted(self.root.glob(f'**/image_{side}/*_{side}.png')):
                depth = rgb.parent.parent / f'depth_{side}' / f'{rgb.stem}_depth.npy'
                record = {'rgb': rgb, 'depth': depth}
                record['name'] = self.record_name(record)
                records.append(record)
        return records

    def read_depth(self, record: dict) -> np.ndarray:
        depth = load_npy(record['depth']).astype(np.float32)
        if depth.ndim != 2:
            raise ValueError(f'{record["depth"]}: expected a 2-D depth array, got {depth.shape}.')
        depth[depth >= self.sky_depth_m] = np.nan
        return depth

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        # TartanAir v1 renders every sequence with one pinhole: 320, 320, 320, 240 at 640x480
        return make_K(320.0 * width / 640, 320.0 * height / 480, 320.0 * width / 640,
                      240.0 * height / 480)
