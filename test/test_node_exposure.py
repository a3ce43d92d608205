"""The node on the packaged model while the camera's exposure steps up and down: the published
depth of the same view must stay put (a mapper fuses every frame into one map)."""
import numpy as np
import pytest

from metricgold_core.data import photometric as ph
from metricgold_core.ros_format.images import image_to_array
from node_harness import started_rig

pytestmark = [pytest.mark.ros, pytest.mark.slow]

# The same TUM view filmed with the exposure stepping as auto-exposure does (x0.6 .. x1.5).
GAINS = (1.0, 0.7, 1.0, 1.3, 1.0, 0.6, 1.5, 0.85, 1.15, 1.0)
# Largest change of the published depth's median allowed against the unchanged frame. On this
# view the packaged model moves at most 4.6 % in float32 and 5.2 % in bfloat16 (x1.5, where
# highlights clip; under 1.3 % for the other gains); the model before the exposure
# normalisation moved 25 % (x0.6). scripts/photometric_robustness.py measures the same changes
# on more frames.
MEDIAN_TOLERANCE = 0.07


def test_depth_does_not_follow_exposure_steps(tmp_path, shared_data):
    params = {'checkpoint': '', 'steps': 1, 'max_latency_ms': 20000.0,
              'max_frame_age_ms': 20000.0, 'camera_info_wait_ms': 1000.0, 'torch_threads': 1,
              'publish_points': False}
    with started_rig(tmp_path, params, shared_data / 'real' / 'tum', frames=1) as rig:
        medians = []
        for gain in GAINS:
            pixels = rig.rgbs[0] if gain == 1.0 else ph.exposure(rig.rgbs[0], gain)
            got = rig.roundtrip(pixels, timeout_s=30.0)
            assert got is not None, rig.node.log()
            depth = image_to_array(got['depth'])[..., 0]
            assert np.isfinite(depth).mean() > 0.9
            medians.append(float(np.nanmedian(depth)))
    medians = np.array(medians)
    moves = np.abs(medians / medians[0] - 1.0)
    steps = np.abs(np.diff(np.log(medians)))
    assert moves.max() <= MEDIAN_TOLERANCE, dict(zip(GAINS, medians.round(3)))
    assert steps.max() <= np.log1p(MEDIAN_TOLERANCE), dict(zip(GAINS, medians.round(3)))
