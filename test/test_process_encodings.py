"""`metricgold process` reads raw driver encodings (Bayer, YUYV) from bags with the node's decoder.

The bag frames are made from camera images by the harness's encoders (metricgold_ros.harness);
their depth must be that of the same frames recorded as rgb8.
"""
import numpy as np

from bag_frames import camera_info, FIRST_STAMP_NS, header, HW, PERIOD_NS, process
from bag_frames import read_bag, TYPES, TYPESTORE
from node_harness import abs_rel, mosaic, yuv422

# after bag_frames, which skips this module without rosbags
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: I100

ENCODE = {'rgb8': (lambda rgb: rgb, 3),
          'bayer_rggb8': (lambda rgb: mosaic(rgb, 'rggb'), 1),
          'yuv422_yuy2': (lambda rgb: yuv422(rgb, 'yuyv'), 2)}


def write_raw_bag(path, frames, K, encoding):
    encode, bytes_per_px = ENCODE[encoding]
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        image_conn = writer.add_connection('/cam/image_raw', 'sensor_msgs/msg/Image',
                                           typestore=TYPESTORE)
        info_conn = writer.add_connection('/cam/camera_info', 'sensor_msgs/msg/CameraInfo',
                                          typestore=TYPESTORE)
        for i, rgb in enumerate(frames[:2]):
            image = TYPES['sensor_msgs/msg/Image'](
                header=header(i), height=HW[0], width=HW[1], encoding=encoding, is_bigendian=0,
                step=HW[1] * bytes_per_px, data=np.ascontiguousarray(encode(rgb)).reshape(-1))
            log_ns = FIRST_STAMP_NS + i * PERIOD_NS
            for conn, msg in ((info_conn, camera_info(i, K)), (image_conn, image)):
                writer.write(conn, log_ns, TYPESTORE.serialize_cdr(msg, msg.__msgtype__))
    return path


def test_bags_with_bayer_and_yuyv_images_give_the_rgb8_depth(tmp_path, tiny_checkpoint,
                                                             frames_K):
    frames, K = frames_K
    depths = {}
    for encoding in ENCODE:
        bag = write_raw_bag(tmp_path / f'in_{encoding}', frames, K, encoding)
        out = tmp_path / f'out_{encoding}'
        assert process(bag, '--output', out, '--checkpoint', tiny_checkpoint) == 0
        msgs = read_bag(out / 'bag')['/cam/depth']
        depths[encoding] = [np.frombuffer(m.data.tobytes(), '<f4').reshape(m.height, m.width)
                            for _, _, m in msgs]
        assert len(depths[encoding]) == 2
    for encoding in ('bayer_rggb8', 'yuv422_yuy2'):
        for got, reference in zip(depths[encoding], depths['rgb8']):
            error = abs_rel(got, reference)
            print(f'process {encoding}: depth AbsRel vs rgb8 {error:.5f}')
            assert error < 0.03, (encoding, error)
