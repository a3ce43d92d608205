"""Training building blocks: config validation, diffusion maths, data order, checkpoints."""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from metricgold_core.training import checkpoint as ckpt, schedule
from metricgold_core.training.config import ConfigError, load_config, stage_configs
from metricgold_core.training.data import MixtureDataset, ResumableBatchSampler
from metricgold_core.training.diffusion import (ddim_single_step, latent_valid_mask,
                                                pyramid_noise)
from metricgold_core.training.schedule import lr_at

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'training' / 'configs'


def write(tmp_path, text, name='recipe.yaml'):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------- config


def test_shipped_recipes_validate():
    tiny = stage_configs(load_config([CONFIGS / 'tiny_cpu.yaml']))
    assert [s['stage'] for s in tiny] == ['autoencoder', 'depth_vae', 'depth', 'single_step']
    assert tiny[1]['model']['init'] == 'previous'
    assert tiny[3]['output_dir'].endswith('3_single_step')
    debug = stage_configs(load_config([CONFIGS / 'tiny_cpu.yaml', CONFIGS / 'debug.yaml']))
    assert all(s['max_steps'] == 6 and s['data']['height'] == 32 for s in debug)
    # The paper recipe names dataset folders a user must provide: the error says which key.
    with pytest.raises(ConfigError, match=r'data\.train\[0\]\.kwargs\.root'):
        load_config([CONFIGS / 'metricgold_paper.yaml'])


@pytest.mark.parametrize('text, match', [
    ('optim:\n  lrr: 0.1\n', r'unknown key `optim\.lrr` \(did you mean `lr`\?\)'),
    ('max_steps: ten\n', r'`max_steps` must be int'),
    ('stage: denoise\n', r'`stage` must be one of'),
    ('data:\n  height: 30\n', r'`data\.height` must be a multiple of 8'),
    ('data:\n  train:\n    - {type: procedural, probabilty: 1}\n',
     r'unknown key `data\.train\[0\]\.probabilty`'),
    ('stages:\n  - {name: a, optim: {betas: 3}}\n', r'`stages\[0\]\.optim\.betas` must be list'),
])
def test_config_errors_name_the_key(tmp_path, text, match):
    base = 'data:\n  train:\n    - {type: procedural}\n'
    with pytest.raises(ConfigError, match=match):
        cfg = load_config([write(tmp_path, base, 'base.yaml'), write(tmp_path, text)])
        stage_configs(cfg)


def test_missing_dataset_path_is_reported(tmp_path):
    text = ('data:\n  train:\n    - {type: "x.y:Reader", kwargs: {root: /nonexistent/hypersim}}'
            '\n')
    with pytest.raises(ConfigError, match=r'kwargs\.root.*/nonexistent/hypersim.*does not'):
        load_config([write(tmp_path, text)])


def test_overrides_parse_yaml_values_and_reach_stages(tmp_path):
    cfg = load_config([CONFIGS / 'tiny_cpu.yaml'],
                      ['optim.lr=2e-4', 'stages.2.max_steps=7', 'stages.0.optim.lr=0.5'])
    stages = stage_configs(cfg)
    assert stages[1]['optim']['lr'] == pytest.approx(5e-4)  # the stage's own value wins
    assert stages[2]['max_steps'] == 7
    assert stages[0]['optim']['lr'] == 0.5
    with pytest.raises(ConfigError, match='unknown key `optim.learning_rate`'):
        load_config([CONFIGS / 'tiny_cpu.yaml'], ['optim.learning_rate=1'])


def test_lr_schedule_warms_up_then_decays_to_the_final_ratio():
    optim = {'lr': 3e-5, 'warmup_steps': 100, 'decay_steps': 25000, 'final_lr_ratio': 0.01}
    assert lr_at(0, optim) == pytest.approx(3e-7)
    assert lr_at(99, optim) == pytest.approx(3e-5)
    assert lr_at(100 + 12500, optim) == pytest.approx(3e-6)
    assert lr_at(100 + 25000, optim) == pytest.approx(3e-7)
    assert lr_at(10 ** 6, optim) == pytest.approx(3e-7)


def test_step_budget_plans_the_last_step_from_the_measured_speed(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(schedule.time, 'perf_counter', lambda: clock[0])
    budget = schedule.StepBudget(60.0, first_step=5)
    plans = []
    for step in range(6, 6 + budget.SKIP + budget.TIMED):
        # Slow first steps (start-up), then 0.1 s a step.
        clock[0] += 2.0 if step - 5 <= budget.SKIP else 0.1
        plans.append(budget.plan(step, max_steps=10 ** 6))
    assert plans[:-1] == [None] * (len(plans) - 1)
    step = 5 + budget.SKIP + budget.TIMED
    # 24 s spent (20 s of start-up), 0.97 * 60 - 24 = 34.2 s left at 0.1 s a step.
    assert plans[-1] == pytest.approx(step + 342, abs=1)
    # Never beyond max_steps, and the current step once the budget is spent.
    assert budget.plan(step + 1, max_steps=step + 3) == step + 3
    clock[0] += 60.0
    assert budget.plan(step + 2, max_steps=10 ** 6) == step + 2


def test_a_shortened_stage_ends_its_lr_decay_at_its_last_step():
    cfg = {'max_steps': 1000, 'optim': {'lr': 1e-3, 'warmup_steps': 10, 'decay_steps': 1000,
                                        'final_lr_ratio': 0.1}}
    assert schedule.shortened_schedule(cfg, 1000) == cfg['optim']
    optim = schedule.shortened_schedule(cfg, 250)
    assert optim['decay_steps'] == 250 and cfg['optim']['decay_steps'] == 1000
    assert lr_at(10 + 250, optim) == pytest.approx(1e-4)


# ---------------------------------------------------------------- diffusion maths


def test_single_step_matches_the_ddim_scheduler(tiny_model):
    scheduler = tiny_model.scheduler
    scheduler.set_timesteps(1)
    t = int(scheduler.timesteps[0])
    assert t == 999
    g = torch.Generator().manual_seed(0)
    v, x_t = torch.randn(2, 4, 3, 5, generator=g), torch.randn(2, 4, 3, 5, generator=g)
    expected = scheduler.step(v, t, x_t).prev_sample
    got = ddim_single_step(v, x_t, scheduler.alphas_cumprod, scheduler.final_alpha_cumprod, t)
    torch.testing.assert_close(got, expected)


def test_pyramid_noise_is_unit_std_seeded_and_low_frequency():
    def draw(strength):
        g = torch.Generator().manual_seed(3)
        return pyramid_noise((2, 4, 32, 32), strength, 10, g)

    a, b, plain = draw(0.9), draw(0.9), draw(0.0)
    assert torch.equal(a, b)
    assert a.flatten(1).std(dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)

    # Coarse noise raises the correlation of neighbouring latents.
    def neighbour_corr(x):
        return float((x[..., 1:] * x[..., :-1]).mean())
    assert neighbour_corr(a) > 0.3 > 0.1 > abs(neighbour_corr(plain))


def test_latent_mask_needs_a_fully_valid_cell():
    valid = torch.ones(1, 1, 16, 16, dtype=torch.bool)
    valid[0, 0, 0, 0] = False
    mask = latent_valid_mask(valid, 8)
    assert mask.shape == (1, 1, 2, 2)
    assert mask.flatten().tolist() == [False, True, True, True]


# ---------------------------------------------------------------- data order


class Items(torch.utils.data.Dataset):
    def __init__(self, tag, n=50):
        self.tag, self.n = tag, n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        depth = np.full((8, 8), 1.0 + i, dtype=np.float32)
        return {'rgb': np.full((8, 8, 3), self.tag, np.uint8), 'depth': depth,
                'valid': np.ones((8, 8), bool), 'kind': str(self.tag)}


def test_mixture_is_deterministic_by_index_and_one_dataset_per_batch():
    from metricgold_core.model.codec import LogDepthCodec
    mix = MixtureDataset([Items(10), Items(200)], [0.9, 0.1], [(8, 8), (8, 8)], LogDepthCodec(),
                         micro_batch=4, seed=5)
    again = MixtureDataset([Items(10), Items(200)], [0.9, 0.1], [(8, 8), (8, 8)],
                           LogDepthCodec(), micro_batch=4, seed=5)
    kinds = [mix[i]['kind'] for i in range(400)]
    for start in range(0, 400, 4):
        assert len(set(kinds[start:start + 4])) == 1
    assert 0.8 < kinds.count('10') / 400 < 0.98
    for i in (0, 7, 399):
        assert torch.equal(mix[i]['depth_code'], again[i]['depth_code'])
    sample = mix[0]
    assert sample['rgb'].shape == (3, 8, 8) and sample['depth_code'].shape == (1, 8, 8)
    assert sample['rgb'].min() >= -1 and sample['rgb'].max() <= 1


def test_sampler_resumes_mid_stream_and_interleaves_ranks():
    full = ResumableBatchSampler(2)
    first = [b for _, b in zip(range(6), full)]
    resumed = [b for _, b in zip(range(3), ResumableBatchSampler(2, start=3))]
    assert resumed == first[3:]
    rank1 = [b for _, b in zip(range(2), ResumableBatchSampler(2, rank=1, world=2))]
    assert rank1 == [first[1], first[3]]


# ---------------------------------------------------------------- checkpoints


def test_corrupt_and_partial_checkpoints_are_skipped_with_a_warning(tmp_path, caplog):
    folder = tmp_path / 'checkpoints'
    for step in (1, 2, 3):
        ckpt.save_checkpoint(folder, {'step': step, 'w': torch.full((100,), float(step))},
                             keep=5)
    # step 3: truncated state; step 4: died before checkpoint.json; a stray temp dir
    state3 = folder / 'step_0000003' / ckpt.STATE_FILE
    state3.write_bytes(state3.read_bytes()[:50])
    (folder / 'step_0000004').mkdir()
    (folder / 'step_0000004' / ckpt.STATE_FILE).write_bytes(b'half')
    (folder / '.tmp-step_0000005-x').mkdir()
    with caplog.at_level(logging.WARNING):
        state, path = ckpt.load_latest(folder)
    assert state['step'] == 2 and path.name == 'step_0000002'
    text = caplog.text
    assert 'step_0000004' in text and 'half-written' in text
    assert 'step_0000003' in text and 'bytes' in text
    # Same size, flipped bytes: the checksum catches it.
    state2 = folder / 'step_0000002' / ckpt.STATE_FILE
    data = bytearray(state2.read_bytes())
    data[-40] ^= 0xFF
    state2.write_bytes(bytes(data))
    state, path = ckpt.load_latest(folder)
    assert state['step'] == 1
    assert 'checksum' in caplog.text


def test_keep_last_k_and_rng_roundtrip(tmp_path):
    for step in range(1, 6):
        ckpt.save_checkpoint(tmp_path, {'step': step}, keep=2)
    names = [p.name for p in ckpt.list_checkpoints(tmp_path)]
    assert names == ['step_0000004', 'step_0000005']
    state = ckpt.rng_state()
    expected = (torch.rand(3), np.random.rand(3), __import__('random').random())
    ckpt.save_checkpoint(tmp_path, {'step': 9, 'rng': state}, keep=2)
    torch.rand(5), np.random.rand(5)
    ckpt.set_rng_state(ckpt.load_latest(tmp_path)[0]['rng'])
    got = (torch.rand(3), np.random.rand(3), __import__('random').random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_scene_cache_holds_the_rendered_scenes_and_is_reused(tmp_path):
    from metricgold_core.data.procedural import ProceduralScenes
    from metricgold_core.data.scene_cache import open_or_write_cache, write_scene_cache
    path = tmp_path / 'cache'
    meta = write_scene_cache(path, 3, 24, 32, seed=7, workers=1)
    assert meta['count'] == 3 and meta['bytes'] > 3 * 24 * 32 * 3
    assert not list(tmp_path.glob('cache.tmp*'))  # written atomically: no temporary left
    scenes = ProceduralScenes(3, 24, 32, seed=7)
    cache = open_or_write_cache(path, 3, 24, 32, seed=7)
    stamp = (path / 'meta.json').stat().st_mtime_ns
    for i in range(3):
        want, got = scenes[i], cache[i]
        np.testing.assert_array_equal(got['rgb'], want['rgb'])
        np.testing.assert_array_equal(got['valid'], want['valid'])
        np.testing.assert_allclose(got['depth'][want['valid']], want['depth'][want['valid']],
                                   rtol=1e-3)
        np.testing.assert_allclose(got['K'], want['K'], rtol=1e-6)
        assert got['kind'] == want['kind']
    open_or_write_cache(path, 3, 24, 32, seed=7)
    assert (path / 'meta.json').stat().st_mtime_ns == stamp  # same scenes: not rendered again
    other = open_or_write_cache(path, 2, 24, 32, seed=8)  # other scenes: rendered anew
    assert len(other) == 2 and other.meta['seed'] == 8


def test_canonical_focal_labels():
    from metricgold_core.model.codec import LogDepthCodec
    from metricgold_core.training.data import canonical_label_factor, to_training_sample
    codec = LogDepthCodec(0.1, 100.0)
    depth = np.full((8, 16), 4.0, dtype=np.float32)
    item = {'rgb': np.zeros((8, 16, 3), np.uint8), 'depth': depth,
            'valid': np.ones((8, 16), bool), 'K': np.array([[20.0, 0, 8], [0, 20, 4], [0, 0, 1]])}
    # fx 20 px at width 16 is 10 px at width 8: labels = depth * 30 / 10.
    assert canonical_label_factor(item, 8, 30.0) == pytest.approx(3.0)
    assert canonical_label_factor(item, 16, None) == 1.0
    sample = to_training_sample(item, codec, (4, 8), canonical_focal_px=30.0)
    want, _ = codec.encode(torch.full((1, 4, 8), 12.0))
    torch.testing.assert_close(sample['depth_code'], want)
    with pytest.raises(ValueError, match='intrinsics'):
        to_training_sample({**item, 'K': None}, codec, canonical_focal_px=30.0)


def test_validation_of_a_canonical_focal_model_comes_out_in_metres():
    from metricgold_core.data.procedural import ProceduralScenes
    from metricgold_core.model.network import MetricGoldModel
    from metricgold_core.training.validation import eval_copy, predict_depth, run_validation

    model = MetricGoldModel.from_preset('tiny', seed=0)
    scenes = ProceduralScenes(2, 48, 64, seed=4_000_000)
    samples = [scenes[i] for i in range(2)]
    plain = predict_depth(eval_copy(model, {}), 'single_step', samples, 'cpu')
    canonical = eval_copy(model, {}, {'canonical_focal_px': 20.0})
    assert model.meta.get('canonical_focal_px') is None     # the trained model is untouched
    scaled = predict_depth(canonical, 'single_step', samples, 'cpu')
    for p, q, s in zip(plain, scaled, samples):   # metres = canonical depth * fx / f_c
        np.testing.assert_allclose(q, p * (s['K'][0][0] / 20.0), rtol=1e-5)
    metrics, panel = run_validation(canonical, 'single_step', samples, 'cpu', panels=1)
    assert panel.shape == (48, 4 * 64, 3) and np.isfinite(metrics['abs_rel'])


# ---------------------------------------------------------------- photometric consistency


def test_clean_samples_are_the_unchanged_image_and_carry_the_teacher_flag():
    from metricgold_core.model.codec import LogDepthCodec

    def mixture(photometric, clean):
        return MixtureDataset([Items(60), Items(140)], [0.5, 0.5], [(8, 8), (8, 8)],
                              LogDepthCodec(), micro_batch=2, seed=3, photometric=photometric,
                              clean=clean, teacher_on=[True, False])

    changed, plain = mixture(1.0, True), mixture(0.0, False)
    seen = set()
    for i in range(40):
        a, b = changed[i], plain[i]
        assert 'rgb_clean' not in b
        # the same item and flip, before the photometric change; labels untouched
        assert torch.equal(a['rgb_clean'], b['rgb'])
        assert torch.equal(a['depth_code'], b['depth_code'])
        assert a['teacher'].item() == (1.0 if a['kind'] == '60' else 0.0)
        seen.add((a['kind'], not torch.equal(a['rgb'], a['rgb_clean'])))
    assert ('60', True) in seen and ('140', True) in seen


def test_teacher_weight_belongs_to_the_single_step_stage(tmp_path):
    base = 'data:\n  train:\n    - {type: procedural}\nloss:\n  teacher_weight: 0.5\n'
    with pytest.raises(ConfigError, match=r'`loss\.teacher_weight` applies to the single_step'):
        stage_configs(load_config([write(tmp_path, base + 'stage: depth\n')]))
    with pytest.raises(ConfigError, match=r'`loss\.teacher_weight` must be >= 0'):
        stage_configs(load_config([write(tmp_path, base.replace('0.5', '-1') +
                                         'stage: single_step\n')]))
    (cfg,) = stage_configs(load_config([write(tmp_path, base + 'stage: single_step\n')]))
    assert cfg['loss']['teacher_weight'] == 0.5


def teacher_batch() -> dict:
    """A single_step batch of two 32x32 samples with the teacher on; `rgb` is a copy of the
    unchanged `rgb_clean` (the tests change it)."""
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    return {'rgb': rgb.clone(), 'rgb_clean': rgb, 'teacher': torch.ones(2, 1),
            'depth_code': torch.rand(2, 1, 32, 32, generator=g) * 2 - 1,
            'valid': torch.ones(2, 1, 32, 32, dtype=torch.bool)}


def test_teacher_term_pulls_the_changed_image_to_the_frozen_start(tiny_model):
    import copy
    from metricgold_core.training.config import DEFAULTS
    from metricgold_core.training.stages import build_stage
    cfg = copy.deepcopy(DEFAULTS)
    cfg['stage'], cfg['loss']['teacher_weight'] = 'single_step', 2.0
    model = copy.deepcopy(tiny_model)
    stage = build_stage(model, cfg)
    trainable = {n for n, p in stage.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith('unet.') for n in trainable)
    assert not any(p.requires_grad for p in stage.teacher.parameters())
    batch = teacher_batch()
    rgb = batch['rgb_clean']
    # Student == teacher and the same image: the term is zero (up to float rounding).
    loss, logs = stage(batch, torch.Generator().manual_seed(1), 0.0)
    assert logs['teacher_loss'].item() < 1e-5
    assert loss.item() == pytest.approx(logs['depth_code_loss'].item(), rel=1e-4)
    # A changed image: the term is positive, its gradient reaches the student only.
    batch['rgb'] = (rgb * 0.5).clamp(-1, 1)
    loss, logs = stage(batch, torch.Generator().manual_seed(1), 0.0)
    assert logs['teacher_loss'].item() > 0
    assert loss.item() == pytest.approx(logs['depth_code_loss'].item()
                                        + 2.0 * logs['teacher_loss'].item(), rel=1e-5)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in stage.unet.parameters())
    assert all(p.grad is None for p in stage.teacher.parameters())
    # Samples whose dataset has `teacher: false` do not count.
    batch['teacher'] = torch.zeros(2, 1)
    loss, logs = stage(batch, torch.Generator().manual_seed(1), 0.0)
    assert logs['teacher_loss'].item() == 0.0


def test_label_weight_zero_is_pure_consistency_distillation(tmp_path, tiny_model):
    import copy
    from metricgold_core.training.stages import build_stage
    base = 'data:\n  train:\n    - {type: procedural}\nstage: single_step\nloss:\n'
    with pytest.raises(ConfigError, match=r'`loss\.label_weight` is 0 and so is'):
        stage_configs(load_config([write(tmp_path, base + '  label_weight: 0\n')]))
    with pytest.raises(ConfigError, match=r'`loss\.label_weight` must be >= 0'):
        stage_configs(load_config([write(tmp_path, base + '  label_weight: -0.5\n')]))
    with pytest.raises(ConfigError, match=r'`loss\.label_weight` applies to the single_step'):
        stage_configs(load_config([write(tmp_path, base.replace('single_step', 'depth')
                                         + '  label_weight: 0.5\n')]))
    (cfg,) = stage_configs(load_config([write(
        tmp_path, base + '  label_weight: 0\n  teacher_weight: 1.5\n')]))
    assert cfg['loss']['label_weight'] == 0.0
    stage = build_stage(copy.deepcopy(tiny_model), cfg)
    batch = teacher_batch()
    rgb = batch['rgb_clean']
    batch['rgb'] = (rgb * 0.6).clamp(-1, 1)
    loss, logs = stage(batch, torch.Generator().manual_seed(1), 0.0)
    # the labels are still scored (logged) but do not enter the loss
    assert logs['depth_code_loss'].item() > 0.05 and logs['teacher_loss'].item() > 0
    assert loss.item() == pytest.approx(1.5 * logs['teacher_loss'].item(), rel=1e-5)
    # the same image for student and teacher: nothing left to learn
    batch['rgb'] = rgb.clone()
    loss, _ = stage(batch, torch.Generator().manual_seed(1), 0.0)
    assert loss.item() < 1e-5


def test_the_teacher_normalises_as_the_starting_checkpoint_did(tiny_model):
    import copy
    from metricgold_core.model.image_processing import normalize_exposure
    from metricgold_core.training.config import DEFAULTS
    from metricgold_core.training.stages import build_stage
    cfg = copy.deepcopy(DEFAULTS)
    cfg['stage'], cfg['loss']['teacher_weight'] = 'single_step', 1.0
    model = copy.deepcopy(tiny_model)
    model.meta['input_normalization'] = {'mean': 0.3}
    stage = build_stage(model, cfg)
    raw = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 1.2 - 1
    batch = {'rgb': normalize_exposure(raw, {'mean': 0.3}), 'rgb_clean': raw,
             'teacher': torch.ones(2, 1), 'depth_code': torch.zeros(2, 1, 32, 32),
             'valid': torch.ones(2, 1, 32, 32, dtype=torch.bool)}
    # the student's input is the normalised image: so is the teacher's, and they agree
    _, logs = stage(batch, torch.Generator().manual_seed(1), 0.0)
    assert logs['teacher_loss'].item() < 1e-5
    # a student trained with another normalisation still gets the starting model's target
    batch['rgb'] = normalize_exposure(raw, {'mean': 0.3, 'spread': 0.3})
    _, logs = stage(batch, torch.Generator().manual_seed(1), 0.0)
    assert logs['teacher_loss'].item() > 1e-4
