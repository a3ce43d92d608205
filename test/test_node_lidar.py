"""The node as a real process with a LiDAR cloud on `sparse_points`: placed by
sparse_points_mount, it anchors the scale as a sparse_depth image does; a cloud in an unknown
frame and a malformed cloud are dropped with a diagnostic, the frame still published."""
import itertools

import numpy as np
import pytest

from metricgold_core.ros_format.images import image_to_array
from node_harness import answering, camera_info_msg, Client, cloud_msg, image_msg
from node_harness import load_sequence, NodeProcess, pick_domain_id, ros_env, wait_until
from node_harness import write_params

pytestmark = [pytest.mark.ros, pytest.mark.slow]
RES = 64
STAMPS = itertools.count(1_690_000_000 * 10 ** 9, 40_000_000)
# The LiDAR frame (x forward, y left, z up) 20 cm right of and 10 cm above the camera.
R_MOUNT = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
T_MOUNT = np.array([0.2, -0.1, 0.0])
MOUNT = '0.2 -0.1 0 0.5 -0.5 0.5 0.5'   # the quaternion of R_MOUNT


class LidarClient(Client):
    OUTPUTS = {**Client.OUTPUTS, 'depth/relative': 'Image'}

    def __init__(self, domain_id):
        super().__init__(domain_id)
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import PointCloud2
        self.cloud_pub = self.node.create_publisher(
            PointCloud2, '/test/sparse_points',
            QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))


class Rig:
    def __init__(self, node, client, rgb, intr):
        self.node, self.client, self.rgb, self.intr = node, client, rgb, intr

    def diag(self, key):
        diag = self.client.latest_diagnostics() or {}
        return int(diag.get(key, 0))

    def send(self, cloud=None, wait='depth', wait_for='sparse_points_received'):
        stamp = next(STAMPS)
        self.client.info_pub.publish(camera_info_msg(self.intr, stamp))
        if cloud is not None:
            before = self.diag(wait_for)
            self.client.cloud_pub.publish(cloud(stamp))
            assert wait_until(lambda: self.diag(wait_for) > before, 30.0), self.node.log()
        msg = image_msg(self.rgb, 'rgb8', stamp)
        self.client.image_pub.publish(msg)
        if wait is None:
            return msg.header
        return self.client.wait_output(wait, msg.header.stamp, 20.0)

    def published(self, header):
        """The frame's depth (or depth/relative before any scale) came out."""
        stamp = header.stamp
        return wait_until(lambda: self.client.by_stamp('depth', stamp) or
                          self.client.by_stamp('depth/relative', stamp), 20.0)

    def set(self, name, value):
        result = self.client.set_parameter(name, value)
        assert result.successful, result.reason


@pytest.fixture(scope='module')
def rig(tmp_path_factory, checkpoint_with_meta, shared_data):
    tmp = tmp_path_factory.mktemp('node_lidar')
    ckpt = checkpoint_with_meta('relative', depth_type='affine_invariant')
    params = write_params(tmp / 'params.yaml', {
        'checkpoint': str(ckpt), 'steps': '1', 'processing_resolution': RES,
        'min_processing_resolution': RES, 'max_latency_ms': 60000.0,
        'max_frame_age_ms': 60000.0, 'camera_info_wait_ms': 500.0,
        'sparse_depth_wait_ms': 500.0, 'torch_threads': 1})
    domain = pick_domain_id()
    node = NodeProcess(params, ros_env(domain), tmp / 'node.log')
    client = LidarClient(domain)
    rgbs, intr = load_sequence(shared_data / 'real' / 'redwood', 1)
    rig = Rig(node, client, rgbs[0], intr)
    with answering(node, client, lambda: rig.send(wait='depth/relative'), 120.0):
        yield rig


def array(msg):
    assert msg.encoding == '32FC1'
    return image_to_array(msg)[..., 0].astype(np.float64)


def lidar_cloud(target, intr, n=600, seed=0, frame_id='velodyne'):
    """Pixels of the metric depth `target` as a LiDAR at the mount would publish them."""
    rng = np.random.default_rng(seed)
    v, u = np.unravel_index(rng.choice(target.size, n, replace=False), target.shape)
    z = target[v, u]
    points_cam = np.stack([(u - intr['cx']) / intr['fx'] * z,
                           (v - intr['cy']) / intr['fy'] * z, z], -1)
    points_lidar = (points_cam - T_MOUNT) @ R_MOUNT   # R^T (p - t)
    return lambda stamp: cloud_msg(points_lidar, stamp, frame_id=frame_id)


def test_a_lidar_cloud_anchors_the_scale_like_a_sparse_depth_image(rig):
    header = rig.send(wait=None)
    relative = array(rig.client.wait_output('depth/relative', header.stamp, 20.0))
    target = 3.0 * relative + 1.0          # metres of this scene, by construction
    rig.set('scale_source', 'sparse_depth')
    rig.set('sparse_points_mount', MOUNT)
    depth_msg = rig.send(lidar_cloud(target, rig.intr))
    assert depth_msg is not None, rig.node.log()
    diag = rig.client.fresh_diagnostics()
    assert diag['sparse_points_transform'] == 'sparse_points_mount'
    assert int(diag['sparse_points_kept']) >= 500 and int(diag['scale_points']) >= 500
    np.testing.assert_allclose(array(depth_msg), target, rtol=1e-2, atol=1e-2)
    assert float(diag['scale']) == pytest.approx(3.0, rel=1e-2)
    assert float(diag['shift']) == pytest.approx(1.0, abs=2e-2)


def test_unknown_frame_and_malformed_clouds_are_dropped_and_said(rig):
    rig.set('scale_source', 'sparse_depth')
    rig.set('sparse_points_mount', '')     # no TF in the test either: the frame is unknown
    target = np.full((480, 640), 4.0)
    header = rig.send(lidar_cloud(target, rig.intr, frame_id='os_lidar'), wait=None,
                      wait_for='bad_input.sparse_points_frame')
    assert rig.published(header), rig.node.log()
    diag = rig.client.fresh_diagnostics()
    assert "frame 'os_lidar' unknown" in diag['_message']
    assert diag['sparse_points_transform'] == 'unknown frame'

    def malformed(stamp):
        msg = lidar_cloud(target, rig.intr)(stamp)
        msg.fields = [f for f in msg.fields if f.name != 'z']
        return msg

    header = rig.send(malformed, wait=None, wait_for='bad_input.sparse_points')
    assert rig.published(header), rig.node.log()
    assert 'no z field' in rig.node.log()
    result = rig.client.set_parameter('sparse_points_mount', '0 0 0 0 0 0 0')
    assert not result.successful and 'must not be zero' in result.reason
    assert rig.node.alive()
