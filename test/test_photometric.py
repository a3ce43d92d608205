"""Photometric changes (data.photometric), exposure normalisation, sky labels and close-range
framing: the pieces that make depth independent of the camera's exposure."""
import numpy as np
import pytest
import torch

from metricgold_core.data import photometric as ph
from metricgold_core.data.procedural import render_scene
from metricgold_core.model.codec import LogDepthCodec
from metricgold_core.model.image_processing import normalize_exposure, to_model_input

NORM = {'mean': 0.141}


@pytest.fixture(scope='module')
def scene():
    return render_scene(5_000_123, 48, 64, 'indoor')


def as_input(rgb, normalization=None):
    x, _ = to_model_input(rgb[None], 0, 8, 'cpu', torch.float32, normalization)
    return x[0]


def test_exposure_and_white_balance_act_in_linear_light(scene):
    rgb = scene['rgb']
    darker = ph.exposure(rgb, 0.5)
    lin, lin_dark = (rgb / 255.0) ** 2.2, (darker / 255.0) ** 2.2
    keep = rgb > 40   # away from the 8-bit quantisation of the shadows
    np.testing.assert_allclose(lin_dark[keep] / lin[keep], 0.5, rtol=0.12)
    assert ph.exposure(rgb, 4.0).max() == 255       # over-exposure clips
    wb = ph.white_balance(rgb, (1.0, 1.0, 0.5))
    np.testing.assert_array_equal(wb[..., :2], ph.exposure(rgb, 1.0)[..., :2])
    assert wb[..., 2].mean() < rgb[..., 2].mean() * 0.8


def test_tone_changes_keep_the_range_and_order(scene):
    rgb = scene['rgb']
    for changed in (ph.gamma(rgb, 0.8), ph.contrast(rgb, 0.8), ph.yuv_range_swap(rgb),
                    ph.vignetting(rgb, 0.4), ph.jpeg(rgb, 40), ph.blur(rgb, 1.5)):
        assert changed.dtype == np.uint8 and changed.shape == rgb.shape
    assert ph.gamma(rgb, 0.8).mean() > rgb.mean()            # g < 1 brightens
    assert ph.contrast(rgb, 0.8).std() < rgb.std()
    swapped = ph.yuv_range_swap(rgb).astype(int)
    assert swapped.min() >= 16 and swapped.max() <= 235


def test_random_photometric_is_deterministic_and_changes_the_image(scene):
    rgb = scene['rgb']
    a = ph.random_photometric(rgb, np.random.default_rng(3))
    b = ph.random_photometric(rgb, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    changed = [not np.array_equal(ph.random_photometric(rgb, np.random.default_rng(s)), rgb)
               for s in range(20)]
    assert sum(changed) >= 18


def test_exposure_normalisation_undoes_gain_changes(scene):
    rgb = ph.exposure(scene['rgb'], 0.8)      # some headroom: few clipped highlights
    plain, base = as_input(rgb), as_input(rgb, NORM)
    assert abs(float(base.mean()) - NORM['mean']) < 0.01
    assert base.min() >= -1.0 and base.max() <= 1.0
    for gain in (0.5, 0.7, 1.2):
        changed = ph.exposure(rgb, gain)
        moved = (as_input(changed) - plain).abs().mean()
        left = (as_input(changed, NORM) - base).abs().mean()
        assert left < 0.15 * moved, (gain, float(left), float(moved))
    # colour balance and contrast are left to the model (trained with data.photometric)
    warm = as_input(ph.white_balance(rgb, (1.15, 1.0, 0.85)), NORM)
    assert float(warm[0].mean() - warm[2].mean()) > float(base[0].mean() - base[2].mean())


def test_spread_normalisation_undoes_contrast_and_keeps_colour_ratios(scene):
    spread = {'mean': 0.141, 'spread': 0.307}
    rgb = ph.exposure(scene['rgb'], 0.8)
    base = as_input(rgb, spread)
    assert abs(float(base.mean()) - 0.141) < 0.02
    assert abs(float(base.std()) - 0.307) < 0.03
    # contrast: left by the mean alone, undone by the spread; exposure: undone by both
    for change, before in ((lambda v: ph.contrast(v, 0.8), NORM),
                           (lambda v: ph.contrast(v, 1.2), NORM), (ph.yuv_range_swap, NORM),
                           (lambda v: ph.exposure(v, 0.6), None)):
        changed = change(rgb)
        moved = (as_input(changed, before) - as_input(rgb, before)).abs().mean()
        left = (as_input(changed, spread) - base).abs().mean()
        assert left < 0.25 * moved, (float(left), float(moved))
    # one factor for all channels: white balance still reaches the model
    warm = as_input(ph.white_balance(rgb, (1.15, 1.0, 0.85)), spread)
    assert float(warm[0].mean() - warm[2].mean()) > float(base[0].mean() - base[2].mean())
    flat = normalize_exposure(torch.zeros((1, 3, 8, 8)), spread)   # a uniform frame: no blow-up
    assert torch.isfinite(flat).all() and float(flat.std()) == 0.0


def test_white_balance_normalisation_undoes_channel_gains(scene):
    balanced = {'mean': 0.141, 'white_balance': 1.0}
    rgb = ph.exposure(scene['rgb'], 0.8)
    base = as_input(rgb, balanced)
    means = base.mean(dim=(-2, -1))
    assert float(means.max() - means.min()) < 0.03     # grey world: channel means level
    for gains in ((1.15, 1.0, 0.85), (0.85, 1.0, 1.2), (1.0, 1.3, 1.0)):
        changed = ph.white_balance(rgb, gains)
        moved = (as_input(changed, NORM) - as_input(rgb, NORM)).abs().mean()
        left = (as_input(changed, balanced) - base).abs().mean()
        assert left < 0.2 * moved, (gains, float(left), float(moved))
    # half strength: half way in log terms, so a warm cast is reduced, not removed
    half = {'mean': 0.141, 'white_balance': 0.5}
    warm = ph.white_balance(rgb, (1.15, 1.0, 0.85))

    def red_minus_blue(x):
        return float(x[0].mean() - x[2].mean())
    assert red_minus_blue(as_input(warm, balanced)) < red_minus_blue(as_input(warm, half)) \
        < red_minus_blue(as_input(warm, NORM))
    # a scene of one colour keeps most of it (gains capped), and nothing blows up
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0], red[..., 1:] = 200, 10
    x = as_input(red, balanced)
    assert torch.isfinite(x).all() and float(x[0].mean()) > float(x[1].mean()) + 0.5
    assert torch.isfinite(as_input(np.zeros((16, 16, 3), np.uint8), balanced)).all()


def test_exposure_normalisation_of_a_black_frame_is_bounded():
    black = np.zeros((16, 16, 3), np.uint8)
    x = normalize_exposure(torch.full((1, 3, 16, 16), -1.0), NORM)
    assert torch.isfinite(x).all() and (x == -1.0).all()
    assert torch.isfinite(as_input(black, NORM)).all()
    dim = np.full((16, 16, 3), 2, np.uint8)   # gain capped: not stretched to mid grey
    assert float(as_input(dim, NORM).mean()) < -0.8


def test_sky_is_labelled_far_only_when_asked():
    from metricgold_core.training.data import to_training_sample

    codec = LogDepthCodec()
    item = render_scene(5_000_321, 48, 64, 'outdoor')
    assert item['sky'].any() and np.array_equal(item['sky'], ~item['valid'])
    off = to_training_sample(item, codec)
    assert not off['valid'][0][torch.from_numpy(item['sky'])].any()
    on = to_training_sample(item, codec, size_hw=(24, 32), sky_far=True)
    sky_small = torch.nn.functional.interpolate(
        torch.from_numpy(item['sky'])[None, None].float(), size=(24, 32))[0] > 0.5
    assert on['valid'][sky_small].all()
    assert (on['depth_code'][sky_small] == 1.0).all()
    plain = to_training_sample(item, codec, size_hw=(24, 32))   # the rest is untouched
    assert torch.equal(on['depth_code'][~sky_small], plain['depth_code'][~sky_small])
    assert torch.equal(on['valid'][~sky_small], plain['valid'][~sky_small])


def test_close_framing_puts_a_surface_within_reach():
    near = []
    for seed in range(8):
        for kind in ('indoor', 'outdoor'):
            s = render_scene(6_100_000 + seed, 48, 64, kind, framing='close')
            normal = render_scene(6_100_000 + seed, 48, 64, kind)
            assert s['name'].endswith('_close') and np.isfinite(s['depth'][s['valid']]).all()
            centre = s['depth'][18:30, 24:40]
            near.append(np.nanmedian(centre))
            assert np.nanmin(s['depth']) > 0.05    # never inside geometry
            assert not np.array_equal(s['rgb'], normal['rgb'])
    near = np.array(near)
    assert np.median(near) < 1.6 and (near < 2.5).mean() >= 0.8, near
    with pytest.raises(ValueError, match='framing'):
        render_scene(1, 16, 16, framing='macro')


def test_recipe_keys_are_checked():
    from metricgold_core.training.config import ConfigError, load_config

    base = ['data.train=[{type: procedural}]']
    for override, key in (('data.photometric=1.5', 'data.photometric'),
                          ('data.sky=blue', 'data.sky'),
                          ('model.input_normalization={mean: [0, 0]}',
                           'model.input_normalization'),
                          ('model.input_normalization={mean: 0.1, white_balance: 1.5}',
                           'model.input_normalization'),
                          ('model.input_normalization={mean: 0.1, balance: 1}',
                           'model.input_normalization'),
                          ('model.far_limit_m=-3', 'model.far_limit_m'),
                          ('data.train=[{type: procedural, framing: macro}]', 'framing')):
        with pytest.raises(ConfigError, match=key.replace('.', r'\.')):
            load_config([], base + [override])
    cfg = load_config([], base + ['model.input_normalization={mean: 0.1, white_balance: 1}'])
    assert cfg['model']['input_normalization'] == {'mean': 0.1, 'white_balance': 1}
