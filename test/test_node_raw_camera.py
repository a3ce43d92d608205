"""The node as a real process fed as a raw camera driver feeds it: Bayer and YUYV frames, and
distorted `image_raw` with its camera_info (rectified as image_proc does; `rectify: off` not).

Frames are built by the harness's own encoders and lens models (metricgold_ros.harness) from a
generated camera image.
"""
import numpy as np
import pytest

from metricgold_core.ros_format import set_stamp
from node_harness import abs_rel, check_cloud_matches_depth, depth_array, distort, EQUIDISTANT
from node_harness import mosaic, PLUMB_BOB, raw_camera_info_msg, STAMPS, started_rig, yuv422

pytestmark = [pytest.mark.ros, pytest.mark.slow]

PARAMS = {'processing_resolution': 128, 'min_processing_resolution': 64, 'steps': 1,
          'max_latency_ms': 20000.0, 'max_frame_age_ms': 20000.0,
          'camera_info_wait_ms': 1000.0, 'torch_threads': 1}
OUTPUTS = ('depth', 'depth/camera_info', 'points')


@pytest.fixture(scope='module')
def rig(tmp_path_factory, tiny_checkpoint, sample_frames):
    with started_rig(tmp_path_factory.mktemp('node_raw'),
                     {**PARAMS, 'checkpoint': str(tiny_checkpoint)}, sample_frames,
                     frames=1) as rig:
        yield rig


@pytest.fixture(scope='module')
def undistorted_depth(rig):
    """The depth of the undistorted frame, taken before any test sent a distorted camera_info:
    a frame whose own camera_info comes late is given the newest one of its size, which after a
    distortion test would be a distorted one (seen once in a full run on a loaded machine)."""
    return depth_array(answer(rig, rig.rgbs[0])['depth'])


def answer(rig, pixels, encoding='rgb8', info='same'):
    out = rig.roundtrip(pixels, encoding, info=info, outputs=OUTPUTS, timeout_s=30.0)
    assert out, rig.node.log()[-3000:]
    return out


def test_bayer_and_yuyv_frames_give_the_depth_of_the_rgb8_frame(rig, undistorted_depth):
    rgb = rig.rgbs[0]
    reference = undistorted_depth
    for encoding, pixels in (('bayer_rggb8', mosaic(rgb, 'rggb')),
                             ('yuv422_yuy2', yuv422(rgb, 'yuyv'))):
        depth = depth_array(answer(rig, pixels, encoding)['depth'])
        error = abs_rel(depth, reference)
        print(f'node {encoding}: depth AbsRel vs rgb8 {error:.5f}')
        assert error < 0.02, (encoding, error)


def send_raw(rig, raw, info):
    """A raw frame with its own camera_info (same stamp), the camera_info delivered first:
    a frame whose camera_info is late would take the newest one (undistorted) instead."""
    stamp = next(STAMPS)
    set_stamp(info.header, stamp)
    rig.send_info_first(info)
    out = rig.roundtrip(raw, 'rgb8', info=None, stamp_ns=stamp, outputs=OUTPUTS,
                        timeout_s=30.0)
    assert out, rig.node.log()[-3000:]
    return out


@pytest.mark.parametrize('model,D', [('plumb_bob', PLUMB_BOB), ('equidistant', EQUIDISTANT)])
def test_distorted_raw_frames_are_rectified_into_the_geometry_of_p(rig, undistorted_depth,
                                                                   model, D):
    rgb = rig.rgbs[0]
    reference = undistorted_depth
    info = raw_camera_info_msg(rig.intr, model, D)
    raw = distort(rgb, np.reshape(info.k, (3, 3)), model, D)
    before = int(rig.diagnostics()['frames_rectified'])
    out = send_raw(rig, raw, info)
    depth = depth_array(out['depth'])
    rectified_rel = abs_rel(depth, reference)
    published = out['depth/camera_info']
    assert published.distortion_model == 'plumb_bob' and list(published.d) == [0.0] * 5
    np.testing.assert_allclose(published.r, np.eye(3).ravel())
    np.testing.assert_allclose(np.reshape(published.k, (3, 3)),
                               np.reshape(published.p, (3, 4))[:, :3])
    np.testing.assert_allclose(published.p, info.p, rtol=1e-9)
    check_cloud_matches_depth(out['points'], depth, list(published.p))
    diag = rig.diagnostics()
    assert int(diag['frames_rectified']) > before and diag['rectify'] == 'rectified', (
        before, {k: diag.get(k) for k in ('rectify', 'frames_rectified', 'frames_published',
                                          'camera_info_source', 'camera_info_unmatched',
                                          'camera_info_received', '_hardware_id')})

    # rectify: off is the behaviour before rectification existed: raw geometry, D passed on.
    rig.set('rectify', 'off')
    try:
        off = send_raw(rig, raw, raw_camera_info_msg(rig.intr, model, D))
    finally:
        rig.set('rectify', 'auto')
    raw_rel = abs_rel(depth_array(off['depth']), reference)
    assert list(off['depth/camera_info'].d) == pytest.approx(D)
    assert off['depth/camera_info'].distortion_model == model
    print(f'node {model}: depth AbsRel vs undistorted: rectified {rectified_rel:.4f}, '
          f'rectify off {raw_rel:.4f}')
    assert rectified_rel < 0.02 and rectified_rel < raw_rel


def test_an_unknown_distortion_model_is_warned_counted_and_not_rectified(rig):
    rgb = rig.rgbs[0]
    info = raw_camera_info_msg(rig.intr, 'fisheye624', [0.05] * 12)
    out = send_raw(rig, rgb, info)
    assert out['depth/camera_info'].distortion_model == 'fisheye624'
    diag = rig.diagnostics()
    assert int(diag['rectify_unknown_model']) >= 1 and diag['_level'] >= 1
    assert "'fisheye624' is not one of" in rig.node.log()
    # A plain camera again (its camera_info delivered first, so the frame cannot take the
    # fisheye one as the newest): no warning left over.
    plain = send_raw(rig, rgb, raw_camera_info_msg(rig.intr, 'plumb_bob', [0.0] * 5))
    assert plain['depth/camera_info'].distortion_model == 'plumb_bob'
    diag = rig.diagnostics()
    assert diag['rectify'] == 'not_needed', (diag, rig.node.log()[-2000:])
