"""The node's depth/colored drawing against the core colour map."""
import numpy as np
import pytest

from node_harness import colours_match

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)


@pytest.mark.parametrize('log_scale', [True, False])
def test_depth_colorizer_matches_the_core_colour_map(log_scale):
    from metricgold_core.visualize import colorize_depth
    from metricgold_ros.outputs import DepthColorizer

    depth = (np.exp(RNG.random((48, 64)) * 4) * 0.1).astype(np.float32)
    depth[0, :4] = [np.nan, np.inf, 0.0, -1.0]
    out = np.empty((48, 64, 3), np.uint8)
    DepthColorizer()(depth, 0.3, 4.0, log_scale, out=out)
    colours_match(out, colorize_depth(depth, 0.3, 4.0, log_scale=log_scale, bgr=True))
    assert (out[0, :4] == 0).all()
