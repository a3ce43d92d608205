"""CameraInfo -> CameraModel (P over K, binning, ROI, refusals) and the depth image's
CameraInfo (metricgold_core.ros_format.camera_info, metricgold_ros.outputs)."""
import numpy as np
import pytest

from metricgold_core.camera.geometry import CameraModel, make_K
from metricgold_core.ros_format import BadInput
from metricgold_core.ros_format.camera_info import camera_model_from_info
from metricgold_core.ros_format.camera_info import check_camera_size
from metricgold_core.ros_format.camera_info import fallback_camera_model
from metricgold_ros.outputs import scaled_camera_info
from node_harness import camera_info_msg

INTR = {'width': 10, 'height': 12, 'fx': 9.0, 'fy': 8.0, 'cx': 4.6, 'cy': 5.4}


def test_camera_model_prefers_p_and_applies_binning_and_roi():
    info = camera_info_msg(INTR, 0)
    info.k = [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0]   # P must win over K
    assert camera_model_from_info(info) == CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    info.p = [0.0] * 12   # uncalibrated P: fall back to K
    assert camera_model_from_info(info).fx == 1.0
    binned = camera_info_msg({**INTR, 'width': 20, 'height': 24}, 0)
    binned.binning_x = binned.binning_y = 2
    camera = camera_model_from_info(binned)
    assert (camera.width, camera.height, camera.fx, camera.cx) == (10, 12, 4.5,
                                                                   (4.6 + 0.5) / 2 - 0.5)
    binned.binning_x = binned.binning_y = 0   # 0 means no binning
    binned.roi.x_offset, binned.roi.y_offset, binned.roi.width, binned.roi.height = 4, 2, 8, 6
    camera = camera_model_from_info(binned)
    assert (camera.width, camera.height) == (8, 6)
    assert (camera.cx, camera.cy) == pytest.approx((0.6, 3.4))


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
    camera = camera_model_from_info(src).scaled(240, 320)
    out = scaled_camera_info(src, camera, src.header)
    K = make_K(250.0, 255.0, (320.5 + 0.5) / 2 - 0.5, (240.25 + 0.5) / 2 - 0.5)
    np.testing.assert_allclose(np.reshape(out.k, (3, 3)), K)
    np.testing.assert_allclose(np.reshape(out.p, (3, 4))[:, :3], K)
    assert out.p[3] == -25.0 and list(out.d) == list(src.d)
    assert (out.width, out.height, out.distortion_model) == (320, 240, 'plumb_bob')
    plain = scaled_camera_info(None, fallback_camera_model(480, 640, 90.0), src.header)
    assert plain.k[0] == pytest.approx(320.0) and list(plain.d) == [0.0] * 5


def test_camera_model_from_k_round_trips_k():
    camera = CameraModel.from_K(make_K(9.0, 8.0, 4.6, 5.4), 12, 10)
    assert camera == CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    np.testing.assert_array_equal(camera.K, make_K(9.0, 8.0, 4.6, 5.4))
    assert camera.scaled(12, 10) == camera


def test_a_camera_of_another_size_is_refused_with_its_counter():
    camera = CameraModel(10, 12, 9.0, 8.0, 4.6, 5.4)
    check_camera_size(camera, 12, 10)
    with pytest.raises(BadInput) as err:
        check_camera_size(camera, 24, 20)
    assert err.value.kind == 'camera_info_size' and '10x12' in str(err.value)
