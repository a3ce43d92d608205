"""sensor_msgs <-> numpy conversions, cloud packing and latency planning (no ROS graph)."""
import io

import numpy as np
from PIL import Image as PILImage
import pytest
from sensor_msgs.msg import CompressedImage

from metricgold_core.geometry import backproject, make_K
from metricgold_core.ply import pack_rgb_float
from metricgold_ros.conversions import array_to_image, BadInput, camera_model_from_info
from metricgold_ros.conversions import CameraModel, compressed_to_rgb8, fallback_camera_model
from metricgold_ros.conversions import image_to_array, image_to_rgb8, scaled_camera_info
from metricgold_ros.latency import candidate_resolutions, LatencyPlanner
from metricgold_ros.pointcloud import CloudPacker, unpack_cloud
from node_harness import camera_info_msg, colours_match, image_msg

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
INTR = {'width': 10, 'height': 12, 'fx': 9.0, 'fy': 8.0, 'cx': 4.6, 'cy': 5.4}


@pytest.mark.parametrize('pad', [0, 7])
@pytest.mark.parametrize('encoding,make', [
    ('rgb8', lambda rgb: rgb),
    ('bgr8', lambda rgb: rgb[..., ::-1]),
    ('8UC3', lambda rgb: rgb[..., ::-1]),
    ('rgba8', lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 9, np.uint8)], 2)),
    ('bgra8', lambda rgb: np.concatenate([rgb[..., ::-1], np.zeros(rgb.shape[:2] + (1,),
                                                                   np.uint8)], 2)),
])
def test_colour_encodings_give_rgb_and_skip_row_padding(encoding, make, pad):
    msg = image_msg(make(RGB), encoding, 0, pad=pad)
    assert msg.step == RGB.shape[1] * (4 if 'a' in encoding else 3) + pad
    np.testing.assert_array_equal(image_to_rgb8(msg), RGB)


@pytest.mark.parametrize('encoding', ['mono8', '8UC1'])
def test_mono8_is_replicated_to_grey_rgb(encoding):
    gray = RGB[..., 0]
    out = image_to_rgb8(image_msg(gray, encoding, 0, pad=3))
    assert out.shape == (12, 10, 3)
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize('bigendian', [False, True])
@pytest.mark.parametrize('encoding', ['mono16', '16UC1'])
def test_mono16_honours_endianness_and_scales_min_to_max(encoding, bigendian):
    gray = (RNG.integers(0, 4096, (12, 10))).astype(np.uint16)   # 12-bit IR-like
    gray[0, 0], gray[0, 1] = 100, 4000
    msg = image_msg(gray, encoding, 0, pad=2, bigendian=bigendian)
    np.testing.assert_array_equal(image_to_array(msg)[..., 0], gray)
    out = image_to_rgb8(msg)
    expected = ((gray.astype(np.float32) - gray.min()) * 255.0 / (gray.max() - gray.min()) + 0.5)
    np.testing.assert_array_equal(out[..., 1], expected.astype(np.uint8))
    assert out[..., 0].min() == 0 and out[..., 0].max() == 255


def test_float_intensity_with_nan_or_inf_is_refused():
    values = RNG.random((12, 10)).astype(np.float32)
    assert image_to_rgb8(image_msg(values, '32FC1', 0)).shape == (12, 10, 3)
    for bad in (np.nan, np.inf):
        values[3, 3] = bad
        with pytest.raises(BadInput) as info:
            image_to_rgb8(image_msg(values, '32FC1', 0))
        assert info.value.kind == 'nonfinite'


@pytest.mark.parametrize('mutate,kind', [
    (lambda m: setattr(m, 'encoding', 'nv24'), 'encoding'),
    (lambda m: setattr(m, 'encoding', ''), 'encoding'),
    (lambda m: setattr(m, 'data', bytes(m.data)[:-1]), 'data'),
    (lambda m: setattr(m, 'step', 29), 'size'),   # < width x 3
    (lambda m: (setattr(m, 'height', 0), setattr(m, 'data', b'')), 'size'),
    (lambda m: setattr(m, 'width', 0), 'size'),
    (lambda m: (setattr(m, 'width', 100000), setattr(m, 'step', 300000)), 'size'),
    (lambda m: setattr(m, 'height', 5000), 'data'),   # claims more rows than it carries
])
def test_malformed_images_raise_bad_input_with_a_kind(mutate, kind):
    msg = image_msg(RGB, 'rgb8', 0)
    mutate(msg)
    with pytest.raises(BadInput) as info:
        image_to_rgb8(msg)
    assert info.value.kind == kind
    assert str(info.value)


def test_odd_step_for_16_bit_is_refused():
    msg = image_msg(RGB[..., 0].astype(np.uint16), 'mono16', 0, pad=1)
    with pytest.raises(BadInput, match='multiple'):
        image_to_rgb8(msg)


@pytest.mark.parametrize('fmt,pil_format', [('jpeg', 'JPEG'), ('png', 'PNG'),
                                            ('rgb8; jpeg compressed bgr8', 'JPEG')])
def test_compressed_images_decode_to_rgb(fmt, pil_format):
    yy, xx = np.mgrid[0:48, 0:40]   # smooth, as camera images are: JPEG keeps it close
    big = np.stack([xx * 6, yy * 5, 255 - xx * 3], axis=-1).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(big).save(buf, format=pil_format, quality=98)
    msg = CompressedImage(format=fmt, data=buf.getvalue())
    out = compressed_to_rgb8(msg)
    assert out.shape == big.shape and out.dtype == np.uint8
    if pil_format == 'PNG':
        np.testing.assert_array_equal(out, big)
    else:   # lossy: what a decoder makes of the bytes, and close to the original
        np.testing.assert_array_equal(out, np.asarray(PILImage.open(buf).convert('RGB')))
        assert np.abs(out.astype(int) - big).mean() < 3


@pytest.mark.parametrize('data,fmt,kind', [(b'\xff\xd8\xff\xe0garbage', 'jpeg', 'decode'),
                                           (b'', 'png', 'decode'),
                                           (b'abc', 'theora', 'encoding')])
def test_corrupt_or_unknown_compressed_images_raise(data, fmt, kind):
    with pytest.raises(BadInput) as info:
        compressed_to_rgb8(CompressedImage(format=fmt, data=data))
    assert info.value.kind == kind


def test_depth_and_bgr_images_round_trip_with_header():
    depth = RNG.random((12, 10)).astype(np.float32)
    depth[2, 2] = np.nan
    header = image_msg(RGB, 'rgb8', 5_000_000_123, frame_id='cam_optical').header
    msg = array_to_image(depth, '32FC1', header)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ('32FC1', 12, 10, 40)
    assert msg.header.frame_id == 'cam_optical' and msg.header.stamp.nanosec == 123
    np.testing.assert_array_equal(image_to_array(msg)[..., 0], depth)
    bgr = array_to_image(RGB[..., ::-1].copy(), 'bgr8', header)
    np.testing.assert_array_equal(image_to_rgb8(bgr), RGB)
    with pytest.raises(ValueError):
        array_to_image(depth.astype(np.float64), '32FC1', header)


def test_camera_model_prefers_p_and_applies_binning_and_roi():
    info = camera_info_msg(INTR, 0)
    info.k = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]   # P must win over K
    assert camera_model_from_info(info) == CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    info.p = [0.0] * 12   # uncalibrated P: fall back to K
    assert camera_model_from_info(info).fx == 1.0
    binned = camera_info_msg({**INTR, 'width': 20, 'height': 24}, 0)
    binned.binning_x = binned.binning_y = 2
    model = camera_model_from_info(binned)
    assert (model.width, model.height, model.fx, model.cx) == (10, 12, 4.5, (4.6 + 0.5) / 2 - 0.5)
    binned.binning_x = binned.binning_y = 0   # 0 means no binning
    binned.roi.x_offset, binned.roi.y_offset, binned.roi.width, binned.roi.height = 4, 2, 8, 6
    model = camera_model_from_info(binned)
    assert (model.width, model.height) == (8, 6)
    assert (model.cx, model.cy) == pytest.approx((0.6, 3.4))


@pytest.mark.parametrize('mutate', [
    lambda m: setattr(m, 'p', [0.0] * 12) or setattr(m, 'k', [0.0] * 9),
    lambda m: setattr(m, 'width', 0),
    lambda m: setattr(m, 'p', [float('nan')] + [0.0] * 11) or setattr(m, 'k', [0.0] * 9),
])
def test_camera_info_without_usable_intrinsics_is_refused(mutate):
    info = camera_info_msg(INTR, 0)
    mutate(info)
    with pytest.raises(BadInput) as err:
        camera_model_from_info(info)
    assert err.value.kind == 'camera_info'


def test_scaled_camera_info_scales_k_and_p_and_keeps_distortion():
    src = camera_info_msg({'width': 640, 'height': 480, 'fx': 500.0, 'fy': 510.0, 'cx': 320.5,
                           'cy': 240.25}, 0)
    src.d = [0.1, -0.2, 0.0, 0.0, 0.01]
    src.p[3] = -50.0   # right camera of a stereo pair: Tx = -fx * baseline
    model = camera_model_from_info(src).scaled(240, 320)
    out = scaled_camera_info(src, model, src.header)
    K = make_K(250.0, 255.0, (320.5 + 0.5) / 2 - 0.5, (240.25 + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(np.reshape(out.k, (3, 3)), K)
    np.testing.assert_allclose(np.reshape(out.p, (3, 4))[:, :3], K)
    assert out.p[3] == -25.0 and list(out.d) == list(src.d)
    assert (out.width, out.height, out.distortion_model) == (320, 240, 'plumb_bob')
    plain = scaled_camera_info(None, fallback_camera_model(480, 640, 90.0), src.header)
    assert plain.k[0] == pytest.approx(320.0) and list(plain.d) == [0.0] * 5


def test_cloud_points_are_depth_backprojected_through_the_model_with_packed_rgb():
    model = CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    depth = (RNG.random((12, 10)) * 5 + 0.5).astype(np.float32)
    depth[1, 2] = np.nan
    packer = CloudPacker()
    header = image_msg(RGB, 'rgb8', 7).header
    msg = packer.to_msg(header, packer.pack(depth, model, RGB))
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (12, 10, 16, 160)
    assert msg.is_dense is False and [f.name for f in msg.fields] == ['x', 'y', 'z', 'rgb']
    fields = unpack_cloud(msg)
    expected = backproject(depth, model.K)
    for i, name in enumerate('xyz'):
        np.testing.assert_allclose(fields[name], expected[..., i], rtol=1e-6, equal_nan=True)
    bits = fields['rgb'].view(np.uint32)
    np.testing.assert_array_equal(bits >> 16, RGB[..., 0])
    np.testing.assert_array_equal((bits >> 8) & 255, RGB[..., 1])
    np.testing.assert_array_equal(bits & 255, RGB[..., 2])
    np.testing.assert_array_equal(fields['rgb'].view(np.uint32),
                                  pack_rgb_float(RGB).view(np.uint32))


def test_cloud_decimation_range_limits_and_ray_cache():
    model = CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    depth = np.linspace(0.5, 6.0, 120, dtype=np.float32).reshape(12, 10)
    packer = CloudPacker()
    pts = packer.pack(depth, model, RGB, decimation=3, min_depth_m=1.0, max_depth_m=5.0)
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
    packer.pack(depth, model, None, decimation=3)
    assert packer.rays_computed == 1
    packer.pack(depth[:6, :8], CameraModel(8, 6, 4.5, 4.0, 3.5, 2.5), None)
    assert packer.rays_computed == 2
    with pytest.raises(ValueError):
        packer.pack(depth, CameraModel(8, 6, 4.5, 4.0, 3.5, 2.5))


def test_candidate_resolutions_descend_to_the_minimum():
    assert candidate_resolutions(256, 128) == [256, 192, 144, 128]
    assert candidate_resolutions(128, 128) == [128]
    assert candidate_resolutions(100, 300) == [100]


def test_planner_prefers_two_steps_then_one_then_smaller_resolution():
    planner = LatencyPlanner(alpha=1.0)
    def hw(res):   # noqa: E306 - a 4:3 image
        return res * 3 // 4, res
    assert planner.choose(100.0, 'auto', 256, 64, hw).predicted_ms is None   # nothing measured
    planner.observe({'total': 60.0, 'denoise': 20.0}, 1, hw(256))   # fixed 40, step 20 ms
    assert planner.predict_ms(2, hw(256)) == pytest.approx(80.0)
    plan = planner.choose(100.0, 'auto', 256, 64, hw)
    assert (plan.steps, plan.processing_resolution) == (2, 256)
    plan = planner.choose(70.0, 'auto', 256, 64, hw)
    assert (plan.steps, plan.processing_resolution) == (1, 256)
    plan = planner.choose(30.0, 'auto', 256, 64, hw)
    assert plan.steps == 1 and plan.processing_resolution < 256 and plan.predicted_ms <= 30.0
    plan = planner.choose(1.0, 'auto', 256, 64, hw)   # nothing fits: the cheapest
    assert (plan.steps, plan.processing_resolution) == (1, 64)
    plan = planner.choose(30.0, '2', 256, 64, hw)   # fixed steps: only resolution adapts
    assert plan.steps == 2 and plan.processing_resolution < 256
    assert planner.choose(1000.0, '1', 256, 64, hw).steps == 1


@pytest.mark.parametrize('log_scale', [True, False])
def test_depth_colorizer_matches_the_core_colour_map(log_scale):
    from metricgold_core.visualize import colorize_depth
    from metricgold_ros.outputs import DepthColorizer

    depth = (np.exp(RNG.random((48, 64)) * 4) * 0.1).astype(np.float32)
    depth[0, :4] = [np.nan, np.inf, 0.0, -1.0]
    out = np.empty((48, 64, 3), np.uint8)
    DepthColorizer()(depth, 0.3, 4.0, log_scale, out=out)
    colours_match(out, colorize_depth(depth, 0.3, 4.0, log_scale=log_scale, bgr=True))
    assert (out[0, :4] == 0).all()


def test_clock_jump_forgets_the_old_future_but_keeps_the_new_stamp():
    from metricgold_ros.frames import CameraInfoCache, InfoEntry
    cache = CameraInfoCache(10)
    model = CameraModel(640, 480, 500.0, 500.0, 319.5, 239.5)
    for stamp in (5_000, 6_000, 7_000):
        cache.add(stamp, InfoEntry(f'old {stamp}', model))
    cache.add(1_000, InfoEntry('new', model))  # camera_info of the first image after the jump
    cache.clear_history(1_000)
    assert cache.wait_for(1_000, 0.0).info == 'new'
    assert cache.wait_for(6_000, 0.0) is None
    assert cache.latest.info == 'new'


def test_a_frame_without_its_camera_info_gets_the_newest_of_its_size():
    from metricgold_ros.frames import CameraInfoCache, InfoEntry
    cache = CameraInfoCache(4)
    vga = CameraModel(640, 480, 500.0, 500.0, 319.5, 239.5)
    qvga = CameraModel(320, 240, 250.0, 250.0, 159.5, 119.5)
    cache.add(1_000, InfoEntry('vga', vga))
    cache.add(2_000, InfoEntry('qvga', qvga))
    assert cache.latest.info == 'qvga'
    assert cache.latest_for(480, 640).info == 'vga'
    assert cache.latest_for(240, 320).info == 'qvga'
    assert cache.latest_for(100, 100).info == 'qvga'   # no such size: the newest of any
    for stamp in range(3_000, 9_000, 1_000):   # the stamp history moves on ...
        cache.add(stamp, InfoEntry(f'qvga {stamp}', qvga))
    cache.clear_history(0)                    # ... and a clock jump empties it
    assert cache.wait_for(1_000, 0.0) is None
    assert cache.latest_for(480, 640).info == 'vga'   # sizes are not forgotten
