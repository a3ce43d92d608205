"""Camera-driver encodings (Bayer, YUV, 16-bit colour) and rectification of raw images.

Every frame here is made from a camera image (the generated sample_frames) by the harness's own
encoders (metricgold_ros.harness.encodings: mosaic by slicing, YUV by the BT.601 formulas,
distortion by the model's own equations inverted in numpy), not by the code under test;
decoding and rectification must give back the original (and the same depth as the original
gives).
"""
from __future__ import annotations

import numpy as np
import pytest

from metricgold_core.camera import rectify
from metricgold_core.ros_format import BadInput
from metricgold_core.ros_format.camera_info import camera_model_from_info
from metricgold_core.ros_format.camera_info import depth_camera_info_fields
from metricgold_core.ros_format.images import image_to_rgb8
from node_harness import abs_rel, camera_info_msg, distort, encoded_image_msg, ENCODERS
from node_harness import EQUIDISTANT, image_msg, load_sequence, mosaic, nv21, PLUMB_BOB
from node_harness import raw_camera_info_msg, to16

cv2 = pytest.importorskip('cv2')


@pytest.fixture(scope='module')
def camera_frame(sample_frames):
    """(rgb uint8 480x640x3, intrinsics) of a textured indoor frame."""
    rgbs, intr = load_sequence(sample_frames, 1)
    return rgbs[0], intr


# Mean |decoded - original| (0..255) allowed: demosaicing and chroma subsampling blur colour
# edges a little; 16-bit colour is exact.
MEAN_TOLERANCE = {'bayer': 4.0, 'yuv': 3.0, 'nv21': 4.0, '16': 0.0}


def tolerance(encoding):
    if encoding.startswith('bayer'):
        return MEAN_TOLERANCE['bayer']
    if encoding == 'nv21':
        return MEAN_TOLERANCE['nv21']
    if encoding.endswith('16'):
        return MEAN_TOLERANCE['16']
    return MEAN_TOLERANCE['yuv']


def interior_error(decoded, rgb):
    """Mean absolute difference away from the 2-px border (demosaicing's edge handling)."""
    return float(np.abs(decoded.astype(np.int32) - rgb)[2:-2, 2:-2].mean())


# ------------------------------------------------------------------ decoding

@pytest.mark.parametrize('encoding', sorted(ENCODERS))
def test_driver_encodings_decode_to_the_rgb8_original(camera_frame, encoding):
    rgb = camera_frame[0]
    pad = 0 if encoding == 'nv21' else 6   # nv21's planes are `step` apart too: tested below
    bigendian = encoding.endswith('16')
    out = image_to_rgb8(encoded_image_msg(rgb, encoding, pad=pad, bigendian=bigendian))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    error = interior_error(out, rgb)
    assert error <= tolerance(encoding), (encoding, error)
    if encoding.startswith('bayer'):   # a wrong pattern swaps red and blue: errors of ~13
        wrong = {'rggb': 'bggr', 'bggr': 'rggb', 'gbrg': 'grbg', 'grbg': 'gbrg'}
        pattern = encoding[6:10]
        source = to16(rgb) if encoding.endswith('16') else rgb
        msg = image_msg(mosaic(source, wrong[pattern]), encoding, 0)
        assert interior_error(image_to_rgb8(msg), rgb) > 3 * error + 3


def test_nv21_rows_are_step_apart_and_16_bit_endianness_is_honoured(camera_frame):
    rgb = camera_frame[0][:64, :80]
    planes = nv21(rgb)
    padded = np.concatenate([planes, np.full((planes.shape[0], 16), 7, np.uint8)], axis=1)
    msg = image_msg(padded, 'nv21', 0)
    msg.width, msg.height = 80, 64   # step 96 > width
    assert interior_error(image_to_rgb8(msg), rgb) <= MEAN_TOLERANCE['nv21'] + 1
    for bigendian in (False, True):
        msg = image_msg(mosaic(to16(rgb), 'rggb'), 'bayer_rggb16', 0, bigendian=bigendian)
        little = image_to_rgb8(image_msg(mosaic(rgb, 'rggb'), 'bayer_rggb8', 0))
        np.testing.assert_array_equal(image_to_rgb8(msg), little)


@pytest.mark.parametrize('encoding', sorted(ENCODERS))
def test_bad_sizes_of_driver_encodings_raise_bad_input(camera_frame, encoding):
    rgb = camera_frame[0][:16, :20]
    cases = []
    short = encoded_image_msg(rgb, encoding)
    short.data = bytes(short.data)[:-1]
    cases.append((short, 'data'))
    narrow = encoded_image_msg(rgb, encoding)
    narrow.step = narrow.step - 1
    cases.append((narrow, 'size'))
    tiny = encoded_image_msg(rgb[:4, :4], encoding)
    cases.append((tiny, 'size'))
    if encoding in ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv', 'nv21'):
        odd = encoded_image_msg(rgb, encoding)
        odd.width = 19   # the data would fit, but chroma is shared by pixel pairs
        cases.append((odd, 'size'))
    if encoding == 'nv21':
        odd = image_msg(np.zeros((24, 20), np.uint8), 'nv21', 0)
        odd.height = 15   # 4:2:0 needs an even height
        cases.append((odd, 'size'))
    for msg, kind in cases:
        with pytest.raises(BadInput) as info:
            image_to_rgb8(msg)
        assert info.value.kind == kind, (encoding, kind, str(info.value))
    odd = encoded_image_msg(rgb, encoding)
    if encoding in ('yuv422', 'yuyv', 'nv21'):
        odd.width = 19
        with pytest.raises(BadInput, match='even'):
            image_to_rgb8(odd)


@pytest.fixture(scope='module')
def estimator(tiny_model):
    from metricgold_core.model.pipeline import DepthEstimator
    return DepthEstimator(tiny_model, device='cpu', dtype='float32')


def test_every_driver_encoding_gives_the_depth_of_the_rgb8_frame(camera_frame, estimator):
    rgb = camera_frame[0]

    def depth(image):
        return estimator(image, steps=1, processing_resolution=128, seed=0).depth
    reference = depth(rgb)
    for encoding in sorted(ENCODERS):
        got = depth(image_to_rgb8(encoded_image_msg(rgb, encoding)))
        error = abs_rel(got, reference)
        print(f'{encoding}: depth AbsRel vs rgb8 {error:.5f}')
        assert error < 0.01, (encoding, error)


# ------------------------------------------------------------------ rectification

@pytest.mark.parametrize('model,D', [('plumb_bob', PLUMB_BOB), ('equidistant', EQUIDISTANT)])
def test_rectification_undoes_a_known_lens_and_reports_the_pinhole_of_p(camera_frame, model, D,
                                                                        estimator):
    rgb, intr = camera_frame
    info = raw_camera_info_msg(intr, model, D)
    K = np.reshape(info.k, (3, 3))
    raw = distort(rgb, K, model, D)
    rectifier = rectify.Rectifier()
    result = rectifier.apply(raw, info, 'auto')
    assert result.status == rectify.RECTIFIED
    inner = (slice(24, -24), slice(32, -32))
    error = np.abs(result.image.astype(int) - rgb)[inner].mean()
    raw_error = np.abs(raw.astype(int) - rgb)[inner].mean()
    print(f'{model}: rectified image |diff| {error:.2f} (raw {raw_error:.2f})')
    assert error < 3.0 and raw_error > 4 * error
    # The outputs' camera_info: K = P, zero d, identity R; the camera model is P's.
    fields = depth_camera_info_fields(result.info, camera_model_from_info(result.info))
    assert fields['distortion_model'] == 'plumb_bob' and fields['d'] == [0.0] * 5
    assert fields['r'] == list(rectify.IDENTITY9)
    np.testing.assert_allclose(np.reshape(fields['k'], (3, 3)),
                               np.reshape(fields['p'], (3, 4))[:, :3])
    np.testing.assert_allclose(fields['p'], info.p)
    # Depth of the rectified raw frame is that of the undistorted one.
    depth = lambda image: estimator(image, steps=1, processing_resolution=128, seed=0).depth  # noqa
    reference = depth(rgb)
    rectified_rel, raw_rel = abs_rel(depth(result.image), reference), abs_rel(depth(raw),
                                                                              reference)
    print(f'{model}: depth AbsRel vs undistorted: rectified {rectified_rel:.4f}, '
          f'unrectified {raw_rel:.4f}')
    assert rectified_rel < 0.02 and rectified_rel < raw_rel
    # Maps are cached per camera_info and recomputed when it changes.
    rectifier.apply(raw, info, 'on')
    assert rectifier.maps_computed == 1
    info.d = list(np.asarray(D) * 0.5)
    rectifier.apply(raw, info, 'auto')
    assert rectifier.maps_computed == 2


def test_rectify_modes_unknown_models_and_undistorted_cameras(camera_frame):
    rgb, intr = camera_frame
    rectifier = rectify.Rectifier()
    plain = camera_info_msg(intr, 0)
    result = rectifier.apply(rgb, plain, 'auto')   # d zero, R identity: nothing to do
    assert result.status == rectify.NOT_NEEDED and result.image is rgb and result.info is plain
    on = rectifier.apply(rgb, plain, 'on')         # forced: identity maps
    assert on.status == rectify.RECTIFIED
    assert np.abs(on.image.astype(int) - rgb).max() <= 1
    distorted = raw_camera_info_msg(intr, 'plumb_bob', PLUMB_BOB)
    off = rectifier.apply(rgb, distorted, 'off')   # as before this feature
    assert off.status == rectify.OFF and off.image is rgb and off.info is distorted
    rotated = camera_info_msg(intr, 0)
    c, s = np.cos(0.01), np.sin(0.01)
    rotated.r = [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0]   # a stereo rectifying rotation
    assert rectify.is_distorted(rotated) and not rectify.is_distorted(plain)
    unknown = raw_camera_info_msg(intr, 'fisheye624', [0.1] * 12)
    result = rectifier.apply(rgb, unknown, 'auto')
    assert result.status == rectify.UNKNOWN_MODEL and result.image is rgb
    assert 'fisheye624' in result.detail
    binned = raw_camera_info_msg(intr, 'plumb_bob', PLUMB_BOB)
    binned.binning_x = binned.binning_y = 2
    assert rectifier.apply(rgb, binned, 'auto').status == rectify.UNSUPPORTED
    with pytest.raises(ValueError):
        rectifier.apply(rgb, plain, 'sometimes')


def test_rational_polynomial_is_rectified_like_plumb_bob_with_zero_extra_terms(camera_frame):
    rgb, intr = camera_frame
    pb = raw_camera_info_msg(intr, 'plumb_bob', PLUMB_BOB)
    rp = raw_camera_info_msg(intr, 'rational_polynomial', PLUMB_BOB + [0.0, 0.0, 0.0])
    raw = distort(rgb, np.reshape(pb.k, (3, 3)), 'plumb_bob', PLUMB_BOB)
    a = rectify.Rectifier().apply(raw, pb).image
    b = rectify.Rectifier().apply(raw, rp).image
    np.testing.assert_array_equal(a, b)
