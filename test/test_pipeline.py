"""DepthEstimator: parity with diffusers' MarigoldDepthPipeline, determinism, input checks."""
import numpy as np
import pytest
import torch

from metricgold_core.model.pipeline import DepthEstimator


@pytest.fixture(scope='module')
def estimator(tiny_model):
    return DepthEstimator(tiny_model, device='cpu', dtype='float32',
                          upsampling='bilinear')  # diffusers' resize (and maths: float32)


@pytest.fixture(scope='module')
def diffusers_pipe(tiny_model):
    from diffusers import MarigoldDepthPipeline
    pipe = MarigoldDepthPipeline(
        unet=tiny_model.unet, vae=tiny_model.vae, scheduler=tiny_model.scheduler,
        text_encoder=None, tokenizer=None, prediction_type='depth', scale_invariant=False,
        shift_invariant=False, default_denoising_steps=1, default_processing_resolution=0)
    pipe.empty_text_embedding = tiny_model.empty_text_embedding
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx * yy) % 256], axis=-1)
    return np.clip(base + rng.integers(-20, 20, base.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize('steps', [1, 2])
@pytest.mark.parametrize('hw,resolution', [((64, 96), 0), ((70, 101), 64)])
def test_matches_diffusers_marigold(estimator, diffusers_pipe, steps, hw, resolution):
    image = _image(*hw)
    ours = estimator(image, steps=steps, processing_resolution=resolution, seed=7)
    ref = diffusers_pipe(image, num_inference_steps=steps, processing_resolution=resolution,
                         generator=torch.Generator('cpu').manual_seed(7),
                         output_type='np').prediction[0, :, :, 0]
    assert ours.normalized.shape == ref.shape == hw
    # the comparison is meaningful only if the output is not saturated at 0 or 1
    inside = (ours.normalized > 0) & (ours.normalized < 1)
    assert ours.normalized.std() > 0.02 and inside.mean() > 0.9
    np.testing.assert_allclose(ours.normalized, ref, atol=1e-4, rtol=0)


def test_depth_is_codec_decode_of_normalized(estimator, tiny_model):
    pred = estimator(_image(48, 64), seed=0, processing_resolution=0)
    expected = tiny_model.codec.normalized_to_depth(pred.normalized)
    np.testing.assert_allclose(pred.depth, expected, rtol=1e-6)
    assert pred.depth.dtype == np.float32
    assert ((pred.depth >= 0.1 * (1 - 1e-6)) & (pred.depth <= 100 * (1 + 1e-6))).all()


def test_same_seed_same_output_and_noise_matters_for_two_steps(estimator):
    image = _image(48, 64)
    a = estimator(image, steps=2, seed=1, processing_resolution=0)
    b = estimator(image, steps=2, seed=1, processing_resolution=0)
    c = estimator(image, steps=2, seed=2, processing_resolution=0)
    np.testing.assert_array_equal(a.depth, b.depth)
    assert np.abs(a.depth - c.depth).max() > 0


def test_generator_equals_seed(estimator):
    image = _image(40, 40)
    a = estimator(image, seed=5, processing_resolution=0)
    b = estimator(image, generator=torch.Generator('cpu').manual_seed(5),
                  processing_resolution=0)
    np.testing.assert_array_equal(a.depth, b.depth)


def test_plain_diffusers_decoder_gives_same_result(tiny_model, estimator):
    plain = DepthEstimator(tiny_model, device='cpu', dtype='float32', exact_rewrites=False,
                           channels_last=False)
    image = _image(56, 72)
    a = estimator(image, steps=2, seed=3, processing_resolution=0)
    b = plain(image, steps=2, seed=3, processing_resolution=0)
    np.testing.assert_allclose(a.normalized, b.normalized, atol=1e-5)


def test_batch_matches_diffusers(estimator, diffusers_pipe):
    images = np.stack([_image(40, 56, seed=s) for s in range(2)])
    batch = estimator(images, steps=2, seed=0, processing_resolution=0)
    assert batch.depth.shape == (2, 40, 56)
    ref = diffusers_pipe(images, num_inference_steps=2, processing_resolution=0, batch_size=2,
                         generator=torch.Generator('cpu').manual_seed(0),
                         output_type='np').prediction[..., 0]
    np.testing.assert_allclose(batch.normalized, ref, atol=1e-4, rtol=0)
    assert np.abs(batch.depth[0] - batch.depth[1]).max() > 0


def test_processing_resolution_and_timings(estimator):
    pred = estimator(_image(120, 200), processing_resolution=64, seed=0)
    assert pred.depth.shape == (120, 200)
    assert pred.processing_hw == (38, 64)
    assert set(pred.timings) == {'preprocess', 'encode', 'denoise', 'decode', 'postprocess',
                                 'total'}
    assert all(v >= 0 for v in pred.timings.values())
    assert pred.timings['total'] >= pred.timings['decode']


def test_uncertainty_from_two_steps(estimator):
    pred = estimator(_image(48, 64), steps=2, seed=0, output_uncertainty=True,
                     processing_resolution=0)
    assert pred.uncertainty.shape == pred.depth.shape
    assert (pred.uncertainty >= 0).all() and pred.uncertainty.max() > 0


@pytest.mark.parametrize('kwargs,image,message', [
    ({'steps': 3}, None, '`steps` must be 1 or 2, got 3'),
    ({'processing_resolution': -1}, None, '`processing_resolution`'),
    ({}, np.zeros((32, 32, 3), np.float32), 'uint8'),
    ({}, np.zeros((32, 32), np.uint8), r'\(H, W, 3\)'),
    ({}, np.zeros((4, 32, 3), np.uint8), 'at least 8x8'),
    ({}, [[1, 2, 3]], 'numpy array'),
    ({'seed': 1, 'generator': torch.Generator()}, None, 'not both'),
])
def test_bad_inputs_raise_value_errors(estimator, kwargs, image, message):
    if image is None:
        image = _image(32, 32)
    with pytest.raises(ValueError, match=message):
        estimator(image, **kwargs)


def test_bad_device_and_dtype(tiny_model):
    with pytest.raises(ValueError, match='`device`'):
        DepthEstimator(tiny_model, device='tpu')
    with pytest.raises(ValueError, match='`dtype`'):
        DepthEstimator(tiny_model, device='cpu', dtype='int8')


def test_concurrent_calls_and_estimators_sharing_a_model_do_not_interfere(tiny_model, estimator):
    from concurrent.futures import ThreadPoolExecutor
    image = _image(48, 64, seed=3)
    expected = {steps: estimator(image, steps=steps, seed=1).normalized for steps in (1, 2)}
    # Same modules, its own scheduler.
    other = DepthEstimator(tiny_model, device='cpu', dtype='float32',
                           upsampling=estimator.upsampling)
    assert other.scheduler is not estimator.scheduler
    jobs = [(est, steps) for est in (estimator, other) for steps in (1, 2)] * 3
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda job: (job[1], job[0](image, steps=job[1], seed=1)),
                                jobs))
    for steps, pred in results:
        np.testing.assert_array_equal(pred.normalized, expected[steps])


def test_guided_upsampling_puts_depth_edges_on_image_edges():
    import torch
    from metricgold_core.model.image_processing import grey_guide, guided_upsample
    # Full resolution 64 x 80: dark box (near) left of column 37, bright wall (far) right.
    image = np.full((1, 64, 80, 3), 200, np.uint8)
    image[:, :, :37] = 40
    truth = np.where(np.arange(80) < 37, 0.3, 0.7)
    # The model's map at 1/8 resolution: the step smeared over one low-res pixel.
    low = torch.nn.functional.interpolate(torch.from_numpy(truth).float()[None, None, None]
                                          .expand(1, 1, 64, 80), (8, 10), mode='area')
    guided = guided_upsample(low, grey_guide(image), radius=2, eps=1e-3)[0, 0].numpy()
    bilinear = torch.nn.functional.interpolate(low, (64, 80), mode='bilinear')[0, 0].numpy()
    err_guided = np.abs(guided - truth[None]).max()
    err_bilinear = np.abs(bilinear - truth[None]).max()
    assert err_guided < 0.05 < err_bilinear
    assert np.abs(np.diff(guided[32]))[36] > 0.35  # the whole step in one pixel pair


def test_upsampling_modes(tiny_model, estimator):
    image = _image(48, 64)
    guided = DepthEstimator(tiny_model, device='cpu', dtype='float32')
    assert guided.upsampling == 'guided'  # the product default
    # Native resolution: nothing to upsample, both modes give the same map.
    np.testing.assert_array_equal(guided(image, seed=1, processing_resolution=0).depth,
                                  estimator(image, seed=1, processing_resolution=0).depth)
    a = guided(image, seed=1, processing_resolution=32).depth
    b = estimator(image, seed=1, processing_resolution=32).depth
    assert a.shape == b.shape == (48, 64) and np.isfinite(a).all() and not np.allclose(a, b)
    with pytest.raises(ValueError, match='`upsampling`'):
        DepthEstimator(tiny_model, device='cpu', upsampling='bicubic')
