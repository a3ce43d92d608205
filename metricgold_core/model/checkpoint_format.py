"""The checkpoint format's vocabulary, shared by the model and its optional parts (the light
decoder head): file names, the format version, CheckpointError and JSON helpers. Imports
nothing of the package, so no module needs to import model.py for these (docs/CORE.md "Checkpoint
format" describes the layout).
"""
from __future__ import annotations

import json
from pathlib import Path

FORMAT_VERSION = 1
META_FILE = 'metricgold.json'
EMBEDDING_FILE = 'empty_text_embedding.safetensors'
WEIGHTS_FILE = 'diffusion_pytorch_model.safetensors'
PICKLE_SUFFIXES = ('.bin', '.ckpt', '.pt', '.pth', '.pkl', '.pickle')


class CheckpointError(ValueError):
    """A checkpoint directory is missing a part, has a malformed one, or holds pickled weights."""


def read_json(path: Path) -> dict:
    """A JSON object from a checkpoint file; CheckpointError naming the file otherwise."""
    if not path.exists():
        raise CheckpointError(f'{path} is missing.')
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f'{path}: not valid JSON ({exc}).') from exc
    if not isinstance(data, dict):
        raise CheckpointError(f'{path}: expected a JSON object.')
    return data


def write_json(path: Path, data: dict) -> None:
    """Indented, key-sorted JSON (inside a directory that is written atomically as a whole)."""
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write('\n')
