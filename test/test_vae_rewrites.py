"""The exact VAE rewrites equal the diffusers modules they replace."""
import copy

import pytest
import torch
import torch.nn.functional as F

from metricgold_core.model.vae_rewrites import (encode_mean, pooled_attention, resnet_forward,
                                                RewrittenVAEDecoder, upsample_conv_as_transposed)


@pytest.mark.parametrize('shape', [(1, 8, 5, 7), (2, 16, 12, 10)])
def test_transposed_conv_equals_nearest_upsample_then_conv(shape):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(shape[1], 6, 3, padding=1)
    x = torch.randn(*shape)
    expected = conv(F.interpolate(x, scale_factor=2.0, mode='nearest'))
    got = F.conv_transpose2d(x, upsample_conv_as_transposed(conv), conv.bias, stride=2,
                             padding=1)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope='module')
def vaes(tiny_model):
    plain = copy.deepcopy(tiny_model.vae).to(memory_format=torch.contiguous_format).eval()
    rewritten = copy.deepcopy(tiny_model.vae).to(memory_format=torch.channels_last).eval()
    return plain, rewritten


@pytest.mark.parametrize('channels_last', [False, True])
def test_resnet_rewrite_matches(vaes, channels_last):
    plain, _ = vaes
    resnet = plain.decoder.up_blocks[-1].resnets[0]  # has a 1x1 shortcut (channel change)
    assert resnet.conv_shortcut is not None
    x = torch.randn(1, resnet.in_channels, 16, 24)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    with torch.inference_mode():
        expected = resnet(x, None)
        block = copy.deepcopy(resnet).to(memory_format=fmt)
        got = resnet_forward(block, x.contiguous(memory_format=fmt))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_rewritten_encode_and_decode_match_diffusers(vaes):
    plain, rewritten = vaes
    torch.manual_seed(1)
    image = torch.rand(1, 3, 64, 96) * 2 - 1
    latent = torch.randn(1, 4, 8, 12)
    scale = plain.config.scaling_factor
    with torch.inference_mode():
        enc_ref = plain.encode(image).latent_dist.mode() * scale
        enc = encode_mean(rewritten, image.contiguous(memory_format=torch.channels_last))
        dec_ref = plain.decode(latent / scale).sample.mean(dim=1, keepdim=True)
        dec = RewrittenVAEDecoder(rewritten, torch.channels_last).decode_mean(
            latent.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(enc, enc_ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(dec, dec_ref, atol=1e-5, rtol=1e-4)
    assert dec.shape == (1, 1, 64, 96)


def test_pooled_attention(vaes):
    plain, _ = vaes
    attn = plain.encoder.mid_block.attentions[0]
    channels = attn.to_q.in_features
    torch.manual_seed(0)
    x = torch.randn(2, channels, 10, 14)
    with torch.inference_mode():
        expected = attn(x)
        # kv_pool 1 is diffusers' attention
        torch.testing.assert_close(pooled_attention(attn, x, 1), expected, atol=1e-5, rtol=1e-5)
        # on a map constant over 2x2 blocks, pooling keys/values drops only repeated tokens
        # (each repeated 4 times: same softmax weights), so the result is exact
        blocky = F.interpolate(torch.randn(2, channels, 5, 7), scale_factor=2.0)
        torch.testing.assert_close(pooled_attention(attn, blocky, 2), attn(blocky),
                                   atol=1e-5, rtol=1e-5)
        # on a general map it is an approximation, but not the identity nor the exact result
        pooled = pooled_attention(attn, x, 2)
        assert pooled.shape == x.shape
        assert 0 < (pooled - expected).abs().max() < 0.5 * (expected - x).abs().max()
        # odd sizes: the last row/column pool over what is there
        odd = torch.randn(1, channels, 7, 9)
        assert pooled_attention(attn, odd, 2).shape == odd.shape


def test_pooled_encode_is_close_to_exact(vaes):
    _, rewritten = vaes
    torch.manual_seed(1)
    image = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.inference_mode():
        exact = encode_mean(rewritten, image.contiguous(memory_format=torch.channels_last))
        pooled = encode_mean(rewritten, image.contiguous(memory_format=torch.channels_last), 2)
    assert pooled.shape == exact.shape
    assert 0 < (pooled - exact).abs().mean() < 0.1 * exact.abs().mean()
