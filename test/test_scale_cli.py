"""Scale anchors through the CLIs: `metricgold infer --sparse-depth / --camera-height` and the
relative outputs of an affine-invariant checkpoint; `metricgold process --sparse-depth-topic`."""
import json

import numpy as np
from PIL import Image
import pytest

from metricgold_core.cli import main

RES = '64'
IMAGE = 'rgb/00000.jpg'


@pytest.fixture(scope='module')
def relative_checkpoint(checkpoint_with_meta):
    """The tiny checkpoint declared affine-invariant, as a Marigold-style model is."""
    return checkpoint_with_meta('relative', depth_type='affine_invariant')


def infer(checkpoint, out, image, *extra):
    return main(['infer', '--checkpoint', str(checkpoint), '--output', str(out),
                 '--processing-resolution', RES, '--hfov', '60', str(image), *map(str, extra)])


def sample(target, n, seed=0):
    """n pixels of `target` (metres), NaN elsewhere: what a sparse sensor gives."""
    rng = np.random.default_rng(seed)
    out = np.full(target.shape, np.nan, np.float32)
    idx = rng.choice(target.size, n, replace=False)
    out.flat[idx] = target.flat[idx]
    return out


def test_relative_checkpoint_writes_relative_files_and_says_so(tmp_path, relative_checkpoint,
                                                               sample_frames, capsys):
    image = sample_frames / IMAGE
    assert infer(relative_checkpoint, tmp_path, image) == 0
    printed = capsys.readouterr().out
    assert 'relative depth' in printed and '00000_relative.npy' in printed
    rel = np.load(tmp_path / '00000_relative.npy')
    assert rel.shape == (480, 640) and rel.dtype == np.float32
    assert np.nanmin(rel) >= 0.0 and np.nanmax(rel) <= 1.0
    colored = np.asarray(Image.open(tmp_path / '00000_relative_colored.png'))
    assert colored.shape == (480, 640, 3)
    assert not list(tmp_path.glob('*_depth*'))   # nothing is written as metres

    # sparse metres anchor scale and shift: 500 points of a scene 3 x rel + 1.5 m
    target = 3.0 * rel + 1.5
    np.save(tmp_path / 'sparse.npy', sample(target, 500))
    out = tmp_path / 'anchored'
    assert infer(relative_checkpoint, out, image, '--sparse-depth', tmp_path / 'sparse.npy') == 0
    depth = np.load(out / '00000_depth.npy')
    np.testing.assert_allclose(depth, target, rtol=1e-3, atol=1e-3)
    # ground plane needs a metric model: refused before any work
    assert infer(relative_checkpoint, tmp_path / 'g', image, '--camera-height', '1.2') == 2


def test_metric_checkpoint_sparse_depth_png_and_other_grid(tmp_path, tiny_checkpoint,
                                                           sample_frames):
    image = sample_frames / IMAGE
    assert infer(tiny_checkpoint, tmp_path / 'own', image) == 0
    own = np.load(tmp_path / 'own' / '00000_depth.npy')
    # a 16-bit PNG in mm on a 240x320 grid (a ToF camera) of a scene 1.7x the model's metres
    coarse = np.asarray(Image.fromarray(own * 1.7).resize((320, 240), Image.NEAREST))
    mm = np.nan_to_num(sample(coarse, 400, seed=1) * 1000.0, nan=0.0).round().astype(np.uint16)
    Image.fromarray(mm).save(tmp_path / 'tof.png')
    out = tmp_path / 'anchored'
    assert infer(tiny_checkpoint, out, image, '--sparse-depth', tmp_path / 'tof.png',
                 '--scale-correction', 'global') == 0
    ratio = np.load(out / '00000_depth.npy') / own
    assert np.median(ratio) == pytest.approx(1.7, rel=1e-2)
    np.testing.assert_allclose(ratio, np.median(ratio), rtol=1e-4)   # one scale, no shift


def test_bad_sparse_inputs_are_clear_errors(tmp_path, tiny_checkpoint, sample_frames, caplog):
    image = sample_frames / IMAGE
    (tmp_path / 'junk.png').write_bytes(b'not a png')
    assert infer(tiny_checkpoint, tmp_path, image, '--sparse-depth', tmp_path / 'junk.png') == 2
    assert 'cannot read sparse depth' in caplog.text
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / 'eight.png')
    assert infer(tiny_checkpoint, tmp_path, image, '--sparse-depth', tmp_path / 'eight.png') == 2
    assert '16-bit PNG' in caplog.text
    np.save(tmp_path / 'a.npy', np.ones((4, 4), np.float32))
    assert infer(tiny_checkpoint, tmp_path, image, '--sparse-depth', tmp_path / 'a.npy',
                 tmp_path / 'a.npy') == 2   # two files for one image
    assert infer(tiny_checkpoint, tmp_path, image, '--sparse-depth', tmp_path / 'a.npy',
                 '--camera-height', '1.0') == 2
    # garbage values (all NaN / negative / huge): the fit is rejected; waiting for a scale (the
    # default) nothing is written, else the model scale is kept
    for value in (np.nan, -2.0, 1e9):
        np.save(tmp_path / 'g.npy', np.full((48, 64), value, np.float32))
        assert infer(tiny_checkpoint, tmp_path / 'g', image, '--sparse-depth',
                     tmp_path / 'g.npy', '--no-wait-for-scale') == 0
        assert np.isfinite(np.load(tmp_path / 'g' / '00000_depth.npy')).all()
    assert infer(tiny_checkpoint, tmp_path / 'held', image, '--sparse-depth',
                 tmp_path / 'g.npy') == 0
    assert not (tmp_path / 'held' / '00000_depth.npy').exists()
    assert not list(tmp_path.glob('**/.*.tmp'))


# ----------------------------------------------------------------------- process (bags)

def test_process_bag_sparse_topic_anchors_each_frame(tmp_path, tiny_checkpoint,
                                                     frames_K):
    from bag_frames import camera_info, FIRST_STAMP_NS, header, image_msg, PERIOD_NS
    from bag_frames import process, read_bag, TYPES, TYPESTORE, write_bag
    from rosbags.rosbag2 import StoragePlugin, Writer

    frames, K = frames_K
    plain = tmp_path / 'plain'
    assert process(write_bag(tmp_path / 'in0', 'sqlite3', frames_K), '--output', plain,
                   '--checkpoint', tiny_checkpoint, '--cloud-every', '0') == 0
    own = [np.load(plain / 'depth' / f'frame_{i:06d}.npy') for i in range(len(frames))]

    factors = (2.0, 2.0, 0.5, 2.0)   # the true scale of each frame's scene
    bag = tmp_path / 'in'
    with Writer(bag, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        conns = {topic: writer.add_connection(topic, kind, typestore=TYPESTORE) for topic, kind
                 in (('/cam/image_raw', 'sensor_msgs/msg/Image'),
                     ('/cam/camera_info', 'sensor_msgs/msg/CameraInfo'),
                     ('/lidar/depth', 'sensor_msgs/msg/Image'))}
        for i, rgb in enumerate(frames):
            log_ns = FIRST_STAMP_NS + i * PERIOD_NS
            sparse = sample(own[i] * factors[i], 300, seed=i)
            sparse_msg = TYPES['sensor_msgs/msg/Image'](
                header=header(i), height=sparse.shape[0], width=sparse.shape[1],
                encoding='32FC1', is_bigendian=0, step=sparse.shape[1] * 4,
                data=sparse.view(np.uint8).reshape(-1).copy())
            # frame 1's sparse image is recorded after the next image (a slow lidar driver)
            sparse_log = log_ns + (PERIOD_NS + 1000 if i == 1 else 1000)
            for topic, msg, t in (('/cam/camera_info', camera_info(i, K), log_ns),
                                  ('/cam/image_raw', image_msg(i, rgb), log_ns),
                                  ('/lidar/depth', sparse_msg, sparse_log)):
                writer.write(conns[topic], t, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    out = tmp_path / 'out'
    assert process(bag, '--output', out, '--checkpoint', tiny_checkpoint, '--cloud-every', '0',
                   '--sparse-depth-topic', '/lidar/depth') == 0
    for i, factor in enumerate(factors):
        got = np.load(out / 'depth' / f'frame_{i:06d}.npy')
        np.testing.assert_allclose(got / own[i], factor, rtol=1e-3)
    depth_msgs = read_bag(out / 'bag')['/cam/depth']
    assert len(depth_msgs) == len(frames)
    report = json.loads((out / 'process_report.json').read_text())
    assert report['scale']['sparse_depth'] == {'received': 4, 'bad': 0, 'exact': 4,
                                               'newest': 0, 'none': 0}
    assert report['scale']['frames_fitted'] == 4

    # with smoothing, the 0.5 frame is an outlier to the filter: rejected, the scale held
    smooth = tmp_path / 'smooth'
    assert process(bag, '--output', smooth, '--checkpoint', tiny_checkpoint, '--cloud-every',
                   '0', '--sparse-depth-topic', '/lidar/depth', '--scale-smoothing', '0.8') == 0
    got = np.load(smooth / 'depth' / 'frame_000002.npy')
    np.testing.assert_allclose(got / own[2], 2.0, rtol=1e-3)
    report = json.loads((smooth / 'process_report.json').read_text())
    assert report['scale']['rejected'] >= 1

    assert process(bag, '--output', tmp_path / 'x', '--checkpoint', tiny_checkpoint,
                   '--sparse-depth-topic', '/nope') == 2


def test_scale_anchor_arguments_are_checked_the_same_way_by_every_command(tmp_path, caplog):
    from types import SimpleNamespace

    from metricgold_core.commands import scale_anchor_error

    def error(height, sparse=False):
        return scale_anchor_error(SimpleNamespace(camera_height=height), '--sparse-x', sparse)
    assert error(None) is None and error(1.2) is None and error('gt') is None
    assert error('1.5') is None and 'not both' in error(1.2, sparse=True)
    assert '(0, 1000)' in error(0.0) and '(0, 1000)' in error('-2')
    assert 'metres or gt' in error('tall')
    image = tmp_path / 'x.png'
    for argv in (['infer', '--output', str(tmp_path / 'o'), '--camera-height', '0', str(image)],
                 ['process', str(tmp_path), '--output', str(tmp_path / 'p'),
                  '--camera-height', '1', '--sparse-depth-topic', '/s'],
                 ['evaluate', '--dataset', 'procedural', '--output', str(tmp_path / 'e'),
                  '--sparse-points', '10', '--camera-height', 'gt']):
        caplog.clear()
        assert main(argv) == 2, argv
        assert 'camera-height' in caplog.text, argv
