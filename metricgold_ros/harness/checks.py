"""Checks of the node's outputs against what the harness sent: depth, cloud and colours."""
from __future__ import annotations

import numpy as np


def depth_array(msg) -> np.ndarray:
    """(H, W) float32 metres of a 32FC1 depth Image."""
    from metricgold_core.ros_format.images import image_to_array

    assert msg.encoding == '32FC1'
    return image_to_array(msg)[..., 0]


def abs_rel(depth: np.ndarray, reference: np.ndarray) -> float:
    """Mean |depth - reference| / reference over pixels where both are finite and the
    reference positive."""
    valid = np.isfinite(depth) & np.isfinite(reference) & (reference > 0)
    return float(np.mean(np.abs(depth[valid] - reference[valid]) / reference[valid]))


def check_cloud_matches_depth(cloud, depth: np.ndarray, P, rgb: np.ndarray | None = None):
    """Every point is the back-projection of the published depth pixel through P (x y z rgb,
    NaN where the depth is), its colour that pixel's of `rgb` when given."""
    from metricgold_ros.outputs import unpack_cloud

    fields = unpack_cloud(cloud)
    assert [f.name for f in cloud.fields] == ['x', 'y', 'z', 'rgb']
    assert cloud.is_dense is False
    fx, cx, fy, cy = P[0], P[2], P[5], P[6]
    step = depth.shape[1] // cloud.width
    z = depth[::step, ::step]
    v, u = np.mgrid[0:depth.shape[0]:step, 0:depth.shape[1]:step].astype(np.float64)
    valid = np.isfinite(z)
    assert np.isnan(fields['z'][~valid]).all()
    for name, expected in (('x', (u - cx) / fx * z), ('y', (v - cy) / fy * z), ('z', z)):
        np.testing.assert_allclose(fields[name][valid], expected[valid], rtol=1e-5, atol=1e-30)
    if rgb is not None:
        bits = fields['rgb'].view(np.uint32)
        sub = rgb[::step, ::step].astype(np.uint32)
        np.testing.assert_array_equal(bits, (sub[..., 0] << 16) | (sub[..., 1] << 8) | sub[..., 2])


def colours_match(ours: np.ndarray, reference: np.ndarray) -> None:
    """Same turbo colours as the core's colorize_depth, up to float rounding at bin edges."""
    assert ours.shape == reference.shape and ours.dtype == np.uint8
    same = np.all(ours == reference, axis=-1)
    assert same.mean() > 0.999, f'{(~same).sum()} pixels differ'
    assert np.abs(ours.astype(int) - reference).max() <= 24   # at most a neighbouring entry
