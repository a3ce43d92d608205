"""Training configuration: defaults, YAML recipes, `key=value` overrides, validation.

A config is a plain nested dict. `DEFAULTS` is also the schema: every key a recipe may set is
here, and its default's type is the type a value must have (None = any; an int is accepted
where a float is expected). Recipes are merged in order (`--config a.yaml --config b.yaml`, so
a small overlay such as `debug.yaml` changes only what it names), then command-line overrides.

A recipe may list `stages`: each entry is a partial config (it must have a `name`) applied on
top of the shared one, run in order, each starting from the previous stage's exported model.
`every_stage` (a partial config) is applied last, on top of each stage: overlays use it.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path

import yaml

STAGES = ('autoencoder', 'depth_vae', 'depth', 'single_step')
MIXED_PRECISION = ('auto', 'no', 'fp16', 'bf16')

DEFAULTS = {
    'name': 'run',
    'stage': 'depth',            # one of STAGES
    'output_dir': 'runs/metricgold',
    'seed': 0,
    'device': 'auto',            # auto | cpu | cuda
    'mixed_precision': 'auto',   # bf16 (or fp16) on CUDA, no on CPU
    'num_threads': 0,            # torch CPU threads; 0 = leave torch's default
    'max_steps': 1000,           # optimizer steps of this stage
    # Wall-clock budget of this stage's steps (s); 0 = none. The stage then ends at max_steps
    # or at the step the measured speed reaches within the budget, whichever is first, with
    # the LR decay shortened to end there (see schedule.StepBudget).
    'max_seconds': 0.0,
    'model': {
        # preset:NAME (random init) | stable_diffusion:DIR_OR_HUB_ID | checkpoint:DIR;
        # 'previous' = the export of the stage before (the default inside `stages`).
        'init': 'preset:tiny',
        'd_min': 0.1,
        'd_max': 100.0,
        'processing_resolution': 0,     # stored in the export; 0 = max(data.height, width)
        # Labels depth * f_c / fx (fx at the training resolution); stored in the export, and
        # every entry point multiplies predictions by fx / f_c. None = raw metres.
        'canonical_focal_px': None,
        # {mean: m}: each input image brought to mean grey m ([-1, 1] units) by one gain
        # before the VAE (training and inference alike; stored in the export). None = off.
        # {mean: m, spread: s}: then also its spread (std over all pixels and channels) to s
        # around that mean, one factor for all channels (contrast and tone curves).
        # white_balance: w in (0, 1]: first each channel's mean brought toward the mean of the
        # channels (grey world at strength w; undoes white-balance changes).
        'input_normalization': None,
        # Predictions at or beyond this canonical depth (m) are published as NaN (sky, out of
        # the codec's reach); stored in the export. None = no limit.
        'far_limit_m': None,
        'gradient_checkpointing': False,
    },
    'data': {
        'height': 96,
        'width': 128,
        'micro_batch': 2,              # samples per forward pass and device
        'num_workers': -1,             # data processes; -1 = auto (CPU cores - 1, at most 16)
        'hflip': True,                 # random horizontal flip (deterministic per sample)
        'photometric': 0.0,            # probability of a random camera-like change of a
                                       # sample's image (data.photometric); labels unchanged
        'sky': 'invalid',              # invalid: sky unsupervised | far: labelled d_max
        'train': [],                   # list of dataset entries, see DATASET_DEFAULTS
        'val_count': 16,               # held-out procedural scenes for validation
        'val_seed': 1000,              # their ProceduralScenes seed (never a training seed)
        'val_type': 'procedural',      # or module:Class with ProceduralScenes' signature
    },
    'optim': {
        'lr': 3e-5,
        'weight_decay': 0.0,
        'betas': [0.9, 0.999],
        'grad_accum': 16,              # micro-batches per optimizer step
        'max_grad_norm': 1.0,          # 0 = no clipping
        'warmup_steps': 100,
        'decay_steps': 25000,          # exponential decay to final_lr_ratio over these steps
        'final_lr_ratio': 0.01,
        'ema_decay': 0.999,            # 0 = no EMA (export the raw weights)
    },
    'diffusion': {
        'pyramid_strength': 0.9,       # multi-resolution noise; 0 = plain Gaussian
        'pyramid_anneal': 'timestep',  # timestep (Marigold) | training | none
        'pyramid_levels': 10,
    },
    'loss': {
        'depth_weight': 1.0,           # autoencoder: weight of the depth-code reconstruction
        'rgb_weight': 1.0,             # autoencoder: weight of the RGB reconstruction
        'kl_weight': 1e-6,             # autoencoder
        'latent_noise_std': 0.0,       # depth_vae: noise on the latent so the decoder
                                       # tolerates the UNet's errors
        'decoded_loss': 'l1',          # single_step / depth_vae / autoencoder: l1 | l2
        'fit_latent_scale': True,      # autoencoder: set scaling_factor = 1 / std(latents)
        'label_weight': 1.0,           # single_step: weight of the depth-code loss against the
                                       # labels (0 with teacher_weight > 0: pure consistency
                                       # distillation from the starting model)
        'teacher_weight': 0.0,         # single_step: weight of the L1 between the prediction
                                       # on the (changed) image and the frozen starting
                                       # model's on the unchanged one (photometric
                                       # consistency; datasets with `teacher: false` skip it)
    },
    'log': {
        'every': 10,                   # steps between scalar logs
        'tensorboard': True,
        'progress': True,              # tqdm bar
    },
    'val': {
        'every': 500,                  # steps between validations; 0 = only at the end
        'at_start': False,             # also validate before the first step
        'images': 4,                   # image panels written to TensorBoard
    },
    'checkpoint': {
        'every': 500,                  # steps between checkpoints; 0 = only at the end/signal
        'keep': 3,
    },
    'stages': [],
    # A partial config applied on top of every stage entry (and of a single-stage recipe), so
    # an overlay such as debug.yaml can shorten a multi-stage recipe.
    'every_stage': {},
}

DATASET_DEFAULTS = {
    # procedural | a reader name of metricgold_core.data.registry (hypersim, vkitti2, ...) |
    # 'package.module:Class'; readers are constructed with `kwargs` (root, split, ...)
    'type': 'procedural',
    'probability': 1.0,
    'length': 1_000_000,               # procedural: number of distinct scenes
    'seed': 0,                         # procedural: scene stream (val uses data.val_seed)
    'kinds': ['indoor', 'outdoor'],    # procedural
    'framing': 'normal',               # procedural: normal | close (0.3-1.5 m from a surface)
    'cache': '',                       # procedural: folder of a pre-rendered scene cache
                                       # (rendered once on first use, then reused)
    'kwargs': {},                      # reader constructor arguments (`root` must exist)
    'height': 0,                       # resize samples to this size; 0 = data.height/width
    'width': 0,
    'kb_crop': False,                  # KITTI benchmark crop (bottom-centre 352 x 1216) first
    'teacher': True,                   # loss.teacher_weight applies to this dataset's samples
}

PATH_KWARGS = ('root', 'split', 'path', 'data_dir')


class ConfigError(ValueError):
    """A recipe or override is wrong; the message names the key."""


def load_config(paths, overrides=()) -> dict:
    """Merge DEFAULTS, the YAML files in order and `key.sub=value` overrides; validate."""
    cfg = copy.deepcopy(DEFAULTS)
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f'config file {str(path)!r} does not exist.')
        with open(path, encoding='utf-8') as f:
            try:
                data = yaml.safe_load(f) or {}
            except yaml.YAMLError as exc:
                raise ConfigError(f'{path}: not valid YAML ({exc}).') from exc
        if not isinstance(data, dict):
            raise ConfigError(f'{path}: expected a mapping at the top level.')
        cfg = merge(cfg, data, where=str(path))
    for item in overrides:
        apply_override(cfg, item)
    validate(cfg)
    return cfg


def merge(base: dict, update: dict, where: str = '', prefix: str = '') -> dict:
    """`base` updated by `update` recursively; lists are replaced; unknown keys are errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f'{prefix}{key}'
        if key not in out:
            raise ConfigError(_unknown(dotted, out, where))
        if key == 'every_stage' and not prefix:
            if not isinstance(value, dict):
                raise ConfigError(f'{_at(where)}`every_stage` must be a mapping.')
            out[key] = _deep_update(out[key], value)  # partial: checked by validate()
        elif isinstance(out[key], dict) and key != 'kwargs':
            if not isinstance(value, dict):
                raise ConfigError(f'{_at(where)}`{dotted}` must be a mapping, got {value!r}.')
            out[key] = merge(out[key], value, where, dotted + '.')
        else:
            out[key] = copy.deepcopy(value)
    return out


def _deep_update(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != 'kwargs':
            out[key] = _deep_update(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_override(cfg: dict, item: str) -> None:
    """Apply one `a.b.c=value` (value parsed as YAML; list items by index: stages.1.max_steps)."""
    if '=' not in item:
        raise ConfigError(f'override {item!r} must look like key.sub=value.')
    dotted, raw = item.split('=', 1)
    try:
        value = yaml.safe_load(raw) if raw != '' else ''
    except yaml.YAMLError as exc:
        raise ConfigError(f'override `{dotted}`: cannot parse {raw!r} ({exc}).') from exc
    keys = dotted.strip().split('.')
    node = cfg
    for i, key in enumerate(keys):
        last = i == len(keys) - 1
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f'override `{dotted}`: `{key}` is not an index of a list '
                                  f'of {len(node)}.')
            key = int(key)
        elif key not in node:
            if not _in_stage_entry(keys, i):
                raise ConfigError(_unknown('.'.join(keys[:i + 1]), node, 'override'))
            node[key] = value if last else {}
        if last:
            node[key] = value
        else:
            node = node[key]


def _in_stage_entry(keys, i) -> bool:
    # Stage entries and every_stage are partial configs: schema keys may be added to them.
    return (len(keys) > 2 and keys[0] == 'stages' and i >= 2
            or len(keys) > 1 and keys[0] == 'every_stage' and i >= 1)


def stage_configs(cfg: dict) -> list[dict]:
    """The list of full, validated configs to run: one per entry of `stages`, or cfg itself."""
    base = copy.deepcopy(cfg)
    base['stages'], base['every_stage'] = [], {}
    if not cfg['stages']:
        single = merge(base, cfg['every_stage'], where='every_stage')
        validate(single)
        return [single]
    out = []
    for i, entry in enumerate(cfg['stages']):
        if not isinstance(entry, dict) or 'name' not in entry:
            raise ConfigError(f'`stages[{i}]` must be a mapping with a `name`.')
        stage = merge(base, entry, where=f'stages[{i}]')
        stage = merge(stage, cfg['every_stage'], where='every_stage')
        if i > 0 and 'init' not in entry.get('model', {}):
            stage['model']['init'] = 'previous'
        stage['output_dir'] = str(Path(cfg['output_dir']) / f'{i}_{stage["name"]}')
        validate(stage, where=f'stages[{i}] ({stage["name"]}): ')
        out.append(stage)
    names = [s['name'] for s in out]
    if len(set(names)) != len(names):
        raise ConfigError(f'`stages` names must be unique, got {names}.')
    return out


def validate(cfg: dict, where: str = '') -> None:
    """Check types and values; raise ConfigError naming the first bad key."""
    _check_types(cfg, DEFAULTS, '', where)
    for i, entry in enumerate(cfg['stages']):
        if not isinstance(entry, dict):
            raise ConfigError(f'{where}`stages[{i}]` must be a mapping, got {entry!r}.')
        _check_types(entry, DEFAULTS, f'stages[{i}].', where, partial=True)
    _check_types(cfg['every_stage'], DEFAULTS, 'every_stage.', where, partial=True)
    if cfg['stages'] or cfg['every_stage']:
        return  # the merged stages are validated one by one in stage_configs()

    def need(ok, key, text):
        if not ok:
            raise ConfigError(f'{where}`{key}` {text}')

    need(cfg['stage'] in STAGES, 'stage', f'must be one of {STAGES}, got {cfg["stage"]!r}.')
    need(cfg['mixed_precision'] in MIXED_PRECISION, 'mixed_precision',
         f'must be one of {MIXED_PRECISION}, got {cfg["mixed_precision"]!r}.')
    need(cfg['device'] in ('auto', 'cpu', 'cuda'), 'device',
         f'must be auto, cpu or cuda, got {cfg["device"]!r}.')
    need(cfg['max_steps'] >= 1, 'max_steps', f'must be >= 1, got {cfg["max_steps"]}.')
    init = cfg['model']['init']
    init_kinds = ('preset', 'stable_diffusion', 'checkpoint')
    need(init == 'previous' or ':' in init and init.split(':', 1)[0] in init_kinds,
         'model.init', f'must be preset:NAME, stable_diffusion:DIR_OR_ID or checkpoint:DIR, '
         f'got {init!r}.')
    if init.startswith('checkpoint:'):
        need(Path(init.split(':', 1)[1]).is_dir(), 'model.init',
             f'names a checkpoint directory that does not exist: {init!r}.')
    need(0 < cfg['model']['d_min'] < cfg['model']['d_max'], 'model.d_min',
         'must be > 0 and < model.d_max.')
    data = cfg['data']
    for key in ('height', 'width'):
        need(data[key] >= 8 and data[key] % 8 == 0, f'data.{key}',
             f'must be a multiple of 8 (the VAE down-sampling), got {data[key]}.')
    need(data['micro_batch'] >= 1, 'data.micro_batch', 'must be >= 1.')
    need(0.0 <= data['photometric'] <= 1.0, 'data.photometric', 'must be in [0, 1].')
    need(data['sky'] in ('invalid', 'far'), 'data.sky', f'must be invalid or far, got '
         f'{data["sky"]!r}.')
    norm = cfg['model']['input_normalization']

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    need(norm is None or isinstance(norm, dict) and 'mean' in norm
         and set(norm) <= {'mean', 'spread', 'white_balance'}
         and number(norm['mean']) and -1 < norm['mean'] < 1
         and (norm.get('spread') is None or number(norm['spread']) and 0 < norm['spread'] < 1)
         and (norm.get('white_balance') is None
              or number(norm['white_balance']) and 0 < norm['white_balance'] <= 1),
         'model.input_normalization',
         'must be null or {mean: m} with optional spread: s and white_balance: w, '
         '-1 < m < 1, 0 < s < 1, 0 < w <= 1.')
    far = cfg['model']['far_limit_m']
    need(far is None or isinstance(far, (int, float)) and far > 0, 'model.far_limit_m',
         'must be null or a depth > 0 m.')
    need(data['num_workers'] >= -1, 'data.num_workers', 'must be >= 0, or -1 for auto.')
    need(len(data['train']) >= 1, 'data.train', 'must list at least one dataset.')
    for i, entry in enumerate(data['train']):
        _check_dataset(entry, f'data.train[{i}]', where)
    optim = cfg['optim']
    need(optim['lr'] > 0, 'optim.lr', 'must be > 0.')
    need(optim['grad_accum'] >= 1, 'optim.grad_accum', 'must be >= 1.')
    need(0 <= optim['ema_decay'] < 1, 'optim.ema_decay', 'must be in [0, 1).')
    need(0 < optim['final_lr_ratio'] <= 1, 'optim.final_lr_ratio', 'must be in (0, 1].')
    need(len(optim['betas']) == 2, 'optim.betas', 'must be two numbers.')
    need(cfg['diffusion']['pyramid_anneal'] in ('timestep', 'training', 'none'),
         'diffusion.pyramid_anneal', 'must be timestep, training or none.')
    need(cfg['loss']['decoded_loss'] in ('l1', 'l2'), 'loss.decoded_loss', 'must be l1 or l2.')
    teacher = cfg['loss']['teacher_weight']
    need(teacher >= 0, 'loss.teacher_weight', f'must be >= 0, got {teacher}.')
    need(teacher == 0 or cfg['stage'] == 'single_step', 'loss.teacher_weight',
         f'applies to the single_step stage only, not {cfg["stage"]!r}.')
    label = cfg['loss']['label_weight']
    need(label >= 0, 'loss.label_weight', f'must be >= 0, got {label}.')
    need(label == 1 or cfg['stage'] == 'single_step', 'loss.label_weight',
         f'applies to the single_step stage only, not {cfg["stage"]!r}.')
    need(label > 0 or teacher > 0, 'loss.label_weight',
         'is 0 and so is loss.teacher_weight: nothing would be learned.')
    need(cfg['checkpoint']['keep'] >= 1, 'checkpoint.keep', 'must be >= 1.')


def _check_dataset(entry, key: str, where: str) -> None:
    if not isinstance(entry, dict):
        raise ConfigError(f'{where}`{key}` must be a mapping, got {entry!r}.')
    _check_types(entry, DATASET_DEFAULTS, key + '.', where, partial=True)
    entry_full = {**DATASET_DEFAULTS, **entry}
    if entry_full['probability'] <= 0:
        raise ConfigError(f'{where}`{key}.probability` must be > 0.')
    kind = entry_full['type']
    from ..data.framing import FRAMINGS
    if entry_full['framing'] not in FRAMINGS:
        raise ConfigError(f'{where}`{key}.framing` must be one of {FRAMINGS}, got '
                          f'{entry_full["framing"]!r}.')
    from ..data.registry import DATASETS
    if kind != 'procedural' and kind not in DATASETS and ':' not in kind:
        raise ConfigError(f'{where}`{key}.type` must be procedural, one of '
                          f'{sorted(DATASETS)} or package.module:Class, got {kind!r}.')
    for name in PATH_KWARGS:
        value = entry_full['kwargs'].get(name)
        if value is not None and not Path(str(value)).exists():
            raise ConfigError(f'{where}`{key}.kwargs.{name}`: dataset path {str(value)!r} does '
                              'not exist (download the dataset or fix the path).')


def _check_types(cfg: dict, schema: dict, prefix: str, where: str, partial=False) -> None:
    for key, value in cfg.items():
        dotted = f'{prefix}{key}'
        if key not in schema:
            raise ConfigError(where + _unknown(dotted, schema, ''))
        expected = schema[key]
        if expected is None or key == 'every_stage' and not prefix:
            continue  # every_stage is checked on its own, as a partial config
        if isinstance(expected, dict) and key != 'kwargs':
            if not isinstance(value, dict):
                raise ConfigError(f'{where}`{dotted}` must be a mapping, got {value!r}.')
            _check_types(value, expected, dotted + '.', where, partial)
        elif isinstance(expected, float) and isinstance(value, str) and _is_float(value):
            cfg[key] = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
        elif not _type_ok(value, expected):
            raise ConfigError(f'{where}`{dotted}` must be {type(expected).__name__}, got '
                              f'{value!r} ({type(value).__name__}).')


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _type_ok(value, expected) -> bool:
    if isinstance(expected, bool):
        return isinstance(value, bool)
    if isinstance(expected, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(expected, int):
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, type(expected))


def _unknown(dotted: str, known: dict, where: str) -> str:
    leaf = dotted.rsplit('.', 1)[-1]
    close = difflib.get_close_matches(leaf, [str(k) for k in known], n=1)
    hint = f' (did you mean `{close[0]}`?)' if close else ''
    return f'{_at(where)}unknown key `{dotted}`{hint}.'


def _at(where: str) -> str:
    return f'{where}: ' if where else ''


def to_yaml(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
