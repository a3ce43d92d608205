"""`metricgold process` on rosbag2 bags (sqlite3 and MCAP), image folders and videos.

Bags are written here with `rosbags` from real RGB frames and their intrinsics, run through the
command, and the output bag is read back with `rosbags` and checked message by message.
"""
import json
import shutil

import numpy as np
from numpy.lib.recfunctions import structured_to_unstructured
from PIL import Image as PILImage
import pytest

from bag_frames import FIRST_STAMP_NS, HW, PERIOD_NS, process, read_bag, write_bag
from metricgold_core.camera.geometry import backproject, intrinsics_from_hfov, make_K
from metricgold_core.camera.geometry import scale_intrinsics
from metricgold_core.offline.ply import read_ply
from metricgold_core.ros_format import stamp_ns

from rosbags.rosbag2 import Reader  # noqa: I100 (after bag_frames, which skips without it)


@pytest.fixture(autouse=True, scope='module')
def one_torch_thread():
    """One intra-op thread: on the shared 2-core CI box two threads spin against other jobs
    and a 64 px inference takes seconds instead of ~0.2 s. Restored for the other modules."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def ply_points(path) -> np.ndarray:
    """(N, 6) float64 x y z r g b of a PLY written by process (metricgold_core.offline.ply)."""
    vertices = read_ply(path)
    assert vertices.dtype.names == ('x', 'y', 'z', 'red', 'green', 'blue')
    return structured_to_unstructured(vertices, np.float64)


def bag_cloud_xyz_rgb(msg) -> tuple:
    """(H, W, 3) xyz and uint8 rgb of a rosbags PointCloud2 in the node's x y z rgb layout."""
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == \
        [('x', 0, 7, 1), ('y', 4, 7, 1), ('z', 8, 7, 1), ('rgb', 12, 7, 1)]
    assert msg.point_step == 16 and msg.row_step == 16 * msg.width
    assert not msg.is_bigendian and not msg.is_dense
    values = np.frombuffer(msg.data.tobytes(), '<f4').reshape(msg.height, msg.width, 4)
    bits = values[..., 3].view('<u4')
    rgb = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1)
    return values[..., :3], rgb.astype(np.uint8)


@pytest.mark.parametrize('storage,depth_resolution',
                         [('sqlite3', 'processing'), ('mcap', 'input')])
def test_bag_gives_depth_info_and_points_topics(tmp_path, tiny_checkpoint, frames_K, storage,
                                                depth_resolution):
    frames, K = frames_K
    bag = write_bag(tmp_path / 'in', storage, frames_K)
    out = tmp_path / 'out'
    status = process(bag, '--output', out, '--checkpoint', tiny_checkpoint, '--cloud-every', 2,
                     '--depth-resolution', depth_resolution)
    assert status == 0
    suffix = {'sqlite3': 'db3', 'mcap': 'mcap'}[storage]
    assert (out / 'bag' / f'bag.{suffix}').exists()   # same storage as the input

    topics = read_bag(out / 'bag')
    assert {t: {m for _, m, _ in v} for t, v in topics.items()} == {
        '/camera/color/depth': {'sensor_msgs/msg/Image'},
        '/camera/color/depth/camera_info': {'sensor_msgs/msg/CameraInfo'},
        '/camera/color/points': {'sensor_msgs/msg/PointCloud2'}}
    depth_hw = HW if depth_resolution == 'input' else (48, 64)   # 64 px long side
    K_depth = scale_intrinsics(K, HW, depth_hw)
    for i, rgb in enumerate(frames):
        (log_d, _, depth_msg), (log_i, _, info), (log_p, _, cloud) = (
            topics[t][i] for t in ('/camera/color/depth', '/camera/color/depth/camera_info',
                                   '/camera/color/points'))
        stamp = FIRST_STAMP_NS + i * PERIOD_NS
        assert [stamp_ns(m.header) for m in (depth_msg, info, cloud)] == [stamp] * 3
        assert {m.header.frame_id for m in (depth_msg, info, cloud)} == \
            {'camera_color_optical_frame'}
        assert log_d == log_i == log_p == stamp + 5_000_000

        assert (depth_msg.encoding, depth_msg.height, depth_msg.width, depth_msg.step) == \
            ('32FC1', depth_hw[0], depth_hw[1], depth_hw[1] * 4)
        depth = np.frombuffer(depth_msg.data.tobytes(), '<f4').reshape(depth_hw)
        np.testing.assert_array_equal(depth, np.load(out / 'depth' / f'frame_{i:06d}.npy'))
        assert np.isfinite(depth).all() and (depth > 0).all()
        png = np.asarray(PILImage.open(out / 'depth' / f'frame_{i:06d}.png'))
        np.testing.assert_array_equal(png, np.round(depth * 1000).astype(np.uint16))

        assert (info.height, info.width) == depth_hw
        P = info.p.reshape(3, 4)
        np.testing.assert_allclose(P[:, :3], K_depth, rtol=1e-12)
        np.testing.assert_allclose(info.k.reshape(3, 3), K_depth, rtol=1e-12)
        np.testing.assert_array_equal(info.d, [0.1, -0.05, 0.0, 0.0, 0.0])
        assert info.distortion_model == 'plumb_bob'

        xyz, colour = bag_cloud_xyz_rgb(cloud)
        assert (cloud.height, cloud.width) == depth_hw
        np.testing.assert_allclose(xyz, backproject(depth, P[:, :3]), rtol=1e-5, atol=0)
        if depth_resolution == 'input':
            np.testing.assert_array_equal(colour, rgb)

    clouds = sorted(p.name for p in (out / 'clouds').iterdir())
    assert clouds == ['frame_000000.ply', 'frame_000002.ply']
    ply = ply_points(out / 'clouds' / 'frame_000002.ply')
    cloud_msg = topics['/camera/color/points'][2][2]
    xyz, colour = bag_cloud_xyz_rgb(cloud_msg)
    np.testing.assert_array_equal(ply[:, :3], xyz.reshape(-1, 3))
    np.testing.assert_array_equal(ply[:, 3:], colour.reshape(-1, 3))

    report = json.loads((out / 'process_report.json').read_text())
    assert (report['kind'], report['inferred'], report['failed']) == ('bag', 4, [])
    assert not list(out.rglob('*.tmp'))


def test_corrupt_compressed_frame_is_reported_and_skipped(tmp_path, tiny_checkpoint,
                                                          frames_K, caplog):
    bag = write_bag(tmp_path / 'in', 'mcap', frames_K, image_topic='/cam/image_raw/compressed',
                    compressed=True, corrupt={1}, info_topic='/cam/camera_info')
    out = tmp_path / 'out'
    status = process(bag, '--output', out, '--checkpoint', tiny_checkpoint, '--cloud-every', 0)
    assert status == 1
    assert 'message 1: cannot decode compressed image' in caplog.text
    assert '1 of 4 frames failed' in caplog.text
    report = json.loads((out / 'process_report.json').read_text())
    assert [f['index'] for f in report['failed']] == [1]
    # The namespace drops the transport suffix; good frames keep their stamps.
    topics = read_bag(out / 'bag')
    assert sorted(topics) == ['/cam/depth', '/cam/depth/camera_info', '/cam/points']
    assert [stamp_ns(m.header) for _, _, m in topics['/cam/depth']] == \
        [FIRST_STAMP_NS + i * PERIOD_NS for i in (0, 2, 3)]
    assert sorted(p.name for p in (out / 'depth').glob('*.npy')) == \
        ['frame_000000.npy', 'frame_000002.npy', 'frame_000003.npy']
    assert not (out / 'clouds').exists()


def test_topic_choice_errors_tell_what_to_pass(tmp_path, frames_K, caplog):
    bag = write_bag(tmp_path / 'in', 'sqlite3', frames_K)
    with Reader(bag) as reader:
        assert len(reader.connections) == 3
    status = process(bag, '--output', tmp_path / 'out', '--image-topic', '/nope')
    assert status == 2
    assert '--image-topic /nope is not an Image or CompressedImage topic' in caplog.text
    assert '/camera/color/image_raw (sensor_msgs/msg/Image)' in caplog.text
    assert process(tmp_path / 'missing', '--output', tmp_path / 'out') == 2
    assert 'does not exist' in caplog.text


def test_a_model_that_cannot_load_stops_the_run_instead_of_failing_each_frame(
        tmp_path, tiny_checkpoint, frames_K, caplog):
    bag = write_bag(tmp_path / 'in', 'mcap', frames_K)
    out = tmp_path / 'out'
    assert process(bag, '--output', out, '--checkpoint', tiny_checkpoint, '--mode', 'fast') == 2
    assert 'cannot load the model' in caplog.text and 'light decoder' in caplog.text
    assert 'skipped frame' not in caplog.text
    assert not (out / 'bag').exists() and not list(out.rglob('*.tmp*'))


def test_image_folder_with_a_corrupt_file(tmp_path, tiny_checkpoint, sample_frames, caplog):
    folder = tmp_path / 'scene' / 'rgb'
    folder.mkdir(parents=True)
    for i in (0, 2):
        shutil.copy(sample_frames / 'rgb' / f'{i:05d}.jpg', folder)
    (folder / 'zz_broken.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    # intrinsics.json beside the rgb folder is found, as in the shared data layout.
    shutil.copy(sample_frames / 'intrinsics.json', tmp_path / 'scene')
    out = tmp_path / 'out'
    status = process(folder, '--output', out, '--checkpoint', tiny_checkpoint,
                     '--cloud-every', 2)
    assert status == 1
    assert 'zz_broken.png: not a readable image' in caplog.text
    assert sorted(p.name for p in (out / 'depth').iterdir()) == \
        ['00000.npy', '00000.png', '00002.npy', '00002.png']
    # Frame indices follow the sorted listing (00000, 00002, zz_broken): every 2nd is index 0.
    assert sorted(p.name for p in (out / 'clouds').iterdir()) == ['00000.ply']
    depth = np.load(out / 'depth' / '00000.npy')
    assert depth.shape == (480, 640) and depth.dtype == np.float32
    ply = ply_points(out / 'clouds' / '00000.ply')
    expected = backproject(depth, make_K(525.0, 525.0, 319.5, 239.5)).reshape(-1, 3)
    np.testing.assert_allclose(ply[:, :3], expected, rtol=1e-5, atol=0)
    with PILImage.open(sample_frames / 'rgb/00000.jpg') as image:
        np.testing.assert_array_equal(ply[:, 3:], np.asarray(image.convert('RGB')).reshape(-1, 3))
    assert not (out / 'bag').exists()


def test_interrupted_run_resumes_to_the_same_outputs(tmp_path, tiny_checkpoint, frames_K,
                                                     monkeypatch):
    from metricgold_core.model.pipeline import DepthEstimator

    bag = write_bag(tmp_path / 'in', 'sqlite3', frames_K)
    reference = tmp_path / 'reference'
    assert process(bag, '--output', reference, '--checkpoint', tiny_checkpoint) == 0

    # Interrupt while the third frame's .npy is half written (Ctrl-C or a kill at that moment).
    out = tmp_path / 'out'
    real_save, saves = np.save, []

    def save_then_interrupt(f, array):
        saves.append(1)
        if len(saves) == 3:
            f.write(b'\x93NUMPY half')
            raise KeyboardInterrupt
        real_save(f, array)

    monkeypatch.setattr(np, 'save', save_then_interrupt)
    assert process(bag, '--output', out, '--checkpoint', tiny_checkpoint) == 130
    monkeypatch.setattr(np, 'save', real_save)
    assert sorted(p.name for p in (out / 'depth').glob('*.npy')) == \
        ['frame_000000.npy', 'frame_000001.npy']
    assert not list(out.rglob('*.tmp')) and not (out / 'bag').exists()
    # What a SIGKILL would leave behind: a temp file and a partial bag.
    (out / 'depth' / '.frame_000003.npy.abc123.tmp').write_bytes(b'junk')
    (out / '.bag.x1y2z3.tmp' / 'metadata.yaml').parent.mkdir()
    (out / '.bag.x1y2z3.tmp' / 'metadata.yaml').write_text('half')

    calls = []
    real_call = DepthEstimator.__call__

    def counting_call(self, *args, **kwargs):
        calls.append(1)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(DepthEstimator, '__call__', counting_call)
    assert process(bag, '--output', out, '--checkpoint', tiny_checkpoint, '--resume') == 0
    assert len(calls) == 2   # frames 0 and 1 were finished
    report = json.loads((out / 'process_report.json').read_text())
    assert (report['inferred'], report['resumed']) == (2, 2)
    for i in range(4):
        name = f'frame_{i:06d}'
        np.testing.assert_array_equal(np.load(out / 'depth' / f'{name}.npy'),
                                      np.load(reference / 'depth' / f'{name}.npy'))
        assert (out / 'depth' / f'{name}.png').read_bytes() == \
            (reference / 'depth' / f'{name}.png').read_bytes()
    assert (out / 'clouds' / 'frame_000000.ply').read_bytes() == \
        (reference / 'clouds' / 'frame_000000.ply').read_bytes()
    got, want = read_bag(out / 'bag'), read_bag(reference / 'bag')
    assert sorted(got) == sorted(want)
    for topic in want:
        assert [(t, repr(m)) for t, _, m in got[topic]] == \
            [(t, repr(m)) for t, _, m in want[topic]]
    assert not list(out.rglob('*.tmp'))


def test_video_file(tmp_path, tiny_checkpoint, frames_K):
    av = pytest.importorskip('av')
    frames, _ = frames_K
    video = tmp_path / 'clip.mp4'
    with av.open(str(video), 'w') as container:
        stream = container.add_stream('mpeg4', rate=10)
        stream.width, stream.height, stream.pix_fmt = HW[1], HW[0], 'yuv420p'
        for rgb in frames[:3]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    out = tmp_path / 'out'
    status = process(video, '--output', out, '--checkpoint', tiny_checkpoint, '--hfov', 70,
                     '--cloud-every', 1)
    assert status == 0
    names = sorted(p.stem for p in (out / 'depth').glob('*.npy'))
    assert names == ['frame_000000', 'frame_000001', 'frame_000002']
    depth = np.load(out / 'depth' / 'frame_000001.npy')
    assert depth.shape == HW
    ply = ply_points(out / 'clouds' / 'frame_000001.ply')
    K = intrinsics_from_hfov(HW[1], HW[0], 70.0)
    np.testing.assert_allclose(ply[:, :3], backproject(depth, K).reshape(-1, 3), rtol=1e-5)
    assert json.loads((out / 'process_report.json').read_text())['kind'] == 'video'
