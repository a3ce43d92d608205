"""The node on a best-effort compressed camera without camera_info, with a checkpoint that has a
canonical focal length: fallback intrinsics, focal rescaling, processing-size outputs.
"""
import io
import itertools
import math

import numpy as np
from PIL import Image as PILImage
import pytest

from metricgold_core.camera.geometry import focal_rescale_factor, intrinsics_from_hfov
from metricgold_core.ros_format import set_stamp
from metricgold_core.ros_format.images import image_to_array
from node_harness import answering, Client, load_sequence, NodeProcess, pick_domain_id
from node_harness import ros_env, wait_until, write_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RES, HFOV, CANONICAL_FX = 128, 70.0, 120.0
STAMPS = itertools.count(1_650_000_000 * 10 ** 9, 50_000_000)


def jpeg_bytes(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format='JPEG', quality=90)
    return buf.getvalue()


@pytest.fixture(scope='module')
def rig(tmp_path_factory, checkpoint_with_meta, sample_frames):
    tmp = tmp_path_factory.mktemp('node_compressed')
    checkpoint = checkpoint_with_meta('focal', canonical_focal_px=CANONICAL_FX)
    params = write_params(tmp / 'params.yaml', {
        'checkpoint': str(checkpoint), 'input_transport': 'compressed', 'steps': '1',
        'processing_resolution': RES, 'depth_resolution': 'processing',
        'fallback_hfov_deg': HFOV, 'max_latency_ms': 20000.0, 'max_frame_age_ms': 20000.0,
        'torch_threads': 1, 'dtype': 'float32'})   # bf16 varies with the thread count
    domain = pick_domain_id()
    node = NodeProcess(params, ros_env(domain), tmp / 'node.log')
    client = Client(domain, camera_reliable=False, compressed=True)
    rgbs, _ = load_sequence(sample_frames, 2)
    with answering(node, client, lambda: roundtrip(client, jpeg_bytes(rgbs[0]), timeout_s=1.0),
                   90.0):
        yield node, client, rgbs, checkpoint


def roundtrip(client, data: bytes, fmt='jpeg', timeout_s=15.0, outputs=('depth',)):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt, data=data)
    set_stamp(msg.header, next(STAMPS))
    msg.header.frame_id = 'redwood_optical'
    client.image_pub.publish(msg)
    got = wait_until(lambda: all(client.by_stamp(n, msg.header.stamp) for n in outputs),
                     timeout_s)
    return {n: client.by_stamp(n, msg.header.stamp) for n in outputs} if got else None


def test_fallback_intrinsics_focal_rescale_and_processing_size(rig):
    node, client, rgbs, checkpoint = rig
    data = jpeg_bytes(rgbs[1])
    out = roundtrip(client, data, outputs=('depth', 'depth/camera_info', 'points'))
    assert out, node.log()
    depth_msg, info = out['depth'], out['depth/camera_info']
    assert depth_msg.header.frame_id == 'redwood_optical'
    assert (depth_msg.height, depth_msg.width) == (96, 128)

    # camera_info: the fallback pinhole, scaled to the depth image.
    K = intrinsics_from_hfov(640, 480, HFOV)
    fx_depth = K[0, 0] * 128 / 640
    assert (info.width, info.height) == (128, 96)
    assert info.k[0] == pytest.approx(fx_depth) and info.p[0] == pytest.approx(fx_depth)
    assert info.p[2] == pytest.approx((K[0, 2] + 0.5) * 0.2 - 0.5)

    # depth = core prediction on the decoded JPEG x f(processing) / f(canonical).
    from metricgold_core.model.network import MetricGoldModel
    from metricgold_core.model.pipeline import DepthEstimator
    est = DepthEstimator(MetricGoldModel.load(checkpoint), device='cpu', dtype='float32')
    decoded = np.asarray(PILImage.open(io.BytesIO(data)).convert('RGB'))
    pred = est(decoded, steps=1, processing_resolution=RES, seed=0,
               match_input_resolution=False)
    factor = focal_rescale_factor(fx_depth, CANONICAL_FX)
    assert factor == pytest.approx(320 / math.tan(math.radians(35)) * 0.2 / 120)   # ~0.76
    np.testing.assert_allclose(image_to_array(depth_msg)[..., 0], pred.depth * factor,
                               rtol=1e-4)
    assert (out['points'].height, out['points'].width) == (96, 128)

    diag = client.fresh_diagnostics()
    assert diag['camera_info_source'] == 'fallback_hfov'
    assert diag['_level'] == 1 and 'fallback_hfov_deg' in diag['_message']
    assert float(diag['focal_rescale']) == pytest.approx(factor, abs=1e-4)
    assert diag['input_reliability'] == 'best_effort'
    assert node.log().count('no camera_info received') == 1   # warned once


def test_png_and_corrupt_compressed_frames(rig):
    node, client, rgbs, _ = rig
    buf = io.BytesIO()
    PILImage.fromarray(rgbs[0]).save(buf, format='PNG')
    assert roundtrip(client, buf.getvalue(), fmt='png')
    data = jpeg_bytes(rgbs[0])
    for bad, fmt in ((data[:200], 'jpeg'), (b'\x00' * 64, 'jpeg'), (data, 'theora')):
        assert roundtrip(client, bad, fmt=fmt, timeout_s=1.0) is None
        assert roundtrip(client, data), 'node stopped answering after a corrupt frame'
    assert node.alive()

    def counted():
        diag = client.latest_diagnostics()
        return diag if int(diag.get('bad_input.decode', 0)) >= 2 else None
    diag = wait_until(counted, 5.0)
    assert diag and int(diag['bad_input.encoding']) >= 1
