"""Dataset readers on the real sample files in ../shared/data and on small synthetic files."""
from __future__ import annotations

import csv
import json

import numpy as np
from PIL import Image
import pytest

from metricgold_core.camera.geometry import backproject
from metricgold_core.data.registry import dataset_class, make_dataset


def raw_png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.float64)


def check_sample(sample: dict, hw: tuple) -> None:
    assert sample['rgb'].dtype == np.uint8 and sample['rgb'].shape == hw + (3,)
    assert sample['depth'].dtype == np.float32 and sample['depth'].shape == hw
    assert sample['valid'].dtype == bool and sample['K'].shape == (3, 3)
    np.testing.assert_array_equal(sample['valid'], np.isfinite(sample['depth']))


# --- real RGB-D recordings -------------------------------------------------------------------
@pytest.mark.parametrize('name, folder, units, fx, fy', [
    ('tum', 'real/tum', 5000.0, 520.9, 521.0),
    ('icl_nuim', 'real/icl_nuim', 5000.0, 481.2, 480.0),
    ('redwood', 'real/redwood', 1000.0, 525.0, 525.0),
    ('kinect', 'real/kinect_ch5', 1000.0, 518.0, 519.0),
])
def test_rgbd_readers_on_real_frames(shared_data, name, folder, units, fx, fy):
    ds = make_dataset(name, shared_data / folder)
    assert len(ds) == {'tum': 2}.get(name, 5)
    sample = ds[0]
    check_sample(sample, (480, 640))
    raw = raw_png(ds.records[0]['depth'])
    np.testing.assert_allclose(sample['depth'][raw > 0], raw[raw > 0] / units, rtol=1e-6)
    np.testing.assert_array_equal(sample['valid'], raw > 0)  # 0 = no measurement
    assert sample['K'][0, 0] == fx and sample['K'][1, 1] == fy  # ICL-NUIM's -480 read as +480
    assert 0.3 < np.nanmedian(sample['depth']) < 6.0  # indoor scenes, metres
    assert ds.eval_max_depth_m == 10.0


def test_kinect_pgm_values_are_millimetres(shared_data):
    ds = make_dataset('kinect', shared_data / 'real/kinect_ch5')
    assert ds.records[0]['depth'].suffix == '.pgm'
    sample = ds[0]
    assert np.nanmax(sample['depth']) == pytest.approx(9.823)  # raw max 9823 in 1.pgm


def test_icl_nuim_is_dense_and_points_have_positive_y_below_centre(shared_data):
    sample = make_dataset('icl_nuim', shared_data / 'real/icl_nuim')[0]
    assert sample['valid'].mean() > 0.99  # ray-traced: dense ground truth
    points = backproject(sample['depth'], sample['K'])
    # with fy made positive, image rows below the principal point map to +y (down, OpenCV)
    assert np.nanmean(points[400:, :, 1]) > 0 > np.nanmean(points[:80, :, 1])


def test_generic_folder_yaml_on_redwood(shared_data, tmp_path):
    config = tmp_path / 'dataset.yaml'
    config.write_text(f'root: {shared_data / "real/redwood"}\nrgb: rgb/*.jpg\n'
                      'depth: depth/*.png\ndepth_scale: 1000\n'
                      'intrinsics: {fx: 525, fy: 525, cx: 319.5, cy: 239.5}\n'
                      'eval_max_depth: 10\nname: lab\n')
    ds = make_dataset('folder', tmp_path)
    assert len(ds) == 5 and ds.name == 'lab' and ds.eval_max_depth_m == 10.0
    reference = make_dataset('redwood', shared_data / 'real/redwood')[2]
    sample = ds[2]
    np.testing.assert_array_equal(sample['depth'], reference['depth'])
    np.testing.assert_array_equal(sample['rgb'], reference['rgb'])
    assert sample['name'] == 'rgb/00002'


def test_generic_folder_reports_config_problems(tmp_path):
    with pytest.raises(FileNotFoundError, match='dataset.yaml does not exist'):
        make_dataset('folder', tmp_path)
    (tmp_path / 'dataset.yaml').write_text('rgb: rgb/*.png\n')
    with pytest.raises(ValueError, match=r'missing key\(s\) depth, intrinsics'):
        make_dataset('folder', tmp_path)


# --- TartanAir and Hypersim format samples ----------------------------------------------------
def test_tartanair_sky_is_invalid(shared_data):
    ds = make_dataset('tartanair', shared_data / 'formats/tartanair')
    assert [r['name'] for r in ds.records] == [
        f'image_left/{n}_left' for n in ('000000', '000050', '000100', '000188')]
    raw = np.load(ds.records[3]['depth'])
    sample = ds[3]
    check_sample(sample, (480, 640))
    np.testing.assert_array_equal(sample['valid'], raw < 1000.0)
    assert (~sample['valid']).mean() == pytest.approx((raw > 2000).mean())  # sky only
    assert (~sample['valid']).mean() > 0.01 and np.nanmax(sample['depth']) < 100.0
    np.testing.assert_array_equal(sample['K'], [[320, 0, 320], [0, 320, 240], [0, 0, 1]])
    assert ds[0]['valid'].all()


def _hypersim_rows(shared_data) -> dict:
    with open(shared_data / 'formats/hypersim/metadata_camera_parameters.csv', newline='') as f:
        return {row['scene_name']: row for row in csv.DictReader(f)}


def test_hypersim_tilt_shift_distance_to_z(shared_data):
    """z from M_cam_from_uv rays, checked against an independent projection with M_proj."""
    pytest.importorskip('h5py')
    from metricgold_core.data.synthetic import hypersim_rays, read_hdf5
    ds = make_dataset('hypersim', shared_data / 'formats/hypersim')
    record = ds.records[0]
    assert record['name'] == 'ai_037_002/scene_cam_00/frame.0000'
    distance = read_hdf5(record['depth']).astype(np.float64)
    z = ds.read_depth(record)
    assert z.dtype == np.float32 and z.shape == (768, 1024)
    assert np.nanmin(distance) == pytest.approx(2.96, abs=0.01)
    assert np.nanmax(distance) == pytest.approx(13.23, abs=0.02)
    assert np.all(z[np.isfinite(z)] <= distance[np.isfinite(z)] + 1e-3)
    camera = _hypersim_rows(shared_data)['ai_037_002']
    rays = hypersim_rays(camera, 768, 1024)
    points = distance[..., None] * rays / np.linalg.norm(rays, axis=-1, keepdims=True)
    np.testing.assert_allclose(-points[..., 2], z, rtol=1e-5, atol=1e-5)
    # projecting the 3-D points with M_proj gives back each pixel's own NDC coordinates
    M_proj = np.array([[float(camera[f'M_proj_{r}{c}']) for c in range(4)] for r in range(4)])
    rows, cols = np.array([0, 383, 767, 100]), np.array([0, 511, 1023, 900])
    p = points[rows, cols]
    clip = np.concatenate([p, np.ones((4, 1))], axis=1) @ M_proj.T
    ndc = clip[:, :2] / clip[:, 3:]
    np.testing.assert_allclose(ndc[:, 0], (cols + 0.5) / 1024 * 2 - 1, atol=1e-4)
    np.testing.assert_allclose(ndc[:, 1], 1 - (rows + 0.5) / 768 * 2, atol=1e-4)
    # the shifted lens moves the principal point far off centre; a pinhole fits within 2.5 px
    from metricgold_core.data.synthetic import hypersim_K
    K, err = hypersim_K(camera, 768, 1024)
    np.testing.assert_array_equal(K, ds.intrinsics(record, 768, 1024))
    assert K[0, 0] == pytest.approx(886.8, abs=0.1) and K[0, 2] == pytest.approx(572.9, abs=0.1)
    assert err < 2.5


def _fake_hypersim(shared_data, tmp_path, scene: str):
    """A Hypersim tree in tmp_path for `scene` that links the real depth frame."""
    images = tmp_path / scene / 'images'
    (images / 'scene_cam_00_geometry_hdf5').mkdir(parents=True)
    real = next((shared_data / 'formats/hypersim').glob('*/images/*/frame.0000.depth_meters.hdf5'))
    (images / 'scene_cam_00_geometry_hdf5' / real.name).symlink_to(real)
    (tmp_path / 'metadata_camera_parameters.csv').symlink_to(
        shared_data / 'formats/hypersim/metadata_camera_parameters.csv')
    return images


def test_hypersim_standard_camera_matches_published_formula(shared_data, tmp_path):
    pytest.importorskip('h5py')
    import h5py
    from metricgold_core.data.synthetic import read_hdf5
    images = _fake_hypersim(shared_data, tmp_path, 'ai_001_001')
    ds = make_dataset('hypersim', tmp_path)
    record = ds.records[0]
    with pytest.raises(FileNotFoundError, match='frame.0000.color.hdf5: no such file'):
        ds[0]  # the sample has no colour frame: the error names the file it looked for
    distance = read_hdf5(record['depth']).astype(np.float64)
    f, cx, cy = 886.81, 511.5, 383.5
    v, u = np.mgrid[0:768, 0:1024]
    expected = distance * f / np.sqrt(f * f + (u - cx) ** 2 + (v - cy) ** 2)
    np.testing.assert_allclose(ds.read_depth(record), expected, rtol=2e-4)
    np.testing.assert_allclose(ds.intrinsics(record, 768, 1024),
                               [[f, 0, cx], [0, f, cy], [0, 0, 1]], atol=0.01)
    hdr = np.full((768, 1024, 3), 0.25, dtype=np.float16)  # uniform grey HDR colour
    (images / 'scene_cam_00_final_hdf5').mkdir()
    with h5py.File(images / 'scene_cam_00_final_hdf5' / 'frame.0000.color.hdf5', 'w') as h5:
        h5['dataset'] = hdr
    sample = ds[0]
    check_sample(sample, (768, 1024))
    # tonemap: the 90th-percentile brightness becomes 0.8 after gamma 2.2 -> 204
    assert sample['rgb'][0, 0].tolist() == [204, 204, 204]


# --- formats without a sample: synthetic files written here ------------------------------------
def test_vkitti2_centimetres_and_sky(tmp_path):
    frames = tmp_path / 'Scene01' / 'clone' / 'frames'
    (frames / 'rgb' / 'Camera_0').mkdir(parents=True)
    (frames / 'depth' / 'Camera_0').mkdir(parents=True)
    depth_cm = np.full((375, 1242), 1234, dtype=np.uint16)
    depth_cm[:100] = 65535  # sky
    Image.fromarray(depth_cm).save(frames / 'depth' / 'Camera_0' / 'depth_00000.png')
    Image.fromarray(np.zeros((375, 1242, 3), np.uint8)).save(
        frames / 'rgb' / 'Camera_0' / 'rgb_00000.jpg')
    ds = make_dataset('vkitti2', tmp_path)
    sample = ds[0]
    check_sample(sample, (375, 1242))
    assert not sample['valid'][:100].any() and sample['valid'][100:].all()
    assert np.nanmax(sample['depth']) == pytest.approx(12.34)
    np.testing.assert_allclose(sample['K'], [[725.0087, 0, 620.5], [0, 725.0087, 187.0],
                                             [0, 0, 1]])
    textgt = tmp_path / 'Scene01' / 'clone' / 'textgt'
    textgt.mkdir()
    (textgt / 'intrinsic.txt').write_text('frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]\n'
                                          '0 0 700.0 701.0 600.0 180.0\n')
    assert ds[0]['K'][1, 1] == 701.0


def test_nyuv2_mm_png_and_eigen_crop(tmp_path):
    scene = tmp_path / 'test' / 'bathroom'
    scene.mkdir(parents=True)
    Image.fromarray(np.full((480, 640), 2500, np.uint16)).save(scene / 'depth_0001.png')
    Image.fromarray(np.zeros((480, 640, 3), np.uint8)).save(scene / 'rgb_0001.png')
    ds = make_dataset('nyuv2', tmp_path)
    sample = ds[0]
    assert sample['name'] == 'test/bathroom/rgb_0001'
    assert np.all(sample['depth'] == 2.5)
    mask = ds.eval_mask(sample)
    assert mask.sum() == (471 - 45) * (601 - 41) and mask[45, 41] and not mask[44, 41]
    assert sample['K'][0, 0] == pytest.approx(518.8579)


def _kitti_tree(root, depth_value: int):
    drive = '2011_09_26_drive_0002_sync'
    rgb_dir = root / '2011_09_26' / drive / 'image_02' / 'data'
    gt_dir = root / drive / 'proj_depth' / 'groundtruth' / 'image_02'
    rgb_dir.mkdir(parents=True)
    gt_dir.mkdir(parents=True)
    depth = np.zeros((375, 1242), np.uint16)
    depth[200:, :] = depth_value
    Image.fromarray(depth).save(gt_dir / '0000000069.png')
    Image.fromarray(np.zeros((375, 1242, 3), np.uint8)).save(rgb_dir / '0000000069.png')
    return f'2011_09_26/{drive}/image_02/data/0000000069.png', \
        f'{drive}/proj_depth/groundtruth/image_02/0000000069.png'


def test_kitti_split_crops_and_cap(tmp_path):
    rgb_rel, depth_rel = _kitti_tree(tmp_path, 256 * 90)  # 90 m: beyond the 80 m cap
    split = tmp_path / 'eigen_test.txt'
    split.write_text(f'{rgb_rel} {depth_rel} 721.5377\n{rgb_rel} None 721.5377\n')
    ds = make_dataset('kitti', tmp_path, split=split, crop='garg')
    assert len(ds) == 1  # the line without ground truth is skipped
    sample = ds[0]
    assert np.nanmax(sample['depth']) == 90.0 and not sample['valid'][:200].any()
    assert sample['K'][0, 0] == 721.5377 and sample['K'][0, 2] == pytest.approx(620.5)
    assert not ds.eval_mask(sample).any()  # everything is beyond 80 m
    rgb_rel, depth_rel = _kitti_tree(tmp_path / 'b', 256 * 20)
    ds = make_dataset('kitti', tmp_path / 'b', crop='eigen')
    mask = ds.eval_mask(ds[0])
    rows = np.flatnonzero(mask.any(axis=1))
    assert rows[0] == 200 and rows[-1] == int(0.91351351 * 375) - 1
    cols = np.flatnonzero(mask.any(axis=0))
    assert cols[0] == int(0.03594771 * 1242) and cols[-1] == int(0.96405229 * 1242) - 1
    kb = make_dataset('kitti', tmp_path / 'b', kb_crop=True)[0]
    assert kb['depth'].shape == (352, 1216) and kb['K'][1, 2] == pytest.approx(172.854 - 23)
    with pytest.raises(ValueError, match='`crop` must be one of'):
        make_dataset('kitti', tmp_path / 'b', crop='square')


def test_eth3d_raw_float_depth_and_colmap_camera(tmp_path):
    scene = tmp_path / 'courtyard'
    (scene / 'images' / 'dslr_images_undistorted').mkdir(parents=True)
    (scene / 'ground_truth_depth' / 'dslr_images').mkdir(parents=True)
    (scene / 'dslr_calibration_undistorted').mkdir(parents=True)
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(
        scene / 'images' / 'dslr_images_undistorted' / 'DSC_0001.JPG', format='JPEG')
    depth = np.full((40, 60), 7.5, dtype='<f4')
    depth[0, :] = np.inf
    depth.tofile(scene / 'ground_truth_depth' / 'dslr_images' / 'DSC_0001.JPG')
    (scene / 'dslr_calibration_undistorted' / 'cameras.txt').write_text(
        '# Camera list\n0 PINHOLE 6048 4032 3400.0 3401.0 3000.0 2000.0\n')
    sample = make_dataset('eth3d', tmp_path)[0]
    assert not sample['valid'][0].any() and np.all(sample['depth'][1:] == 7.5)
    assert sample['K'][0, 0] == pytest.approx(3400.0 * 60 / 6048)  # scaled to the image size
    (scene / 'ground_truth_depth' / 'dslr_images' / 'DSC_0001.JPG').write_bytes(b'\0' * 12)
    with pytest.raises(ValueError, match=r'DSC_0001.JPG: 3 float32 values, but its image is 60x'):
        make_dataset('eth3d', tmp_path)[0]


def test_diode_depth_and_mask(tmp_path):
    scan = tmp_path / 'val' / 'outdoor' / 'scene_00022' / 'scan_00193'
    scan.mkdir(parents=True)
    stem = '00022_00193_outdoor_000_010'
    Image.fromarray(np.zeros((768, 1024, 3), np.uint8)).save(scan / f'{stem}.png')
    np.save(scan / f'{stem}_depth.npy', np.full((768, 1024, 1), 42.0, np.float32))
    mask = np.ones((768, 1024), np.float32)
    mask[:, :10] = 0
    np.save(scan / f'{stem}_depth_mask.npy', mask)
    ds = make_dataset('diode', tmp_path)
    sample = ds[0]
    check_sample(sample, (768, 1024))
    assert not sample['valid'][:, :10].any() and np.all(sample['depth'][:, 10:] == 42.0)
    assert ds.eval_min_depth_m == 0.6 and sample['K'][0, 0] == pytest.approx(886.81)


def test_scannet_resizes_colour_to_depth(tmp_path):
    scene = tmp_path / 'scene0000_00'
    for sub in ('color', 'depth', 'intrinsic'):
        (scene / sub).mkdir(parents=True)
    Image.fromarray(np.full((968, 1296, 3), 100, np.uint8)).save(scene / 'color' / '0.jpg')
    Image.fromarray(np.full((480, 640), 1500, np.uint16)).save(scene / 'depth' / '0.png')
    np.savetxt(scene / 'intrinsic' / 'intrinsic_depth.txt',
               [[577.5, 0, 319.5, 0], [0, 578.5, 239.5, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    sample = make_dataset('scannet', tmp_path)[0]
    check_sample(sample, (480, 640))
    assert np.all(sample['depth'] == 1.5) and sample['K'][1, 1] == 578.5


# --- errors a user can cause ---------------------------------------------------------------
def test_errors_name_the_file(sample_frames, tmp_path):
    with pytest.raises(FileNotFoundError, match=r'tum: dataset root .*nowhere is not a dir'):
        make_dataset('tum', tmp_path / 'nowhere')
    with pytest.raises(ValueError, match='unknown dataset .nyu.; choose one of'):
        dataset_class('nyu')
    with pytest.raises(FileNotFoundError, match='split file .*missing.txt does not exist'):
        make_dataset('redwood', sample_frames, split=tmp_path / 'missing.txt')
    split = tmp_path / 'split.txt'
    split.write_text('# comment\nrgb/00000.jpg\n')
    with pytest.raises(ValueError, match=r'split.txt:2: expected 2 columns'):
        make_dataset('redwood', sample_frames, split=split)
    split.write_text('rgb/00000.jpg depth/00009.png\n')
    with pytest.raises(FileNotFoundError, match=r'depth/00009.png: no such file'):
        make_dataset('redwood', sample_frames, split=split)[0]
    for sub in ('rgb', 'depth'):
        (tmp_path / 'rec' / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'rec' / 'rgb' / 'a.png')
    (tmp_path / 'rec' / 'depth' / 'a.png').write_bytes(b'not a png')
    ds = make_dataset('redwood', tmp_path / 'rec')
    with pytest.raises(ValueError, match=r'depth/a.png: not a readable depth image'):
        ds[0]
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / 'rec' / 'depth' / 'a.png')
    with pytest.raises(ValueError, match=r'a.png: expected a 16-bit single-channel depth image'):
        ds[0]
    Image.fromarray(np.zeros((4, 8), np.uint16)).save(tmp_path / 'rec' / 'depth' / 'a.png')
    with pytest.raises(ValueError, match=r'depth is 8x4 but its image .*a.png is 8x8'):
        ds[0]
    (tmp_path / 'rec' / 'intrinsics.json').write_text(json.dumps({'fx': 1}))
    with pytest.raises(ValueError, match=r'intrinsics.json: expected JSON with numbers'):
        make_dataset('redwood', tmp_path / 'rec')
    with pytest.raises(FileNotFoundError, match='no frames found'):
        make_dataset('nyuv2', tmp_path / 'rec')
