"""The pipeline's run options: torch.compile (compiled vs eager within 1e-4), bf16 precision
chosen from the CPU's flags, and their checks."""
import os

import numpy as np
import pytest
import torch

from metricgold_core.model import run_options
from metricgold_core.model.light_decoder import LightDecoderHead
from metricgold_core.model.network import MetricGoldModel
from metricgold_core.model.pipeline import DepthEstimator, resolve_dtype
from metricgold_core.model.run_options import cpu_bf16_flags

CPUINFO = """processor\t: 0
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni
processor\t: 1
flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni
"""


def _image(h=40, w=56):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx * yy) % 256], axis=-1)
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


def _model(light: bool = False):
    model = MetricGoldModel.from_preset('tiny', seed=0)
    if light:
        torch.manual_seed(0)
        model.light_decoder = LightDecoderHead.for_vae(model.vae).eval()
    return model


def test_cpu_bf16_flags_read_from_cpuinfo():
    assert cpu_bf16_flags(CPUINFO) == ('avx512_bf16',)
    assert cpu_bf16_flags(CPUINFO.replace('avx512_bf16', 'amx_bf16 amx_tile')) == ('amx_bf16',)
    assert cpu_bf16_flags('flags\t: fpu sse avx2 avx512f\n') == ()
    assert cpu_bf16_flags('') == ()


def test_auto_dtype_is_float32_on_a_cpu_even_with_native_bf16(monkeypatch):
    """bfloat16 does not keep float32's answer (docs/PERFORMANCE.md): only asked for by name."""
    cpu = torch.device('cpu')
    monkeypatch.setattr(run_options, 'cpu_bf16_flags', lambda cpuinfo=None: ('avx512_bf16',))
    assert resolve_dtype('auto', cpu) == torch.float32
    assert resolve_dtype('bfloat16', cpu) == torch.bfloat16
    assert resolve_dtype('auto', torch.device('cuda')) == torch.float16


def test_bfloat16_follows_float32():
    # the packaged (trained) model: a random-weights UNet amplifies any rounding
    from metricgold_core.model.network import load_default_or
    image = _image(64, 96)
    ref, bf16 = (DepthEstimator(load_default_or(None), device='cpu', dtype=dtype)(
        image, processing_resolution=0, seed=0) for dtype in ('float32', 'bfloat16'))
    assert bf16.normalized.dtype == np.float32 and np.isfinite(bf16.normalized).all()
    diff = np.abs(bf16.normalized - ref.normalized)
    # rounding, not another result (measured 96x128: max 3.3e-3, depth 0.45 % mean)
    assert 0 < diff.max() < 0.02 and diff.mean() < 0.1 * ref.normalized.std()
    assert np.mean(np.abs(bf16.depth - ref.depth) / ref.depth) < 0.02


def test_bad_compile_mode():
    with pytest.raises(ValueError, match='`compile` must be one of off, default'):
        DepthEstimator(_model(), device='cpu', dtype='float32', compile_mode='fastest')


def _compare_compiled(monkeypatch, backend, modes=('exact',), steps=(1, 2)):
    if backend != 'inductor':
        real = torch.compile

        def compile_with(fn, mode=None, **kwargs):
            return real(fn, backend=backend, **kwargs)
        monkeypatch.setattr(torch, 'compile', compile_with)
    torch._dynamo.reset()
    image = _image()
    try:
        for mode in modes:
            eager = DepthEstimator(_model(mode == 'fast'), device='cpu', dtype='float32',
                                   mode=mode)
            compiled = DepthEstimator(_model(mode == 'fast'), device='cpu', dtype='float32',
                                      mode=mode, compile_mode='default')
            assert compiled._unet is not compiled.model.unet   # the compiled wrapper
            assert torch._dynamo.config.recompile_limit >= 64   # a ladder of resolutions
            for n in steps:
                a = eager(image, steps=n, processing_resolution=0, seed=1)
                b = compiled(image, steps=n, processing_resolution=0, seed=1)
                assert a.normalized.std() > 0.01
                np.testing.assert_allclose(b.normalized, a.normalized, atol=1e-4, rtol=0)
    finally:
        torch._dynamo.reset()


def test_compiled_graphs_match_eager(monkeypatch):
    # Dynamo captures the encoder, UNet and decoder graphs (static shapes) and runs them through
    # AOTAutograd's functionalised graphs (what inductor compiles): the compiled path's wiring,
    # without the minutes of C++ code generation.
    _compare_compiled(monkeypatch, 'aot_eager')


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('METRICGOLD_TEST_INDUCTOR'),
                    reason='inductor (C++ code generation) compiles the tiny model in 1-5 min on '
                    'a shared 2-core CPU; set METRICGOLD_TEST_INDUCTOR=1 to run it')
def test_inductor_compiled_matches_eager(monkeypatch):
    _compare_compiled(monkeypatch, 'inductor', steps=(1,))


def test_node_parameters_take_the_compile_modes():
    from metricgold_ros.params import normalise, ParameterError, SPECS
    assert SPECS['compile'].read_only and SPECS['compile'].default == 'off'
    assert SPECS['channels_last'].read_only and SPECS['channels_last'].default is True
    assert normalise('compile', 'reduce-overhead') == 'reduce-overhead'
    with pytest.raises(ParameterError, match='`compile` must be one of off, default'):
        normalise('compile', 'fastest')
