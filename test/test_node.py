"""The depth node as a real process: outputs, encodings, bad input, diagnostics, parameters, QoS.

One node process serves the whole module (startup costs ~10 s of imports); tests run in file
order and restore any parameter they change.
"""
import time

import numpy as np
import pytest

from metricgold_core.ros_format import set_stamp
from metricgold_core.ros_format.images import image_to_array
from metricgold_core.visualize import color_range, colorize_depth
from metricgold_ros import dds_profile
from metricgold_ros.outputs import RANGE_SUBSAMPLE
from node_harness import camera_info_msg, check_cloud_matches_depth, colours_match, depth_array
from node_harness import image_msg, STAMPS, started_rig, wait_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

RES = 128
PARAMS = {'processing_resolution': RES, 'min_processing_resolution': 64, 'steps': 2,
          'max_latency_ms': 20000.0, 'max_frame_age_ms': 20000.0, 'publish_uncertainty': True,
          'camera_info_wait_ms': 1000.0, 'torch_threads': 1,
          'dtype': 'float32'}   # bfloat16 varies with the thread count


@pytest.fixture(scope='module')
def rig(tmp_path_factory, tiny_checkpoint, sample_frames):
    with started_rig(tmp_path_factory.mktemp('node'),
                     {**PARAMS, 'checkpoint': str(tiny_checkpoint)}, sample_frames,
                     frames=2, log_tail=4000) as rig:
        yield rig


# ------------------------------------------------------------------ outputs

def test_every_output_carries_the_input_header_and_consistent_values(rig, tiny_checkpoint):
    out = rig.roundtrip(outputs=('depth', 'depth/camera_info', 'points', 'depth/colored',
                                 'depth/uncertainty'))
    assert out, rig.node.log()
    header = out['header']
    for name in ('depth', 'depth/camera_info', 'points', 'depth/colored', 'depth/uncertainty'):
        assert out[name].header.frame_id == header.frame_id == 'camera'
        assert (out[name].header.stamp.sec, out[name].header.stamp.nanosec) == \
            (header.stamp.sec, header.stamp.nanosec)

    depth_msg = out['depth']
    assert (depth_msg.height, depth_msg.width, depth_msg.step) == (480, 640, 640 * 4)
    assert depth_msg.is_bigendian == 0
    depth = depth_array(depth_msg)
    finite = depth[np.isfinite(depth)]
    assert finite.size > 0.9 * depth.size and finite.min() >= 0.1 - 1e-4 and finite.max() <= 100.01

    # The node is a thin shell: same numbers as the core pipeline on the same image and seed.
    from metricgold_core.model.network import MetricGoldModel
    from metricgold_core.model.pipeline import DepthEstimator
    est = DepthEstimator(MetricGoldModel.load(tiny_checkpoint), device='cpu', dtype='float32')
    pred = est(rig.rgbs[0], steps=2, processing_resolution=RES, seed=0, output_uncertainty=True)
    np.testing.assert_allclose(depth, pred.depth, rtol=1e-4, equal_nan=True)
    np.testing.assert_allclose(depth_array(out['depth/uncertainty']), pred.uncertainty,
                               rtol=1e-3, atol=2e-3)

    info = out['depth/camera_info']
    sent = camera_info_msg(rig.intr, 0)
    assert (info.width, info.height) == (640, 480)
    np.testing.assert_allclose(info.k, sent.k)
    np.testing.assert_allclose(info.p, sent.p)

    cloud = out['points']
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (480, 640, 16,
                                                                             640 * 16)
    check_cloud_matches_depth(cloud, depth, info.p, rig.rgbs[0])

    colored = out['depth/colored']
    assert (colored.encoding, colored.height, colored.width) == ('bgr8', 480, 640)
    lo, hi = color_range(depth, 0.0, 0.0, RANGE_SUBSAMPLE)
    colours_match(image_to_array(colored), colorize_depth(depth, lo, hi, bgr=True))


@pytest.mark.parametrize('encoding,make,kw', [
    ('bgr8', lambda rgb: rgb[..., ::-1], {'pad': 64}),
    ('rgba8', lambda rgb: np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)],
                                         axis=2), {}),
    ('mono8', lambda rgb: rgb[..., 1], {'pad': 3}),
    ('mono16', lambda rgb: rgb[..., 1].astype(np.uint16) * 257, {'bigendian': True}),
    ('16UC1', lambda rgb: rgb[..., 1].astype(np.uint16) * 257, {}),
])
def test_input_encodings_reach_the_cloud_with_their_true_colours(rig, encoding, make, kw):
    rgb = rig.rgbs[1]
    out = rig.roundtrip(make(rgb), encoding, outputs=('depth', 'points'), **kw)
    assert out, f'no output for {encoding}'
    if encoding in ('bgr8', 'rgba8'):
        expected = rgb
    elif encoding == 'mono8':
        expected = np.repeat(rgb[..., 1:2], 3, axis=2)
    else:   # 16-bit intensity is stretched min..max to 8 bits
        gray = make(rgb).astype(np.float32)
        lo, hi = float(gray.min()), float(gray.max())
        gray = ((gray - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)
        expected = np.repeat(gray[..., None], 3, axis=2)
    check_cloud_matches_depth(out['points'], depth_array(out['depth']),
                              camera_info_msg(rig.intr, 0).p, expected)


def test_resolution_change_mid_stream_recomputes_rays(rig):
    small = rig.rgbs[1][::2, ::2].copy()   # 320x240 with camera_info scaled to match
    for pixels in (small, rig.rgbs[1]):
        # the camera_info of a new size must be there first: a late one would be replaced by
        # the newest camera_info, of the old size, and the frame dropped
        stamp_ns = next(STAMPS)
        rig.send_info_first(camera_info_msg(rig.intr, stamp_ns, scale=pixels.shape[1] / 640))
        out = rig.roundtrip(pixels, info=None, stamp_ns=stamp_ns,
                            outputs=('depth', 'depth/camera_info', 'points'))
        assert out, (rig.node.log(), rig.client.fresh_diagnostics())
        h, w = pixels.shape[:2]
        assert (out['depth'].height, out['depth'].width) == (h, w)
        assert (out['points'].height, out['points'].width) == (h, w)
        info = out['depth/camera_info']
        assert info.p[0] == pytest.approx(rig.intr['fx'] * w / 640)
        check_cloud_matches_depth(out['points'], depth_array(out['depth']), info.p, pixels)


# ------------------------------------------------------------------ bad input

def bad_images(rig):
    rgb = rig.rgbs[0]
    short = image_msg(rgb, 'rgb8', 0)
    short.data = bytes(short.data)[:-640]
    zero = image_msg(rgb, 'rgb8', 0)
    zero.height, zero.width, zero.step, zero.data = 0, 0, 0, b''
    huge = image_msg(rgb[:8, :8], 'rgb8', 0)
    huge.height, huge.width, huge.step = 100_000, 100_000, 300_000
    nan = rgb[..., 0].astype(np.float32)
    nan[10:20, 10:20] = np.nan
    inf = rgb[..., 0].astype(np.float32)
    inf[0, 0] = np.inf
    return {'encoding': image_msg(rgb, 'nv24', 0), 'data': short, 'size': [zero, huge],
            'nonfinite': [image_msg(nan, '32FC1', 0), image_msg(inf, '32FC1', 0)]}


def test_bad_input_is_dropped_counted_and_the_node_keeps_answering(rig):
    published = int(rig.diagnostics()['frames_published'])
    for kind, msgs in bad_images(rig).items():
        for msg in (msgs if isinstance(msgs, list) else [msgs]):
            stamp_ns = next(STAMPS)
            set_stamp(msg.header, stamp_ns)
            rig.client.info_pub.publish(camera_info_msg(rig.intr, stamp_ns))
            rig.client.image_pub.publish(msg)
            assert rig.roundtrip(), f'node stopped answering after bad {kind}'
            published += 1
            assert rig.client.by_stamp('depth', msg.header.stamp) is None

    # camera_info with zeros: dropped; the frame falls back to the last good intrinsics.
    stamp_ns = next(STAMPS)
    zeros = camera_info_msg(rig.intr, stamp_ns)
    zeros.k, zeros.p = [0.0] * 9, [0.0] * 12
    out = rig.roundtrip(info=zeros, stamp_ns=stamp_ns, outputs=('depth', 'depth/camera_info'))
    assert out and out['depth/camera_info'].k[0] == pytest.approx(rig.intr['fx'])
    # camera_info of another size with the exact stamp: that frame is dropped. (Its image goes
    # out once the node has the camera_info: a camera_info that DDS delivers late would be
    # replaced by the newest one of the image's size, as it should.)
    stamp_ns = next(STAMPS)
    rig.send_info_first(camera_info_msg(rig.intr, stamp_ns, scale=0.5))
    header = rig.send(info=None, stamp_ns=stamp_ns)
    counted = wait_until(
        lambda: int(rig.diagnostics().get('bad_input.camera_info_size', 0)) >= 1, 10.0,
        period_s=0.0)
    assert counted, (rig.client.by_stamp('depth', header.stamp) is not None,
                     rig.client.latest_diagnostics(), rig.node.log())
    # Clock jump: stamps restart in the past (bag loop); the node carries on.
    unmatched = int(rig.diagnostics()['camera_info_unmatched'])
    rig.send_info_first(camera_info_msg(rig.intr, 10 ** 9))
    past = rig.roundtrip(stamp_ns=10 ** 9, info=None)
    assert past, 'no answer after stamps jumped back'
    # paired with its own camera_info, which arrived before the jump was seen
    assert int(rig.diagnostics()['camera_info_unmatched']) == unmatched
    assert rig.client.by_stamp('depth', header.stamp) is None
    assert rig.roundtrip(), 'no answer after a clock jump'
    published += 3   # the frame with the wrong-size camera_info is not published

    diag = rig.diagnostics()
    assert int(diag['frames_published']) >= published
    assert rig.node.alive()
    for kind, count in (('encoding', 1), ('data', 1), ('size', 2), ('nonfinite', 2),
                        ('camera_info', 1), ('camera_info_size', 1)):
        assert int(diag.get(f'bad_input.{kind}', 0)) >= count, (kind, diag)
    assert int(diag['dropped_bad_input']) >= 8
    assert int(diag['stamp_jumps']) >= 1
    assert 'dropped input (encoding)' in rig.node.log()


def test_a_burst_keeps_only_the_newest_frame(rig):
    before = int(rig.diagnostics()['dropped_busy'])
    headers = []
    for _ in range(10):   # 20 Hz: faster than inference, slow enough for DDS to deliver all
        headers.append(rig.send())
        time.sleep(0.05)
    assert rig.client.wait_output('depth', headers[-1].stamp), 'newest frame not processed'
    diag = rig.diagnostics()
    assert int(diag['dropped_busy']) > before
    skipped = [h for h in headers[:-1] if rig.client.by_stamp('depth', h.stamp) is None]
    assert skipped, 'every frame of a burst was processed: no mailbox'


# ------------------------------------------------------------------ diagnostics

def test_diagnostics_report_rates_latency_plan_drops_model_and_device(rig, tiny_checkpoint):
    def healthy():   # a live stream within budget, with camera_info: level OK
        assert rig.roundtrip() and rig.roundtrip()
        diag = rig.diagnostics()
        return diag if diag['_level'] == 0 else None
    diag = wait_until(healthy, 30.0, period_s=0.0)
    assert diag, rig.client.latest_diagnostics()['_message']
    assert diag['_hardware_id'] == diag['device'] == 'cpu'
    assert diag['model'] == str(tiny_checkpoint) and diag['model_preset'] == 'tiny'
    assert diag['steps'] == '2' and diag['processing_resolution'] == str(RES)
    assert diag['processing_size'] == '128x96'
    assert float(diag['input_rate_hz']) > 0 and float(diag['output_rate_hz']) > 0
    p50, p95 = float(diag['latency_p50_ms']), float(diag['latency_p95_ms'])
    assert 0 < p50 <= p95 < PARAMS['max_latency_ms']
    assert float(diag['max_latency_ms']) == PARAMS['max_latency_ms']
    for key in ('dropped_stale', 'dropped_busy', 'dropped_bad_input', 'frames_received',
                'camera_info_source', 'input_reliability', 'dtype', 'focal_rescale'):
        assert key in diag
    # Publishing runs on its own thread: its drops and its last frame's time are reported.
    assert int(diag['dropped_publish']) >= 0 and 0 < float(diag['publish_ms']) < 1e4
    assert diag['camera_info_source'] == 'camera_info' and diag['input_reliability'] == 'reliable'
    assert int(diag['frames_received']) >= int(diag['frames_published'])


# ------------------------------------------------------------------ parameters

def test_parameters_are_described_with_ranges_and_read_only_flags(rig):
    names = ['checkpoint', 'device', 'max_latency_ms', 'points_decimation', 'steps']
    desc = {d.name: d for d in rig.client.describe_parameters(names)}
    assert desc['checkpoint'].read_only and desc['device'].read_only
    assert not desc['max_latency_ms'].read_only and desc['max_latency_ms'].description
    assert desc['max_latency_ms'].floating_point_range[0].from_value == 1.0
    assert desc['points_decimation'].integer_range[0].to_value == 16
    assert desc['steps'].dynamic_typing


@pytest.mark.parametrize('name,value,reason', [
    ('checkpoint', '/elsewhere', 'read-only'), ('device', 'cuda', 'read-only'),
    ('steps', 'three', '`steps`'), ('max_latency_ms', -5.0, ''),
    ('points_decimation', 100, ''), ('colored_min_m', 500.0, '`colored_min_m`'),
    ('depth_resolution', 'huge', '`depth_resolution`'),
])
def test_invalid_or_read_only_changes_are_refused_with_a_reason(rig, name, value, reason):
    if name == 'colored_min_m':
        rig.set('colored_max_m', 10.0)
    try:
        result = rig.client.set_parameter(name, value)
        assert not result.successful and reason in result.reason, result.reason
    finally:
        if name == 'colored_min_m':
            rig.set('colored_max_m', 0.0)


def test_tight_budget_goes_to_one_step_then_smaller_resolution(rig):
    rig.set('steps', 'auto')
    try:
        rig.set('max_latency_ms', 1.0)   # nothing fits: cheapest plan
        assert rig.roundtrip() and rig.roundtrip()
        diag = rig.diagnostics()
        assert (diag['steps'], diag['processing_resolution']) == ('1', '64'), diag
        # everything fits: 2 steps at full resolution, once they have fitted UPGRADE_AFTER
        # frames in a row (the plan does not follow a jittering budget up)
        from metricgold_ros.latency import UPGRADE_AFTER

        rig.set('max_latency_ms', 20000.0)
        changes = int(rig.diagnostics()['plan_changes'])
        assert rig.roundtrip()
        diag = rig.diagnostics()
        assert (diag['steps'], diag['processing_resolution']) == ('1', '64'), diag
        for _ in range(UPGRADE_AFTER - 1):
            assert rig.roundtrip()
        diag = rig.diagnostics()
        assert (diag['steps'], diag['processing_resolution']) == ('2', str(RES)), diag
        assert int(diag['plan_changes']) == changes + 1
        rig.set('steps', 1)   # an integer works as well as a string
        assert rig.roundtrip()
        assert rig.diagnostics()['steps'] == '1'
    finally:
        rig.set('steps', 2)
        rig.set('max_latency_ms', PARAMS['max_latency_ms'])


def test_run_time_changes_of_decimation_colour_range_and_depth_size(rig):
    try:
        rig.set('points_decimation', 4)
        rig.set('colored_min_m', 0.5)
        rig.set('colored_max_m', 5.0)
        out = rig.roundtrip(outputs=('depth', 'points', 'depth/colored'))
        assert (out['points'].height, out['points'].width) == (120, 160)
        depth = depth_array(out['depth'])
        check_cloud_matches_depth(out['points'], depth, camera_info_msg(rig.intr, 0).p,
                                  rig.rgbs[0])
        colours_match(image_to_array(out['depth/colored']),
                      colorize_depth(depth, 0.5, 5.0, bgr=True))
        rig.set('depth_resolution', 'processing')
        out = rig.roundtrip(outputs=('depth', 'depth/camera_info'))
        assert (out['depth'].height, out['depth'].width) == (96, 128)
        info = out['depth/camera_info']
        assert (info.width, info.height) == (128, 96)
        assert info.k[0] == pytest.approx(rig.intr['fx'] * 0.2)
        assert info.p[2] == pytest.approx((rig.intr['cx'] + 0.5) * 0.2 - 0.5)
    finally:
        for name, value in (('points_decimation', 1), ('colored_min_m', 0.0),
                            ('colored_max_m', 0.0), ('depth_resolution', 'input')):
            rig.set(name, value)


# ------------------------------------------------------------------ QoS

def test_a_best_effort_camera_is_matched_without_large_data(rig):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    client = rig.client
    reliable = client.image_pub
    client.image_pub = client.node.create_publisher(
        Image, '/cam/image', QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    try:
        def switched():
            diag = client.latest_diagnostics()
            return diag and diag['input_reliability'] == 'best_effort'
        assert wait_until(switched, 10.0), 'node did not follow the best-effort publisher'
        assert any_answered(rig, 30.0), 'no depth from a best-effort 640x480 camera'
    finally:
        client.node.destroy_publisher(client.image_pub)
        client.image_pub = reliable
    assert wait_until(lambda: client.latest_diagnostics()['input_reliability'] == 'reliable',
                      10.0)
    assert any_answered(rig, 30.0), 'no depth after going back to a reliable camera'


def test_best_effort_subscribers_get_the_full_size_outputs(rig):
    """The node's Fast DDS profile (a 16 MB shared-memory segment) lets a best-effort
    subscriber, RViz' choice for sensor data, take the 1.2 MB depth image and the 4.9 MB cloud
    from the node's reliable publishers; with Fast DDS' 512 KB segment it got none of them."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    assert 'Fast DDS profile: ' + str(dds_profile.PROFILE) in rig.node.log()
    client = rig.client
    diag = client.fresh_diagnostics()
    assert diag['dds_profile'].startswith(str(dds_profile.PROFILE))
    best_effort = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)
    got = {'depth': [], 'points': []}
    subs = [client.node.create_subscription(kind, '/test/' + name,
                                            lambda msg, name=name: got[name].append(msg),
                                            best_effort)
            for name, kind in (('depth', Image), ('points', PointCloud2))]
    try:
        wait_until(lambda: False, 2.0)   # discovery
        sent = []

        def answered():
            sent.append(rig.send())
            return got['depth'] and got['points']
        assert wait_until(answered, 40.0, period_s=1.0), \
            f'best effort: {len(got["depth"])} depth, {len(got["points"])} clouds'
        assert (got['points'][-1].height, got['points'][-1].width) == (480, 640)
        assert len(got['depth'][-1].data) == 480 * 640 * 4
    finally:
        for sub in subs:
            client.node.destroy_subscription(sub)


def any_answered(rig, timeout_s: float) -> bool:
    """Send a frame every 0.5 s until one of them is answered: best-effort transport may lose
    frames, and a loaded machine may answer after the next one is sent."""
    headers = []

    def answered():
        headers.append(rig.send())
        return any(rig.client.by_stamp('depth', h.stamp) for h in headers)
    return bool(wait_until(answered, timeout_s, period_s=0.5))
