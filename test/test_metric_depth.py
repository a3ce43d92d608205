"""One canonical-focal checkpoint gives the same metres through infer, evaluate, process and the
node: the focal rescale (fx at the processing width / canonical_focal_px) is applied once, by
metricgold_core.metric_depth.estimate_metric_depth."""
import shutil

import numpy as np
import pytest

from metricgold_core.cli import main

RES, CANONICAL_FX = 64, 100.0


@pytest.fixture(scope='module')
def focal_checkpoint(checkpoint_with_meta):
    return checkpoint_with_meta('focal', canonical_focal_px=CANONICAL_FX)


@pytest.fixture(scope='module')
def reference(focal_checkpoint, sample_frames):
    """Core prediction x the focal factor computed here by hand (fx 525 at 640 px)."""
    from metricgold_core.io_utils import read_rgb
    from metricgold_core.model.network import MetricGoldModel
    from metricgold_core.model.pipeline import DepthEstimator

    rgb = read_rgb(sample_frames / 'rgb/00000.jpg')
    est = DepthEstimator(MetricGoldModel.load(focal_checkpoint), device='cpu', dtype='float32')
    pred = est(rgb, steps=1, processing_resolution=RES, seed=0)
    factor = 525.0 * pred.processing_hw[1] / 640 / CANONICAL_FX
    assert factor != pytest.approx(1.0)
    return pred.depth * factor, factor


def test_estimate_metric_depth_applies_the_focal_factor_once(focal_checkpoint, reference,
                                                             sample_frames):
    from metricgold_core.camera.geometry import make_K
    from metricgold_core.io_utils import read_rgb
    from metricgold_core.metric_depth import estimate_metric_depth
    from metricgold_core.model.network import MetricGoldModel
    from metricgold_core.model.pipeline import DepthEstimator

    est = DepthEstimator(MetricGoldModel.load(focal_checkpoint), device='cpu', dtype='float32')
    rgb = read_rgb(sample_frames / 'rgb/00000.jpg')
    for camera in (525.0, make_K(525.0, 525.0, 319.5, 239.5)):
        out = estimate_metric_depth(est, rgb, camera, processing_resolution=RES, seed=0)
        assert out.focal_factor == pytest.approx(reference[1])
        np.testing.assert_allclose(out.depth, reference[0], rtol=1e-5)
    with pytest.raises(ValueError, match='fx'):
        estimate_metric_depth(est, rgb, 0.0, processing_resolution=RES)


def test_infer_evaluate_and_process_give_the_same_metres(focal_checkpoint, reference,
                                                         sample_frames, tmp_path, capsys):
    image = sample_frames / 'rgb/00000.jpg'
    common = ['--checkpoint', str(focal_checkpoint), '--processing-resolution', str(RES),
              '--seed', '0', '--device', 'cpu', '--dtype', 'float32']
    assert main(['infer', *common, '--output', str(tmp_path / 'infer'),
                 '--intrinsics', str(sample_frames / 'intrinsics.json'), str(image)]) == 0
    infer = np.load(tmp_path / 'infer/00000_depth.npy')
    np.testing.assert_allclose(infer, reference[0], rtol=1e-4)

    assert main(['evaluate', *common, '--dataset', 'redwood', '--root', str(sample_frames),
                 '--output', str(tmp_path / 'eval'), '--limit', '1', '--save-predictions',
                 '--no-progress']) == 0
    evaluate = np.load(tmp_path / 'eval/predictions/rgb__00000.npy')
    np.testing.assert_allclose(evaluate, reference[0], rtol=1e-4)

    folder = tmp_path / 'frames'
    (folder / 'rgb').mkdir(parents=True)
    shutil.copy(image, folder / 'rgb' / image.name)
    shutil.copy(sample_frames / 'intrinsics.json', folder / 'intrinsics.json')
    assert main(['process', str(folder / 'rgb'), *common, '--output', str(tmp_path / 'proc'),
                 '--cloud-every', '0', '--no-progress']) == 0
    process = np.load(tmp_path / 'proc/depth/00000.npy')
    np.testing.assert_allclose(process, reference[0], rtol=1e-4)


def test_infer_hfov_and_the_stated_fallback(focal_checkpoint, sample_frames, tmp_path, capsys):
    from metricgold_core.camera.geometry import intrinsics_from_hfov
    from metricgold_core.camera.geometry import DEFAULT_FALLBACK_HFOV_DEG

    image = sample_frames / 'rgb/00000.jpg'
    common = ['--checkpoint', str(focal_checkpoint), '--processing-resolution', str(RES),
              '--device', 'cpu', str(image)]
    # --hfov giving fx 525 at 640 px is the same camera as the intrinsics file
    hfov = float(np.degrees(2 * np.arctan(320 / 525.0)))
    assert main(['infer', '--output', str(tmp_path / 'a'), '--hfov', str(hfov), *common]) == 0
    assert 'no camera intrinsics given' not in capsys.readouterr().out
    assert main(['infer', '--output', str(tmp_path / 'b'), *common]) == 0
    said = capsys.readouterr().out
    assert 'no camera intrinsics given' in said and f'{DEFAULT_FALLBACK_HFOV_DEG:g} deg' in said
    a = np.load(tmp_path / 'a/00000_depth.npy')
    b = np.load(tmp_path / 'b/00000_depth.npy')
    fx_fallback = intrinsics_from_hfov(640, 480, DEFAULT_FALLBACK_HFOV_DEG)[0, 0]
    np.testing.assert_allclose(b, a * fx_fallback / 525.0, rtol=1e-4)


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_gives_the_same_metres(focal_checkpoint, reference, sample_frames, tmp_path):
    from metricgold_core.ros_format.images import image_to_array
    from node_harness import camera_info_msg, Client, image_msg, load_sequence, NodeProcess
    from node_harness import pick_domain_id, ros_env, wait_until, write_params

    params = write_params(tmp_path / 'params.yaml', {
        'checkpoint': str(focal_checkpoint), 'steps': '1', 'processing_resolution': RES,
        'min_processing_resolution': RES, 'max_latency_ms': 60000.0,
        'max_frame_age_ms': 60000.0, 'camera_info_wait_ms': 1000.0, 'torch_threads': 1,
        'dtype': 'float32'})   # bfloat16 varies with the thread count
    domain = pick_domain_id()
    node = NodeProcess(params, ros_env(domain), tmp_path / 'node.log')
    client = Client(domain)
    rgbs, intr = load_sequence(sample_frames, 1)
    stamps = iter(range(1_600_000_000 * 10 ** 9, 1_700_000_000 * 10 ** 9, 10 ** 8))
    try:
        def answered():
            stamp = next(stamps)
            client.info_pub.publish(camera_info_msg(intr, stamp))
            msg = image_msg(rgbs[0], 'rgb8', stamp)
            client.image_pub.publish(msg)
            info = client.wait_output('depth/camera_info', msg.header.stamp, timeout_s=2.0)
            # the first frames may beat the first camera_info (fallback intrinsics): skip them
            if info is None or info.k[0] != pytest.approx(intr['fx']):
                return None
            return client.wait_output('depth', msg.header.stamp, timeout_s=2.0)
        depth_msg = wait_until(answered, 120.0, period_s=0.0)
        assert depth_msg is not None, node.log()
        depth = image_to_array(depth_msg)[..., 0]
        np.testing.assert_allclose(depth, reference[0], rtol=1e-4)
    finally:
        client.close()
        node.stop()
