"""Mixed precision: the model in bfloat16 / float16, its numerically sensitive parts in float32.

Rounding to 8 (bfloat16) or 11 (float16) significant bits is harmless in most of the network,
but not everywhere. The decoded value in [0, 1] spans the codec's log range (6.9 units of log
depth for 0.1-100 m), so one bfloat16 step of it near the far end (2^-8) is 2.7 % of depth;
the latents carry the whole image through the UNet and the DDIM step;
normalisations divide by statistics of whole feature maps; the attention softmax exponentiates.
Each part named in PARTS keeps float32 weights and computes in float32: its floating inputs are
cast to float32 and its output goes back to the compute dtype (an `island`), or stays float32
(a `tail`, whose output feeds float32 maths: the latents, the decoded code).

Which parts matter was measured by ablation (scripts/precision_check.py, docs/PERFORMANCE.md).
"""
from __future__ import annotations

import torch

# part name -> what it covers (see `modules`)
PARTS = {
    'latents': 'the latents in and out of the VAE and the UNet: encoder conv_out + quant_conv, '
               'UNet conv_in / conv_out, decoder post_quant_conv + conv_in (and the DDIM step); '
               'implies time_embedding',
    'time_embedding': "the UNet's timestep embedding MLP",
    'norms': 'every GroupNorm and LayerNorm',
    'attention': 'every attention block (its softmax included)',
    'decoder_out': "the VAE decoder's output norm and conv, and the light decoder's head",
}
# The parts kept in float32 under a reduced dtype unless the caller names others.
DEFAULT_PARTS = ('latents', 'decoder_out')
_HOOKS = '_metricgold_float32_hooks'


def check_parts(parts) -> tuple:
    """`parts` as a tuple of PARTS names, or ValueError naming the unknown one."""
    parts = tuple(parts)
    for part in parts:
        if part not in PARTS:
            raise ValueError(f'`float32_parts` must name parts among {", ".join(PARTS)}, '
                             f'got {part!r}.')
    return parts


def modules(model, part: str) -> list:
    """[(module, tail)] of one part of a MetricGoldModel: tail True when its output stays
    float32."""
    unet, vae, light = model.unet, model.vae, model.light_decoder
    if part == 'latents':
        # a float32 UNet input makes diffusers hand the timestep embedding float32 too
        found = [(vae.encoder.conv_out, True), (unet.conv_in, False), (unet.conv_out, True),
                 (vae.decoder.conv_in, False), (unet.time_embedding, False)]
        for name, tail in (('quant_conv', True), ('post_quant_conv', True)):
            if getattr(vae, name, None) is not None:
                found.append((getattr(vae, name), tail))
        return found
    if part == 'time_embedding':
        return [(unet.time_embedding, False)]
    if part == 'norms':
        kinds = (torch.nn.GroupNorm, torch.nn.LayerNorm)
        return [(m, False) for root in (unet, vae) for m in root.modules() if isinstance(m, kinds)]
    if part == 'attention':
        from diffusers.models.attention_processor import Attention
        return [(m, False) for root in (unet, vae) for m in root.modules()
                if isinstance(m, Attention)]
    if part == 'decoder_out':
        found = [(vae.decoder.conv_norm_out, True), (vae.decoder.conv_out, True)]
        if light is not None:
            found.append((light.conv_out, True))
        return found
    raise ValueError(f'unknown part {part!r}')


def _to(value, dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (tuple, list)):
        return type(value)(_to(v, dtype) for v in value)
    return value


def keep_float32(module: torch.nn.Module, out_dtype: torch.dtype) -> None:
    """Run `module` in float32 (weights cast once, inputs cast at each call) and hand its
    output on as `out_dtype`. Calling it again replaces the earlier hooks."""
    release(module)
    torch.nn.Module.to(module, dtype=torch.float32)

    def inputs(_, args, kwargs):
        return _to(args, torch.float32), {k: _to(v, torch.float32) for k, v in kwargs.items()}

    def output(_, args, kwargs, out):
        return _to(out, out_dtype)

    setattr(module, _HOOKS, (module.register_forward_pre_hook(inputs, with_kwargs=True),
                             module.register_forward_hook(output, with_kwargs=True)))


def release(module: torch.nn.Module) -> None:
    """Remove keep_float32's hooks (the weights keep their dtype)."""
    for handle in getattr(module, _HOOKS, ()):
        handle.remove()
    if hasattr(module, _HOOKS):
        delattr(module, _HOOKS)


def apply(model, dtype: torch.dtype, parts=DEFAULT_PARTS) -> list:
    """Cast the model's UNet, VAE and light decoder to `dtype`, except `parts` when `dtype` is
    reduced (none under float32): those keep their float32 weights, never rounded to `dtype`.
    Returns the kept modules."""
    parts = check_parts(parts)
    roots = [m for m in (model.unet, model.vae, model.light_decoder) if m is not None]
    for root in roots:
        for module in root.modules():
            release(module)
    tails = {}   # module -> its output stays float32
    if dtype != torch.float32:
        for part in parts:
            for module, tail in modules(model, part):
                tails[module] = tails.get(module, False) or tail
        for module in tails:   # inside another kept module: float32 on to its float32 layers
            for inner in module.modules():
                if inner is not module and inner in tails:
                    tails[inner] = True
    inside_kept = {inner for module in tails for inner in module.modules()}
    for root in roots:
        for module in root.modules():
            if module not in inside_kept:
                # this module's own tensors only (torch's cast: diffusers' to() warns of
                # float32-only modules even when its list of them is empty)
                module._apply(lambda t: t.to(dtype) if t.is_floating_point() else t,
                              recurse=False)
    for module, tail in tails.items():
        keep_float32(module, torch.float32 if tail else dtype)
    return list(tails)
