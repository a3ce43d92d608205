"""scale_source odometry in the node process: an oracle model whose output is the true depth of
a procedural trajectory times a wrong scale, fed the trajectory's images and its odometry, gets
the metres back; pure rotation, a static camera and garbage odometry (NaN, 100 m jumps,
out-of-order stamps) never give an accepted fit, a non-finite scale or a crash."""
import itertools
import math

import numpy as np
import pytest

from metricgold_core.camera.poses import interpolate_pose
from metricgold_core.ros_format.images import image_to_array
from node_harness import answering, camera_info_msg, Client, image_msg, NodeProcess
from node_harness import odometry_msg, pick_domain_id, ROOT, ros_env, write_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]
H, W = 120, 160
INJECTED = 0.4            # the oracle model's depth = 0.4 x the truth
STAMPS = itertools.count(1_690_000_000 * 10 ** 9, 100_000_000)   # 10 Hz


class OdomClient(Client):
    def __init__(self, domain_id):
        super().__init__(domain_id)
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        self.odom_pub = self.node.create_publisher(
            Odometry, '/test/odom', QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))


@pytest.fixture(scope='module')
def rig(tmp_path_factory, tiny_checkpoint):
    from metricgold_core.data.trajectory import render_trajectory

    tmp = tmp_path_factory.mktemp('node_odometry')
    seq = render_trajectory(6, H, W, frames=10, fps=10.0)   # indoor, forward
    truth = np.where(seq['valid'], seq['depth'], np.nan).astype(np.float32)
    np.savez(tmp / 'oracle.npz', rgb=seq['rgb'], depth=truth * np.float32(INJECTED))
    params = write_params(tmp / 'params.yaml', {
        'checkpoint': str(tiny_checkpoint), 'steps': '1', 'max_latency_ms': 60000.0,
        'max_frame_age_ms': 60000.0, 'camera_info_wait_ms': 500.0, 'odometry_wait_ms': 500.0,
        'torch_threads': 1, 'scale_source': 'odometry', 'camera_mount': '0 0 0 0 0 0 1',
        'wait_for_scale': False,
        'publish_points': False})
    domain = pick_domain_id()
    node = NodeProcess(params, ros_env(domain), tmp / 'node.log',
                       program=(str(ROOT / 'test' / 'oracle_node.py'), str(tmp / 'oracle.npz')))
    client = OdomClient(domain)
    rig = Rig(node, client, seq, truth)
    with answering(node, client, lambda: rig.send(0, np.eye(4), timeout_s=2.0), 120.0):
        yield rig


class Rig:
    def __init__(self, node, client, seq, truth):
        self.node, self.client, self.seq, self.truth = node, client, seq, truth
        K = seq['K']
        self.intr = {'fx': K[0, 0], 'fy': K[1, 1], 'cx': K[0, 2], 'cy': K[1, 2], 'width': W,
                     'height': H}
        self.last = None   # (stamp, pose) of the odometry sent last

    def send(self, index, pose, stamp=None, odometry=True, timeout_s=30.0):
        """Frame `index` with the camera at `pose`; odometry at the stamp and half a frame
        before it (interpolated), as a 20 Hz odometry would give."""
        stamp = next(STAMPS) if stamp is None else stamp
        if odometry:
            if self.last is not None and self.last[0] < stamp:
                mid = (self.last[0] + stamp) // 2
                self.client.odom_pub.publish(odometry_msg(
                    interpolate_pose(self.last[0], self.last[1], stamp, pose, mid), mid))
            self.client.odom_pub.publish(odometry_msg(pose, stamp))
            self.last = (stamp, pose)
        self.client.info_pub.publish(camera_info_msg(self.intr, stamp))
        msg = image_msg(self.seq['rgb'][index], 'rgb8', stamp)
        self.client.image_pub.publish(msg)
        return self.client.wait_output('depth', msg.header.stamp, timeout_s)

    def diagnostics(self):
        diag = self.client.fresh_diagnostics(10.0)
        assert diag is not None, self.node.log()
        return diag


def accepted(diag):
    return int(diag.get('odometry_fits_accepted', 0))


def test_odometry_recovers_the_injected_scale(rig):
    seq = rig.seq
    for i in range(len(seq['rgb'])):
        out = rig.send(i, seq['poses'][i])
        assert out is not None, rig.node.log()
    depth = image_to_array(out)[..., 0].astype(np.float64)
    ratio = np.nanmedian(depth / rig.truth[-1])
    diag = rig.diagnostics()
    assert accepted(diag) >= 5, diag
    assert diag['scale_source'] == 'odometry' and float(diag['odometry_parallax_px']) >= 1.0
    assert abs(float(diag['scale']) * INJECTED - 1.0) < 0.05, diag
    assert abs(ratio - 1.0) < 0.05, ratio        # the published metres are the truth's
    assert float(diag['scale_fit_ms']) > 0


def test_no_fit_without_translation_or_with_garbage_odometry(rig):
    seq = rig.seq
    before = rig.diagnostics()
    base = seq['poses'][-1]

    def rotated(deg):
        c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
        turn = np.eye(4)
        turn[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
        return base @ turn

    # pure rotation (2 deg a frame about the optical centre), then a static camera
    for k, i in enumerate(range(len(seq['rgb']))):
        assert rig.send(i, rotated(2.0 * k)) is not None, rig.node.log()
    for i in range(4):
        assert rig.send(len(seq['rgb']) - 1, base) is not None, rig.node.log()
    # garbage: NaN poses, 100 m jumps, odometry and images with out-of-order stamps
    nan = base.copy()
    nan[0, 3] = np.nan
    for i in range(3):
        rig.client.odom_pub.publish(odometry_msg(nan, next(STAMPS)))
        jump = base.copy()
        jump[:3, 3] += 100.0 * (i % 2)
        assert rig.send(i, jump) is not None, rig.node.log()
    late = rig.last[0] - 250_000_000
    assert rig.send(2, seq['poses'][2], stamp=late) is not None, rig.node.log()
    assert rig.send(3, seq['poses'][3], stamp=late - 100_000_000) is not None, rig.node.log()

    diag = rig.diagnostics()
    assert rig.node.alive()
    assert accepted(diag) == accepted(before), diag
    assert math.isfinite(float(diag['scale'])) and float(diag['scale']) > 0
    rejected = {k: int(v) for k, v in diag.items() if k.startswith('odometry_rejected_')}
    assert rejected.get('odometry_rejected_parallax', 0) > 0, rejected
    assert int(diag['odometry_refused']) >= 3     # the NaN poses never entered the buffer


def test_wait_for_scale_holds_depth_back_until_a_fit_is_accepted(rig):
    seq = rig.seq
    assert rig.client.set_parameter('wait_for_scale', True).successful
    # a new scale filter and history (the scale parameters changed): no scale yet
    assert rig.client.set_parameter('scale_smoothing', 0.01).successful
    before = rig.diagnostics()
    try:
        outs = [rig.send(0, seq['poses'][0], timeout_s=5.0)]
        assert 'wait_for_scale' in rig.diagnostics()['_message']   # says why nothing comes
        outs += [rig.send(i, seq['poses'][i], timeout_s=5.0) for i in range(1, len(seq['rgb']))]
        out_at = [i for i, out in enumerate(outs) if out is not None]
        assert outs[0] is None, 'a frame without an accepted fit was published'
        assert out_at and out_at == list(range(out_at[0], len(outs))), (out_at, rig.node.log())
        assert len(out_at) >= 5, out_at    # held until the first accepted fit, then every one
        diag = rig.diagnostics()
        held = int(diag['waiting_for_scale']) - int(before.get('waiting_for_scale', 0))
        assert held == out_at[0], (held, out_at)
        assert accepted(diag) > accepted(before)
        assert 'wait_for_scale' not in diag['_message']   # no longer holding
        first = out_at[0]
        ratio = np.nanmedian(image_to_array(outs[first])[..., 0] / rig.truth[first])
        assert abs(ratio - 1.0) < 0.1, ratio     # the first frame out is already in metres
        # a source that cannot work (ground_plane without a camera height): held, and said
        assert rig.client.set_parameter('scale_source', 'ground_plane').successful
        assert rig.send(1, seq['poses'][1], timeout_s=5.0) is None
        message = rig.diagnostics()['_message']
        assert 'wait_for_scale' in message and 'camera height' in message, message
    finally:
        rig.client.set_parameter('scale_source', 'odometry')
        rig.client.set_parameter('wait_for_scale', False)
        rig.client.set_parameter('scale_smoothing', 0.0)
