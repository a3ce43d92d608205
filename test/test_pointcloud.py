"""The organized x y z rgb cloud: the one back-projection (metricgold_core.ros_format.clouds),
the node's in-place packer and its PointCloud2 (metricgold_ros.outputs), PLY output."""
import numpy as np
import pytest

from metricgold_core.camera.geometry import CameraModel
from metricgold_core.offline.ply import read_ply, write_ply
from metricgold_core.ros_format.clouds import cloud_xyz_rgb, organized_cloud, pack_rgb_float
from metricgold_ros.outputs import CloudPacker, unpack_cloud
from node_harness import image_msg

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


def test_cloud_points_are_depth_backprojected_through_the_camera_with_packed_rgb():
    camera = CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    depth = (RNG.random((12, 10)) * 5 + 0.5).astype(np.float32)
    depth[1, 2] = np.nan
    packer = CloudPacker()
    header = image_msg(RGB, 'rgb8', 7).header
    msg = packer.to_msg(header, packer.pack(depth, camera, RGB))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (12, 10, 16, 160)
    assert msg.is_dense is False and [f.name for f in msg.fields] == ['x', 'y', 'z', 'rgb']
    fields = unpack_cloud(msg)
    u, v = np.meshgrid(np.arange(10.0), np.arange(12.0))   # x = d (u - cx) / fx, y likewise
    expected = {'x': depth * (u - 4.6) / 9.0, 'y': depth * (v - 5.4) / 8.0, 'z': depth}
    for name in 'xyz':
        np.testing.assert_allclose(fields[name], expected[name], rtol=1e-6, equal_nan=True)
    bits = fields['rgb'].view(np.uint32)
    np.testing.assert_array_equal(bits >> 16, RGB[..., 0])
    np.testing.assert_array_equal((bits >> 8) & 255, RGB[..., 1])
    np.testing.assert_array_equal(bits & 255, RGB[..., 2])
    np.testing.assert_array_equal(fields['rgb'].view(np.uint32),
                                  pack_rgb_float(RGB).view(np.uint32))


def test_cloud_decimation_range_limits_and_ray_cache():
    camera = CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    depth = np.linspace(0.5, 6.0, 120, dtype=np.float32).reshape(12, 10)
    packer = CloudPacker()
    pts = packer.pack(depth, camera, RGB, decimation=3, min_depth_m=1.0, max_depth_m=5.0)
    assert pts.shape == (4, 4, 4)
    sub = depth[::3, ::3]
    keep = (sub >= 1.0) & (sub <= 5.0)
    assert np.isnan(pts[..., 2][~keep]).all()
    np.testing.assert_array_equal(pts[..., 2][keep], sub[keep])
    u, v = np.arange(0, 10, 3), np.arange(0, 12, 3)
    np.testing.assert_allclose(pts[..., 0][keep], (sub * ((u - 4.6) / 9.0)[None, :])[keep],
                               rtol=1e-6)
    np.testing.assert_allclose(pts[..., 1][keep], (sub * ((v - 5.4) / 8.0)[:, None])[keep],
                               rtol=1e-6)
    packer.pack(depth, camera, None, decimation=3)
    assert packer.rays_computed == 1
    packer.pack(depth[:6, :8], CameraModel(8, 6, 4.5, 4.0, 3.5, 2.5), None)
    assert packer.rays_computed == 2
    with pytest.raises(ValueError):
        packer.pack(depth, CameraModel(8, 6, 4.5, 4.0, 3.5, 2.5))


@pytest.mark.parametrize('decimation', [1, 2, 3])
def test_offline_clouds_and_the_node_packer_are_the_same_back_projection(decimation):
    camera = CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    depth = (RNG.random((12, 10)) * 5 + 0.5).astype(np.float32)
    depth[4, 4] = np.nan
    packed = CloudPacker().pack(depth, camera, RGB, decimation, 1.0, 5.0).copy()
    offline = organized_cloud(depth, camera.K, RGB, decimation, 1.0, 5.0)
    np.testing.assert_array_equal(offline.view(np.uint32), packed.view(np.uint32))
    assert np.isnan(offline[..., 2]).any()


def test_a_colour_image_of_another_size_is_sampled_at_the_depth_pixels():
    camera = CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    depth = (RNG.random((12, 10)) * 5 + 0.5).astype(np.float32)
    big = RNG.integers(0, 256, (36, 30, 3), dtype=np.uint8)   # 3x: pixel (v, u) covers 3x3
    expected = big[1::3, 1::3]                                 # the centre of each 3x3 block
    for points in (organized_cloud(depth, camera.K, big),
                   CloudPacker().pack(depth, camera, big)):
        np.testing.assert_array_equal(points[..., 3].view(np.uint32),
                                      pack_rgb_float(expected).view(np.uint32))
    small = RGB[::2, ::2]                                     # 6x5: each covers 2x2 depth pixels
    colours = organized_cloud(depth, camera.K, small)[..., 3]
    np.testing.assert_array_equal(colours.view(np.uint32),
                                  pack_rgb_float(np.repeat(np.repeat(small, 2, 0), 2, 1))
                                  .view(np.uint32))


def test_ply_of_a_cloud_keeps_finite_points_and_their_colour(tmp_path):
    camera = CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    depth = (RNG.random((12, 10)) * 5 + 0.5).astype(np.float32)
    depth[0, :3] = np.nan
    points = organized_cloud(depth, camera.K, RGB)
    count = write_ply(tmp_path / 'cloud.ply', *cloud_xyz_rgb(points))
    assert count == 120 - 3 and [f.name for f in tmp_path.iterdir()] == ['cloud.ply']
    vertices = read_ply(tmp_path / 'cloud.ply')
    keep = np.isfinite(depth).reshape(-1)
    np.testing.assert_array_equal(vertices['z'], depth.reshape(-1)[keep])
    np.testing.assert_array_equal(vertices['red'], RGB[..., 0].reshape(-1)[keep])
    np.testing.assert_array_equal(vertices['blue'], RGB[..., 2].reshape(-1)[keep])


def test_a_packer_reused_across_sizes_and_decimations_packs_every_colour_bit():
    packer = CloudPacker()
    for (h, w), decimation in (((12, 10), 1), ((12, 10), 3), ((7, 9), 2), ((12, 10), 1)):
        camera = CameraModel(w, h, 9.0, 8.0, w / 2, h / 2)
        depth = (RNG.random((h, w)) * 5 + 0.5).astype(np.float32)
        rgb = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
        points = packer.pack(depth, camera, rgb, decimation)
        np.testing.assert_array_equal(points[..., 2], depth[::decimation, ::decimation])
        np.testing.assert_array_equal(
            points[..., 3].view(np.uint32),
            pack_rgb_float(rgb[::decimation, ::decimation]).view(np.uint32))
        assert not (points[..., 3].view(np.uint32) >> 24).any()   # the pad byte stays 0
        blank = packer.pack(depth, camera, None, decimation)
        assert not blank[..., 3].view(np.uint32).any()
