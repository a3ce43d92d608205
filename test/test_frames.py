"""Pairing images with camera_info and sparse depth by stamp (metricgold_ros.frames.StampCache)."""
import numpy as np

from metricgold_core.camera.geometry import CameraModel
from metricgold_ros.frames import InfoEntry, SparseEntry, StampCache


def test_clock_jump_forgets_the_old_future_but_keeps_the_new_stamp():
    cache = StampCache(10)
    camera = CameraModel(640, 480, 500.0, 500.0, 319.5, 239.5)
    for stamp in (5_000, 6_000, 7_000):
        cache.add(stamp, InfoEntry(f'old {stamp}', camera))
    cache.add(1_000, InfoEntry('new', camera))  # camera_info of the first image after the jump
    cache.clear_history(1_000)
    assert cache.wait_for(1_000, 0.0).info == 'new'
    assert cache.wait_for(6_000, 0.0) is None
    assert cache.latest.info == 'new'


def test_a_frame_without_its_camera_info_gets_the_newest_of_its_size():
    cache = StampCache(4)
    vga = CameraModel(640, 480, 500.0, 500.0, 319.5, 239.5)
    qvga = CameraModel(320, 240, 250.0, 250.0, 159.5, 119.5)
    cache.add(1_000, InfoEntry('vga', vga))
    cache.add(2_000, InfoEntry('qvga', qvga))
    assert cache.latest.info == 'qvga'
    assert cache.latest_for(480, 640).info == 'vga'
    assert cache.latest_for(240, 320).info == 'qvga'
    assert cache.latest_for(100, 100).info == 'qvga'   # no such size: the newest of any
    for stamp in range(3_000, 9_000, 1_000):   # the stamp history moves on ...
        cache.add(stamp, InfoEntry(f'qvga {stamp}', qvga))
    cache.clear_history(0)                    # ... and a clock jump empties it
    assert cache.wait_for(1_000, 0.0) is None
    assert cache.latest_for(480, 640).info == 'vga'   # sizes are not forgotten


def test_sparse_depth_entries_are_keyed_by_stamp_and_image_size():
    cache = StampCache(10)
    small, large = np.full((6, 8), 2.0, np.float32), np.full((12, 16), 3.0, np.float32)
    cache.add(1_000, SparseEntry(small))
    cache.add(2_000, SparseEntry(large))
    assert SparseEntry(small).size_hw == (6, 8)
    assert cache.wait_for(1_000, 0.0).metres is small
    assert cache.latest.metres is large
    assert cache.latest_for(6, 8).metres is small
