"""LogDepthCodec: paper equation (3), numpy and torch, validity masking."""
import math

import numpy as np
import pytest
import torch

from metricgold_core.model.codec import LogDepthCodec


def test_defaults_are_the_code_release_range():
    codec = LogDepthCodec()
    assert (codec.d_min, codec.d_max) == (0.1, 100.0)


@pytest.mark.parametrize('d_min,d_max', [(0.1, 100.0), (0.5, 80.0), (1e-3, 1e4)])
def test_round_trip_numpy_and_torch(d_min, d_max):
    codec = LogDepthCodec(d_min, d_max)
    depth = np.geomspace(d_min, d_max, 1001).astype(np.float64)
    code, valid = codec.encode(depth)
    assert valid.all()
    np.testing.assert_allclose(codec.decode(code), depth, rtol=1e-12)
    code_t, valid_t = codec.encode(torch.from_numpy(depth))
    assert bool(valid_t.all())
    np.testing.assert_allclose(codec.decode(code_t).numpy(), depth, rtol=1e-12)
    np.testing.assert_allclose(code_t.numpy(), code, atol=1e-15)


def test_edge_values_map_to_code_bounds_and_midpoint():
    codec = LogDepthCodec(0.1, 100.0)
    code, _ = codec.encode(np.array([0.1, 100.0, math.sqrt(0.1 * 100.0)]))
    np.testing.assert_allclose(code, [-1.0, 1.0, 0.0], atol=1e-12)
    # equation (3): code = 2 n - 1 with n = log(d / d_min) / log(d_max / d_min)
    code, _ = codec.encode(np.array([2.0]))
    assert code[0] == pytest.approx(2 * math.log(20.0) / math.log(1000.0) - 1)


def test_out_of_range_valid_depth_is_clipped():
    codec = LogDepthCodec(0.1, 100.0)
    code, valid = codec.encode(np.array([0.01, 1e6], dtype=np.float32))
    assert valid.all()
    np.testing.assert_allclose(code, [-1.0, 1.0])
    np.testing.assert_allclose(codec.decode(np.array([-3.0, 3.0])), [0.1, 100.0])


@pytest.mark.parametrize('backend', ['numpy', 'torch'])
def test_invalid_depth_is_masked_not_clipped(backend):
    codec = LogDepthCodec()
    raw = np.array([0.0, -1.0, np.nan, np.inf, -np.inf, 5.0], dtype=np.float32)
    depth = torch.from_numpy(raw) if backend == 'torch' else raw
    code, valid = codec.encode(depth)
    code, valid = np.asarray(code), np.asarray(valid)
    assert valid.tolist() == [False] * 5 + [True]
    # invalid pixels sit at code 0 (neither end of the range) and stay finite
    assert np.all(code[:5] == 0.0)
    assert np.isfinite(code).all()
    assert code.dtype == np.float32


def test_vectorised_shapes_are_preserved():
    codec = LogDepthCodec()
    depth = torch.rand(2, 1, 5, 7) * 10 + 0.2
    code, valid = codec.encode(depth)
    assert code.shape == depth.shape and valid.shape == depth.shape
    assert code.dtype == torch.float32


@pytest.mark.parametrize('d_min,d_max', [(0.0, 10.0), (-1.0, 10.0), (5.0, 5.0), (1.0, math.inf)])
def test_bad_range_is_rejected(d_min, d_max):
    with pytest.raises(ValueError, match='d_m'):
        LogDepthCodec(d_min, d_max)


def test_dict_round_trip():
    codec = LogDepthCodec(0.2, 50.0)
    assert LogDepthCodec.from_dict(codec.to_dict()) == codec
    with pytest.raises(ValueError, match='type'):
        LogDepthCodec.from_dict({'type': 'linear', 'd_min': 0.1, 'd_max': 1})
