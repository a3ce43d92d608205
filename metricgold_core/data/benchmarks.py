"""Readers for the zero-shot benchmarks: NYUv2, KITTI (Eigen split), ETH3D, DIODE, ScanNet.

Each sets the published evaluation caps and crop (`eval_min_depth_m`, `eval_max_depth_m`,
`eval_crop`) so `metricgold evaluate` follows the usual protocol.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .base import _existing, DepthDataset, load_npy, read_depth_png, scaled_depth
from .transforms import kitti_benchmark_crop
from ..camera.geometry import make_K, scale_intrinsics

LOG = logging.getLogger(__name__)


def fraction_crop(height: int, width: int, rows: tuple, cols: tuple) -> np.ndarray:
    """Bool (H, W) mask of the box rows[0]*H:rows[1]*H, cols[0]*W:cols[1]*W (int truncation)."""
    mask = np.zeros((height, width), dtype=bool)
    r0, r1 = int(rows[0] * height), int(rows[1] * height)
    c0, c1 = int(cols[0] * width), int(cols[1] * width)
    mask[r0:r1, c0:c1] = True
    return mask


class NYUv2Dataset(DepthDataset):
    """NYUv2 (Marigold's extraction): <split>/<scene>/rgb_NNNN.png + depth_NNNN.png (uint16 mm)."""

    name = 'nyuv2'
    layout = '<split>/<scene>/rgb_NNNN.png with depth_NNNN.png (uint16 millimetres)'
    eval_max_depth_m = 10.0
    K_published = (518.8579, 519.4696, 325.5824, 253.7362)  # at 640x480

    def discover(self) -> list:
        records = []
        for rgb in sorted(self.root.glob('**/rgb_*.png')):
            record = {'rgb': rgb, 'depth': rgb.with_name(rgb.name.replace('rgb_', 'depth_', 1))}
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def read_depth(self, record: dict) -> np.ndarray:
        return scaled_depth(read_depth_png(record['depth']), 1000.0)

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        return scale_intrinsics(make_K(*self.K_published), (480, 640), (height, width))

    def eval_crop(self, height: int, width: int) -> np.ndarray:
        """Eigen's crop, rows 45:471, cols 41:601 of 480x640 (scaled for other sizes)."""
        return fraction_crop(height, width, (45 / 480, 471 / 480), (41 / 640, 601 / 640))


class KITTIDataset(DepthDataset):
    """KITTI Eigen split: PNG uint16 / 256 = metres, 0 invalid; Garg or Eigen crop, cap 80 m.

    Split lines (Marigold's eigen_test_files_with_gt.txt): `rgb_path depth_path focal_px`,
    with depth `None` for frames without ground truth (skipped).
    """

    name = 'kitti'
    layout = '<date>/<drive>/image_02/data/*.png and <drive>/proj_depth/groundtruth/image_02/*.png'
    eval_max_depth_m = 80.0
    CROPS = {'garg': ((0.40810811, 0.99189189), (0.03594771, 0.96405229)),
             'eigen': ((0.3324324, 0.91351351), (0.03594771, 0.96405229))}
    K_2011_09_26 = (721.5377, 721.5377, 609.5593, 172.854)

    def __init__(self, root, split=None, crop: str | None = 'eigen', kb_crop: bool = False):
        if crop is not None and crop not in self.CROPS:
            raise ValueError(f'`crop` must be one of {sorted(self.CROPS)} or None, got {crop!r}.')
        self.crop, self.kb_crop = crop, kb_crop
        super().__init__(root, split)

    def read_split(self, split) -> list:
        records = super().read_split(split)
        return [r for r in records if Path(r['depth']).name != 'None']

    def discover(self) -> list:
        records = []
        for depth in sorted(self.root.glob('**/proj_depth/groundtruth/image_0[23]/*.png')):
            drive = depth.parents[3].name
            rgb = self.root / drive[:10] / drive / depth.parent.name / 'data' / depth.name
            record = {'rgb': rgb, 'depth': depth, 'extra': []}
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def __getitem__(self, i: int) -> dict:
        sample = super().__getitem__(i)
        return kitti_benchmark_crop(sample) if self.kb_crop else sample

    def read_depth(self, record: dict) -> np.ndarray:
        return scaled_depth(read_depth_png(record['depth']), 256.0)

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        """P_rect from <date>/calib_cam_to_cam.txt; else the split's focal with a centred
        principal point; else the 2011_09_26 calibration."""
        rgb = Path(record['rgb'])
        cam = rgb.parent.parent.name[-2:] if rgb.parent.name == 'data' else '02'
        calib = rgb.parents[3] / 'calib_cam_to_cam.txt' if len(rgb.parents) > 3 else None
        if calib is not None and calib.is_file():
            for line in calib.read_text().splitlines():
                if line.startswith(f'P_rect_{cam}:'):
                    p = [float(v) for v in line.split(':', 1)[1].split()]
                    return make_K(p[0], p[5], p[2], p[6])
        if record.get('extra'):
            f = float(record['extra'][0])
            return make_K(f, f, (width - 1) / 2, (height - 1) / 2)
        return make_K(*self.K_2011_09_26)

    def eval_crop(self, height: int, width: int) -> np.ndarray | None:
        if self.crop is None:
            return None
        rows, cols = self.CROPS[self.crop]
        return fraction_crop(height, width, rows, cols)


class ETH3DDataset(DepthDataset):
    """ETH3D high-res: undistorted JPEGs; depth is raw little-endian float32 (no header) of the
    image size, inf = invalid; K from COLMAP cameras.txt (PINHOLE)."""

    name = 'eth3d'
    layout = ('<scene>/images/dslr_images_undistorted/*.JPG, <scene>/ground_truth_depth/'
              'dslr_images/*.JPG (raw float32) and <scene>/dslr_calibration_undistorted/')
    eval_min_depth_m = 1e-5

    def discover(self) -> list:
        records = []
        for depth in sorted(self.root.glob('*/ground_truth_depth/dslr_images/*')):
            scene = depth.parents[2]
            rgb = scene / 'images' / 'dslr_images_undistorted' / depth.name
            record = {'rgb': rgb, 'depth': depth}
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def read_depth(self, record: dict) -> np.ndarray:
        path = _existing(record['depth'])
        height, width = self._image_size(record)
        raw = np.fromfile(path, dtype='<f4')
        if raw.size != height * width:
            raise ValueError(f'{path}: {raw.size} float32 values, but its image is '
                             f'{width}x{height} ({width * height} values expected).')
        depth = raw.reshape(height, width).astype(np.float32)
        depth[~np.isfinite(depth)] = np.nan
        return depth

    def _image_size(self, record: dict) -> tuple:
        from PIL import Image
        with Image.open(_existing(record['rgb'])) as image:
            return image.height, image.width

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        scene = Path(record['depth']).parents[2]
        cameras = scene / 'dslr_calibration_undistorted' / 'cameras.txt'
        images = cameras.with_name('images.txt')
        camera_id = None
        if images.is_file():  # COLMAP: "IMAGE_ID qw qx qy qz tx ty tz CAMERA_ID NAME", points
            for line in images.read_text().splitlines():
                cols = line.split()
                if len(cols) >= 10 and not line.startswith('#') and \
                        Path(cols[9]).name == Path(record['rgb']).name:
                    camera_id = cols[8]
                    break
        for line in _existing(cameras).read_text().splitlines():
            cols = line.split()
            if line.startswith('#') or len(cols) < 8:
                continue
            if camera_id is None or cols[0] == camera_id:
                if cols[1] != 'PINHOLE':
                    raise ValueError(f'{cameras}: camera {cols[0]} is {cols[1]}; use the '
                                     f'undistorted (PINHOLE) calibration.')
                fx, fy, cx, cy = (float(v) for v in cols[4:8])
                return scale_intrinsics(make_K(fx, fy, cx, cy),
                                        (int(cols[3]), int(cols[2])), (height, width))
        raise ValueError(f'{cameras}: no camera for {record["rgb"]}.')


class DIODEDataset(DepthDataset):
    """DIODE: <name>.png, <name>_depth.npy (H, W, 1) metres, <name>_depth_mask.npy (1 = valid)."""

    name = 'diode'
    layout = '<split>/<indoors|outdoor>/scene_*/scan_*/<name>.png, _depth.npy, _depth_mask.npy'
    eval_min_depth_m = 0.6
    eval_max_depth_m = 350.0
    K_published = (886.81, 886.81, 511.5, 383.5)  # at 1024x768

    def discover(self) -> list:
        records = []
        for depth in sorted(self.root.glob('**/*_depth.npy')):
            stem = depth.name[:-len('_depth.npy')]
            record = {'rgb': depth.with_name(f'{stem}.png'), 'depth': depth,
                      'mask': depth.with_name(f'{stem}_depth_mask.npy')}
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def read_split(self, split) -> list:
        records = super().read_split(split)
        for record in records:
            record['mask'] = Path(str(record['depth']).replace('_depth.npy', '_depth_mask.npy'))
        return records

    def read_depth(self, record: dict) -> np.ndarray:
        depth = load_npy(record['depth']).astype(np.float32).squeeze()
        mask = load_npy(record['mask']).squeeze()
        if mask.shape != depth.shape:
            raise ValueError(f'{record["mask"]}: mask {mask.shape} does not match depth '
                             f'{depth.shape} in {record["depth"]}.')
        depth[mask <= 0] = np.nan
        return depth

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        return scale_intrinsics(make_K(*self.K_published), (768, 1024), (height, width))


class ScanNetDataset(DepthDataset):
    """ScanNet: <scene>/color/N.jpg + depth/N.png (uint16 mm); K from intrinsic/*.txt (4x4).

    Colour larger than depth (raw 1296x968 vs 640x480) is resized to the depth size, and K is
    the depth camera's (intrinsic_depth.txt), as the preprocessed benchmark sets do.
    """

    name = 'scannet'
    layout = '<scene>/color/N.jpg, <scene>/depth/N.png and <scene>/intrinsic/intrinsic_depth.txt'
    eval_max_depth_m = 10.0
    K_default = (577.590698, 578.729797, 318.905426, 242.683609)  # typical ScanNet depth camera

    def discover(self) -> list:
        records = []
        for depth in sorted(self.root.glob('**/depth/*.png')):
            color = depth.parent.parent / 'color'
            rgb = next((color / f'{depth.stem}{ext}' for ext in ('.jpg', '.png')
                        if (color / f'{depth.stem}{ext}').is_file()), color / f'{depth.stem}.jpg')
            record = {'rgb': rgb, 'depth': depth}
            record['name'] = self.record_name(record)
            records.append(record)
        return records

    def read_rgb(self, record: dict) -> np.ndarray:
        rgb = super().read_rgb(record)
        from PIL import Image
        with Image.open(_existing(record['depth'])) as depth:
            size = depth.size
        if (rgb.shape[1], rgb.shape[0]) != size:
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))
        return rgb

    def read_depth(self, record: dict) -> np.ndarray:
        return scaled_depth(read_depth_png(record['depth']), 1000.0)

    def intrinsics(self, record: dict, height: int, width: int) -> np.ndarray:
        path = Path(record['depth']).parent.parent / 'intrinsic' / 'intrinsic_depth.txt'
        if path.is_file():
            try:
                M = np.loadtxt(path)
            except ValueError as exc:
                raise ValueError(f'{path}: expected a 4x4 matrix of numbers ({exc}).') from exc
            return make_K(M[0, 0], M[1, 1], M[0, 2], M[1, 2])
        return make_K(*self.K_default)
