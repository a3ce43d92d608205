"""A LiDAR cloud as sparse depth: PointCloud2 decoding against the message's layout rules, the
mount, the projection into the camera (z-buffer, parallax occlusion) and bad clouds."""
import math
import time

import numpy as np
import pytest

from metricgold_core import scale
from metricgold_core.camera import poses
from metricgold_core.camera.geometry import CameraModel
from metricgold_core.camera.poses import matrix_quaternion
from metricgold_core.ros_format import BadInput
from metricgold_core.ros_format.clouds import cloud_to_xyz
from metricgold_core.scale import lidar
from metricgold_ros.sparse_points import PointsInput
from node_harness import cloud_msg

CAMERA = CameraModel(320, 240, 220.0, 220.0, 159.5, 119.5)
# The LiDAR's axes (x forward, y left, z up) in the camera's optical frame (x right, y down,
# z forward), tilted 4 degrees down and yawed 2 degrees, right of and above the camera.
AXES = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])


def rot(axis, deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R = np.eye(3)
    R[i, i], R[i, j], R[j, i], R[j, j] = c, -s, s, c
    return R


R_MOUNT = AXES @ rot(1, 4.0) @ rot(2, 2.0)
T_MOUNT = np.array([0.25, -0.15, 0.05])
MOUNT = ' '.join(f'{v:.12g}' for v in [*T_MOUNT, *matrix_quaternion(R_MOUNT)])

# A room in the camera's optical frame: a wall, a floor, a pillar standing on the floor and a
# box in the air (axis-aligned boxes: (min corner, max corner)).
WALL_Z, FLOOR_Y = 6.0, 1.2
BOXES = [((-0.9, -1.0, 2.5), (-0.3, FLOOR_Y, 3.0)), ((0.5, -0.6, 3.0), (1.1, 0.0, 3.5))]


def raycast(origin, dirs):
    """Ray parameter t of the first surface hit along origin + t dirs (N, 3)."""
    origin = np.asarray(origin, float)
    with np.errstate(divide='ignore', invalid='ignore'):
        hits = [np.where(dirs[:, 2] > 0, (WALL_Z - origin[2]) / dirs[:, 2], np.inf),
                np.where(dirs[:, 1] > 0, (FLOOR_Y - origin[1]) / dirs[:, 1], np.inf)]
        for lo, hi in BOXES:
            t0 = (np.asarray(lo) - origin) / dirs
            t1 = (np.asarray(hi) - origin) / dirs
            near = np.nanmax(np.minimum(t0, t1), axis=1)
            far = np.nanmin(np.maximum(t0, t1), axis=1)
            hits.append(np.where((near <= far) & (near > 0), near, np.inf))
    return np.min(hits, axis=0)


def true_depth():
    """The camera's z-depth of the room (every ray has z = 1, so t is z)."""
    v, u = np.mgrid[0:CAMERA.height, 0:CAMERA.width].astype(float)
    dirs = np.stack([(u - CAMERA.cx) / CAMERA.fx, (v - CAMERA.cy) / CAMERA.fy,
                     np.ones_like(u)], -1).reshape(-1, 3)
    return raycast(np.zeros(3), dirs).reshape(v.shape)


def backproject(depth, v, u):
    d = depth[v, u]
    return np.stack([(u - CAMERA.cx) / CAMERA.fx * d, (v - CAMERA.cy) / CAMERA.fy * d, d], -1)


def to_lidar_frame(points_cam):
    return (points_cam - T_MOUNT) @ R_MOUNT   # R^T (p - t), row-wise


def seen_by_lidar(points_cam):
    hit = raycast(T_MOUNT, points_cam - T_MOUNT)
    return hit >= 1.0 - 1e-6


def lidar_scan(rings=32, azimuths=900):
    """Points a spinning LiDAR at the mount measures in the room, in the camera frame."""
    elevation = np.radians(np.linspace(-15.0, 15.0, rings))[:, None]
    azimuth = np.radians(np.linspace(-55.0, 55.0, azimuths))[None, :]
    dirs = np.stack(np.broadcast_arrays(np.cos(elevation) * np.cos(azimuth),
                                        np.cos(elevation) * np.sin(azimuth),
                                        np.sin(elevation)), -1).reshape(-1, 3) @ R_MOUNT.T
    return T_MOUNT + raycast(T_MOUNT, dirs)[:, None] * dirs


def project_message(msg, mount=MOUNT, **kw):
    T = poses.parse_mount(mount)
    return lidar.project_cloud(lidar.transform_points(cloud_to_xyz(msg), T), CAMERA,
                               T[:3, 3], **kw)


# ---------------------------------------------------------------- the registered image's points

@pytest.mark.parametrize('dtype', ['f4', 'f8'])
def test_a_lidar_cloud_projects_to_exactly_the_registered_image_points(dtype):
    depth = true_depth()
    rng = np.random.default_rng(1)
    v, u = np.nonzero(np.isfinite(depth))
    points = backproject(depth, v, u)
    # A LiDAR at the mount measures what it sees of the room: the pixels the camera sees too.
    both = np.flatnonzero(seen_by_lidar(points))
    chosen = rng.choice(both, 3000, replace=False)
    msg = cloud_msg(to_lidar_frame(points[chosen]), dtype=dtype)
    projection = project_message(msg)
    expected = np.full(depth.shape, np.nan)
    expected[v[chosen], u[chosen]] = depth[v[chosen], u[chosen]]
    np.testing.assert_array_equal(np.isfinite(projection.depth_m), np.isfinite(expected))
    np.testing.assert_allclose(projection.depth_m, expected, rtol=1e-6 if dtype == 'f4' else
                               1e-7, equal_nan=True)
    assert projection.kept == 3000 and projection.occluded == 0
    # The test covers the background beside depth edges (pillar, box, floor), within their
    # parallax, where an occlusion test could wrongly drop points.
    import cv2

    log_depth = np.log(depth)
    edges = np.zeros(depth.shape, np.uint8)
    edges[:, 1:] |= np.abs(np.diff(log_depth, axis=1)) > 0.1
    edges[1:, :] |= np.abs(np.diff(log_depth, axis=0)) > 0.1
    near_edge = cv2.dilate(edges, np.ones((21, 21), np.uint8)).astype(bool)
    assert near_edge[v[chosen], u[chosen]].sum() > 300


def test_a_cloud_from_the_camera_centre_keeps_every_nearest_point():
    """No parallax, no occlusion test: any subset of a depth image comes back whole."""
    depth = true_depth()
    rng = np.random.default_rng(2)
    v, u = np.nonzero(np.isfinite(depth))
    chosen = rng.choice(len(v), 5000, replace=False)
    projection = lidar.project_cloud(backproject(depth, v[chosen], u[chosen]), CAMERA)
    assert projection.kept == 5000
    np.testing.assert_allclose(projection.depth_m[v[chosen], u[chosen]],
                               depth[v[chosen], u[chosen]], rtol=1e-6)


def test_points_seen_past_an_object_from_the_lidar_are_dropped():
    """A synthetic box and pillar in front of a wall, scanned by a LiDAR beside the camera:
    the z-buffer alone keeps wall points inside the objects' image; the parallax test drops
    them and keeps what the camera sees."""
    depth = true_depth()
    scan = lidar_scan()
    zbuffer_only = lidar.project_cloud(scan, CAMERA, T_MOUNT, occlusion_gap=0.0)
    projection = lidar.project_cloud(scan, CAMERA, T_MOUNT)

    padded = np.pad(depth, 1, mode='edge')

    def wrong(image):   # kept pixels > 5 % off the camera's depth in all of their 3x3 pixels
        kept = np.isfinite(image)
        error = np.full(image.shape, np.inf)
        for dy in range(3):   # a pixel an edge crosses may hold either side's depth
            for dx in range(3):
                neighbour = padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
                error = np.minimum(error, np.abs(image / neighbour - 1))
        return kept & (error > 0.05), kept

    bad_before, kept_before = wrong(zbuffer_only.depth_m)
    bad_after, kept_after = wrong(projection.depth_m)
    assert bad_before.sum() > 150                      # the artefact is real (233 measured)
    assert bad_after.sum() <= 0.2 * bad_before.sum()    # and mostly gone (26 left)
    good_before = kept_before & ~bad_before
    assert (kept_after & good_before).sum() >= 0.99 * good_before.sum()   # good points stay
    assert projection.occluded >= bad_before.sum() - bad_after.sum()


# ---------------------------------------------------------------- decoding PointCloud2

POINTS = np.array([[1.0, -2.5, 3.25], [np.nan, np.nan, np.nan], [0.125, 1e3, -7.0],
                   [4.0, 5.0, 6.0], [-0.5, 0.25, 9.5], [2.0, 2.0, 2.0]])


@pytest.mark.parametrize('dtype,bigendian,point_pad,row_pad,organised', [
    ('f4', False, 0, 0, None), ('f8', False, 0, 0, None), ('f4', True, 0, 0, None),
    ('f8', True, 3, 5, None), ('f4', False, 4, 0, (2, 3)), ('f8', True, 0, 6, (3, 2))])
def test_decode_follows_the_pointcloud2_layout_rules(dtype, bigendian, point_pad, row_pad,
                                                     organised):
    msg = cloud_msg(POINTS, dtype=dtype, bigendian=bigendian, point_pad=point_pad,
                    row_pad=row_pad, organised=organised)
    xyz = cloud_to_xyz(msg)
    assert xyz.shape == (6, 3) and xyz.dtype == np.float64
    np.testing.assert_array_equal(xyz, POINTS.astype(dtype), strict=False)


def test_decode_reads_rosbags_style_numpy_data():
    msg = cloud_msg(POINTS)
    msg.data = np.frombuffer(bytes(msg.data), np.uint8)
    np.testing.assert_array_equal(cloud_to_xyz(msg), POINTS.astype('f4'))


@pytest.mark.parametrize('change,message', [
    (lambda m: setattr(m, 'data', bytes(m.data)[:-1]), 'data has'),
    (lambda m: setattr(m, 'fields', [f for f in m.fields if f.name != 'z']), 'no z field'),
    (lambda m: setattr(m, 'row_step', m.point_step), 'row_step'),
    (lambda m: setattr(m.fields[3], 'datatype', 5), 'datatype 5'),
    (lambda m: setattr(m.fields[3], 'offset', m.point_step - 2), 'does not fit'),
    (lambda m: setattr(m, 'width', 4_000_000) or setattr(m, 'height', 4), 'more than'),
])
def test_a_malformed_cloud_is_a_clear_bad_input(change, message):
    msg = cloud_msg(POINTS)
    change(msg)
    with pytest.raises(BadInput, match=message) as info:
        cloud_to_xyz(msg)
    assert info.value.kind == 'sparse_points'


# ---------------------------------------------------------------- the mount

def test_mount_string_is_the_cloud_frame_pose_in_the_camera_frame():
    T = poses.parse_mount(MOUNT)
    np.testing.assert_allclose(T[:3, :3], R_MOUNT, atol=1e-9)
    np.testing.assert_allclose(T[:3, 3], T_MOUNT)
    p_lidar = to_lidar_frame(np.array([[0.3, -0.2, 4.0]]))
    np.testing.assert_allclose(lidar.transform_points(p_lidar, T), [[0.3, -0.2, 4.0]])
    # tf2_echo prints 3 decimals: the quaternion is normalised; brackets and commas are fine
    np.testing.assert_allclose(poses.parse_mount('[0, 0, 0], [0.0, 0.0, 0.0, 2.0]'), np.eye(4))
    assert poses.parse_mount('  ') is None


@pytest.mark.parametrize('text,message', [
    ('1 2 3', '7 numbers'), ('0 0 0 0 0 0 1 5', '7 numbers'), ('0 0 x 0 0 0 1', '7 numbers'),
    ('0 0 nan 0 0 0 1', 'finite'), ('0 0 0 0 0 0 inf', 'finite'),
    ('0.1 0 0 0 0 0 0', 'must not be zero')])
def test_a_bad_mount_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        poses.parse_mount(text)


def test_mount_parameter_is_checked_when_set():
    from metricgold_ros.params import normalise, ParameterError

    assert normalise('sparse_points_mount', MOUNT) == MOUNT
    with pytest.raises(ParameterError, match='`sparse_points_mount`.*must not be zero'):
        normalise('sparse_points_mount', '0 0 0 0 0 0 0')


# ---------------------------------------------------------------- placing the cloud

class FakeTF:
    """tf2_ros.Buffer.lookup_transform with one transform at one stamp."""

    def __init__(self, target, source, stamp_ns, T):
        self.key, self.T, self.calls = (target, source, stamp_ns), T, []

    def lookup_transform(self, target, source, time):
        from types import SimpleNamespace as NS

        self.calls.append((target, source, time.nanoseconds))
        if (target, source, time.nanoseconds) != self.key:
            raise LookupError('no transform')
        q = matrix_quaternion(self.T[:3, :3])
        return NS(transform=NS(translation=NS(x=self.T[0, 3], y=self.T[1, 3], z=self.T[2, 3]),
                               rotation=NS(x=q[0], y=q[1], z=q[2], w=q[3])))


def test_clouds_are_placed_by_tf_at_their_stamp_else_by_the_mount():
    points_cam = np.array([[0.3, -0.2, 4.0], [1.0, 0.5, 2.0]])
    msg = cloud_msg(to_lidar_frame(points_cam), stamp_ns=5_000, frame_id='velodyne',
                    dtype='f8')
    T = poses.parse_mount(MOUNT)
    tf = FakeTF('camera_optical', 'velodyne', 5_000, T)
    stamp, entry = PointsInput(tf).to_camera(msg, 'camera_optical', {'sparse_points_mount': ''})
    assert stamp == 5_000 and entry.how == 'tf' and tf.calls == [
        ('camera_optical', 'velodyne', 5_000)]
    np.testing.assert_allclose(entry.points_cam, points_cam, atol=1e-12)
    np.testing.assert_allclose(entry.origin_cam, T_MOUNT)
    # no transform at this stamp: the mount parameter
    msg.header.stamp.nanosec = 6_000
    _, entry = PointsInput(tf).to_camera(msg, 'camera_optical', {'sparse_points_mount': MOUNT})
    assert entry.how == 'sparse_points_mount'
    np.testing.assert_allclose(entry.points_cam, points_cam, atol=1e-12)
    # a cloud in the image's own frame needs neither
    same = cloud_msg(points_cam, frame_id='camera_optical', dtype='f8')
    _, entry = PointsInput(None).to_camera(same, 'camera_optical', {'sparse_points_mount': ''})
    assert entry.how == 'same frame' and entry.origin_cam == (0.0, 0.0, 0.0)


@pytest.mark.parametrize('tf,camera_frame,why', [
    (None, 'camera_optical', 'tf2_ros is not installed'),
    (FakeTF('camera_optical', 'velodyne', 1, np.eye(4)), 'camera_optical', 'TF velodyne ->'),
    (FakeTF('camera_optical', 'velodyne', 1, np.eye(4)), '', 'no image yet')])
def test_a_cloud_in_an_unknown_frame_is_dropped_with_the_reason(tf, camera_frame, why):
    msg = cloud_msg(POINTS, frame_id='velodyne')
    with pytest.raises(BadInput, match=why) as info:
        PointsInput(tf).to_camera(msg, camera_frame, {'sparse_points_mount': ''})
    assert info.value.kind == 'sparse_points_frame'
    assert 'sparse_points_mount' in str(info.value)


# ---------------------------------------------------------------- bad clouds

def test_invalid_behind_and_outside_points_are_dropped_and_counted():
    points = np.array([[np.nan, 0, 1], [0, np.inf, 2], [0, 0, -np.inf], [0, 0, -3.0],
                       [0, 0, 0.0], [1e300, 1e300, 1e-300],          # at the camera plane
                       [1e6, 0, 1.0], [0, -1e9, 2.0], [1e300, 1e300, 1.0],  # outside the image
                       [0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.01, 0.0, 4.0]])  # one pixel
    projection = lidar.project_cloud(points, CAMERA, T_MOUNT)
    assert (projection.points, projection.invalid, projection.behind, projection.outside,
            projection.hidden, projection.kept) == (12, 3, 3, 3, 2, 1)
    assert projection.depth_m[120, 160] == 2.0 and np.isfinite(projection.depth_m).sum() == 1
    assert '1 of 12 points kept' in projection.summary()


@pytest.mark.parametrize('points,kept', [
    (np.empty((0, 3)), 0),                                   # zero points
    (np.array([[0.0, 0.0, 5.0]]), 1),                        # one point
    (np.array([[50.0, 0.0, 1.0], [0.0, -80.0, 2.0]]), 0),    # all outside the image
    (np.array([[0.0, 0.0, -1.0], [0.1, 0.2, -5.0]]), 0),     # all behind the camera
    (np.full((10, 3), np.nan), 0)])
def test_degenerate_clouds_give_an_empty_or_tiny_sparse_image(points, kept):
    projection = lidar.project_cloud(points, CAMERA, T_MOUNT)
    assert projection.kept == kept == np.isfinite(projection.depth_m).sum()
    assert projection.depth_m.shape == (240, 320) and projection.depth_m.dtype == np.float32
    fit = scale.fit_sparse(np.full((240, 320), 3.0, np.float32), projection.depth_m)
    assert not fit.ok and 'valid sparse points' in fit.reason


def test_a_zero_point_cloud_message_decodes_to_no_points():
    msg = cloud_msg(np.empty((0, 3)))
    assert cloud_to_xyz(msg).shape == (0, 3)


def test_100k_points_decode_transform_and_project_in_a_few_ms():
    """A 64-ring scan of the room (102,400 points, float32 on the wire) into a 640x480 image,
    timed against a baseline in the same run: a plain copy decode and the z-buffer-only
    projection (occlusion_gap=0)."""
    scan = lidar_scan(rings=64, azimuths=1600)
    n = len(scan)
    msg = cloud_msg(to_lidar_frame(scan))
    big = CameraModel(640, 480, 440.0, 440.0, 319.5, 239.5)
    T = poses.parse_mount(MOUNT)

    def ours():
        xyz = lidar.transform_points(cloud_to_xyz(msg), T)
        return lidar.project_cloud(xyz, big, T[:3, 3])

    def baseline():
        xyz = np.frombuffer(bytes(msg.data), np.float32).reshape(n, 4)[:, 1:].astype(float)
        return lidar.project_cloud(lidar.transform_points(xyz, T), big, occlusion_gap=0.0).depth_m

    times = {'ours': [], 'baseline': []}
    for _ in range(7):
        for name, run in (('ours', ours), ('baseline', baseline)):
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    print(f'{n} points, 640x480: ours {ms["ours"]:.1f} ms, baseline {ms["baseline"]:.1f} ms '
          f'(median of 7)')
    assert ms['ours'] < max(60.0, 4 * ms['baseline'])   # slack for a shared, loaded CPU
    ref = baseline()
    projection = ours()
    assert projection.points == n and projection.kept > 30_000 and projection.occluded > 0
    # every point we keep is the baseline's nearest point of that pixel
    kept = np.isfinite(projection.depth_m)
    np.testing.assert_allclose(projection.depth_m[kept], ref[kept], rtol=1e-5)
    assert kept.sum() + projection.occluded == np.isfinite(ref).sum()


def test_a_cloud_of_random_points_at_random_depths_still_projects():
    """The occlusion test's worst case (every point has nearer ones all around): bounded."""
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-6, 6, 20_000), rng.uniform(-4, 4, 20_000),
                   rng.uniform(1, 30, 20_000)]
    projection = lidar.project_cloud(points, CAMERA, T_MOUNT)
    assert 0 < projection.kept < projection.points
    assert projection.kept + projection.occluded + projection.hidden + \
        projection.outside == projection.points
