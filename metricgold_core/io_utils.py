"""File helpers: atomic writes (temp file in the same directory, then rename) and image reading.

Every file the package writes goes through atomic_path (or save_*), every directory through
atomic_dir: a reader sees the old version or the new one, never half of one. Temporaries, files
and directories alike, are `.<name>.<random>.tmp` beside their target: TMP_GLOB finds what a
killed run left, remove_temporaries deletes it.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
import shutil
import tempfile

import numpy as np


TMP_GLOB = '.*.tmp'


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, create: bool = True):
    """Yield a temporary directory beside `path`; when the block ends without an exception it
    replaces `path` (replace_dir), else it is deleted.

    `create=False` is for writers that make the directory themselves and name files after it
    (rosbag2): the path yielded does not exist yet and has the target's own name, inside the
    temporary directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent))
    tmp = holder if create else holder / path.name
    try:
        yield tmp
        replace_dir(tmp, path)
    finally:
        shutil.rmtree(holder, ignore_errors=True)  # gone already when it became `path`


def replace_dir(src, dst) -> None:
    """Move the finished directory src to dst; an existing dst is replaced only at the end.

    A directory cannot replace a non-empty one in one rename: the old one is moved aside to a
    temporary name first, so `dst` is missing for an instant but never holds half of anything."""
    src, dst = Path(src), Path(dst)
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f'.{dst.name}.', suffix='.old.tmp', dir=dst.parent))
        old.rmdir()
        os.replace(dst, old)
        os.replace(src, dst)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(src, dst)


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries (TMP_GLOB) a killed writer left in `folder`; returns them.
    Only for folders that nothing else is writing into at the time."""
    folder = Path(folder)
    found = sorted(folder.glob(TMP_GLOB)) if folder.is_dir() else []
    for path in found:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found


def save_npy(path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, 'wb') as f:
            np.save(f, array)


def save_png(path, array: np.ndarray, compress_level: int = 6) -> None:
    """uint8 (H, W) / (H, W, 3) or uint16 (H, W) array -> PNG, atomically; `compress_level`
    0..9 is zlib's (lower: faster, larger files)."""
    from PIL import Image
    if array.dtype == np.uint16:
        image = Image.fromarray(array)
    elif array.dtype == np.uint8:
        image = Image.fromarray(array)
    else:
        raise ValueError(f'PNG arrays must be uint8 or uint16, got {array.dtype}.')
    with atomic_path(path) as tmp:
        image.save(tmp, format='PNG', compress_level=compress_level)


def save_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding='utf-8')


def intensity_to_u8(values: np.ndarray) -> np.ndarray:
    """A 16-bit or float intensity image (IR, thermal) -> uint8, stretched from its own min to
    max (a flat image is black); uint8 passes through. The one rule for the node's mono16 /
    32FC1 input and for such image files. Non-finite values must be handled by the caller."""
    if values.dtype == np.uint8:
        return values
    values = values.astype(np.float32)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return ((values - lo) * (255.0 / (hi - lo)) + 0.5).astype(np.uint8)


def read_rgb(path) -> np.ndarray:
    """Any image file Pillow reads -> uint8 RGB (H, W, 3). Raises ValueError naming the file.

    16-bit and float grey images are stretched min..max (intensity_to_u8)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ('I;16', 'I;16B', 'I', 'F'):
                arr = np.nan_to_num(np.asarray(image, dtype=np.float32), nan=0.0, posinf=0.0,
                                    neginf=0.0)
                return np.repeat(intensity_to_u8(arr)[..., None], 3, axis=2)
            return np.asarray(image.convert('RGB'), dtype=np.uint8).copy()
    except FileNotFoundError as exc:
        raise ValueError(f'{path}: no such file.') from exc
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f'{path}: not a readable image ({exc}).') from exc


def depth_to_mm_png(depth_m: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (0 = invalid, saturates at 65.535 m)."""
    mm = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000.0), 0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


def file_stem(name: str) -> str:
    """A frame name made safe as one file name."""
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name.replace('/', '__'))
