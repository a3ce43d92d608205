"""Mixed precision (metricgold_core.model.precision): under bfloat16 / float16 the named parts
run in float32 with their float32 weights, and the depth stays within the tolerance of
float32's."""
import numpy as np
import pytest
import torch

from metricgold_core.model import precision
from metricgold_core.model.network import load_default_or, MetricGoldModel
from metricgold_core.model.pipeline import DepthEstimator


def _image(h=48, w=64):
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx * yy) % 256], axis=-1)
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


def test_named_parts_compute_in_float32_with_unrounded_weights():
    model = MetricGoldModel.from_preset('tiny', seed=0)
    parts = tuple(precision.PARTS)
    original = {name: p.detach().clone() for name, p in model.vae.named_parameters()}
    est = DepthEstimator(model, device='cpu', dtype='bfloat16', float32_parts=parts)
    assert est.float32_parts == parts
    kept = {m: tail for part in parts for m, tail in precision.modules(model, part)}
    seen = {}

    def record(module, args, out):
        seen[module] = (args[0].dtype, out.dtype)

    handles = [m.register_forward_hook(record) for m in kept]
    try:
        pred = est(_image(), processing_resolution=0, seed=0)
    finally:
        for handle in handles:
            handle.remove()
    assert np.isfinite(pred.depth).any()
    for module in kept:
        assert {p.dtype for p in module.parameters()} <= {torch.float32}, module
    for name, p in model.vae.decoder.conv_out.named_parameters():   # float32, never rounded
        assert torch.equal(p, original[f'decoder.conv_out.{name}'])
    # every GroupNorm, the attention blocks, the latents' convs ran on float32 inputs
    ran = [m for m in kept if m in seen]
    assert any(isinstance(m, torch.nn.GroupNorm) for m in ran)
    assert all(seen[m][0] == torch.float32 for m in ran)
    # the latents and the decoded code leave their layers in float32; the rest in bfloat16
    for module in (model.unet.conv_out, model.vae.decoder.conv_out, model.vae.encoder.conv_out):
        assert seen[module][1] == torch.float32
    assert seen[model.unet.conv_in][1] == torch.bfloat16
    assert model.unet.down_blocks[0].resnets[0].conv1.weight.dtype == torch.bfloat16


def test_float32_releases_the_parts():
    model = MetricGoldModel.from_preset('tiny', seed=0)
    DepthEstimator(model, device='cpu', dtype='float16')
    est = DepthEstimator(model, device='cpu', dtype='float32')
    assert est.float32_parts == ()
    for root in (model.unet, model.vae):
        assert {p.dtype for p in root.parameters()} == {torch.float32}
        assert not any(m._forward_hooks or m._forward_pre_hooks for m in root.modules())
    with pytest.raises(ValueError, match='`float32_parts` must name parts among latents'):
        DepthEstimator(model, device='cpu', dtype='bfloat16', float32_parts=('softmax',))


@pytest.mark.parametrize('dtype, trained', [('bfloat16', True), ('float16', True),
                                            ('float16', False)])
def test_reduced_precision_depth_within_tolerance_of_float32(dtype, trained):
    """With the default float32 parts: mean relative depth difference < 1 %, 99th percentile
    < 3 % (the issue's targets; real frames and procedural scenes: scripts/precision_check.py),
    on the packaged model (tiny layout, trained) and, in float16, on the untrained tiny model
    too (random weights amplify rounding: bfloat16 misses there, measured 1.8 % mean)."""

    def model():
        return load_default_or(None) if trained else MetricGoldModel.from_preset('tiny', seed=0)
    image = _image(96, 128)
    ref, low = (DepthEstimator(model(), device='cpu', dtype=d)(
        image, processing_resolution=0, seed=0).depth for d in ('float32', dtype))
    ok = np.isfinite(ref) & np.isfinite(low)
    assert ok.mean() > 0.9
    rel = np.abs(low[ok] / ref[ok] - 1)
    assert 0 < rel.mean() < 0.01 and np.percentile(rel, 99) < 0.03


def test_compiled_graphs_keep_the_float32_parts(monkeypatch):
    """torch.compile captures the hooks: the compiled bfloat16 path (AOTAutograd's graphs, as
    inductor gets them) gives the eager mixed-precision answer."""
    real = torch.compile

    def compile_with(fn, mode=None, **kwargs):
        return real(fn, backend='aot_eager', **kwargs)
    monkeypatch.setattr(torch, 'compile', compile_with)
    torch._dynamo.reset()
    try:
        image = _image()
        eager, compiled = (
            DepthEstimator(MetricGoldModel.from_preset('tiny', seed=0), device='cpu',
                           dtype='bfloat16', compile_mode=compile_mode)
            for compile_mode in ('off', 'default'))
        a = eager(image, processing_resolution=0, seed=1)
        b = compiled(image, processing_resolution=0, seed=1)
        assert a.normalized.std() > 0.01
        np.testing.assert_allclose(b.normalized, a.normalized, atol=1e-3, rtol=0)
    finally:
        torch._dynamo.reset()
