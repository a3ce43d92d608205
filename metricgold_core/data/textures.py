"""Procedural surface textures for the scene generator: value noise and a few material patterns.

A material is a dict with a `pattern` name, a base `color` (linear RGB in [0, 1]) and pattern
parameters. `albedo(material, hit)` returns linear RGB (N, 3) for the hit points of one shape and
an emission term (N, 3) for self-lit surfaces (windows, lamps). Coordinates are metres, so a
texture keeps its physical size at every distance (a cue the network can learn scale from).
"""
from __future__ import annotations

import numpy as np


_PERIOD = 64      # lattice cells before a baked texture repeats (power of two)
_SAMPLES = 8      # baked samples per lattice cell (power of two)
_BAKED = {}       # octaves -> flat baked fbm texture (built once per process)


def _baked_fbm(octaves: int) -> np.ndarray:
    """fbm of `octaves` value-noise layers sampled on a tileable (P*S)^2 grid, flat and padded
    for bilinear reads.

    Baking once turns every later fbm evaluation into a single bilinear lookup (3-4x cheaper
    than summing octaves per pixel). All octaves share the period, so the texture tiles.
    """
    if octaves not in _BAKED:
        table = np.random.default_rng(20241126).random((_PERIOD, _PERIOD), dtype=np.float32)
        n = _PERIOD * _SAMPLES
        total = np.zeros((n, n), dtype=np.float32)
        amp, norm = 1.0, 0.0
        for k in range(octaves):
            # grid rows vary only u and columns only v: lattice cells and weights are 1-D
            x = np.arange(n, dtype=np.float64) / _SAMPLES * 2 ** k + 17 * k
            i0 = np.floor(x).astype(np.int64)
            f = (x - i0).astype(np.float32)
            w = f * f * (3.0 - 2.0 * f)  # smoothstep: no visible lattice creases
            i0 %= _PERIOD
            i1 = (i0 + 1) % _PERIOD
            wu, wv = w[:, None], w[None, :]
            top = table[i0[:, None], i0[None, :]] * (1 - wv) + table[i0[:, None], i1[None, :]] * wv
            bottom = (table[i1[:, None], i0[None, :]] * (1 - wv)
                      + table[i1[:, None], i1[None, :]] * wv)
            total += amp * (top * (1 - wu) + bottom * wu)
            norm += amp
            amp *= 0.5
        flat = np.empty(n * n + n + 1, dtype=np.float32)
        flat[:n * n] = (total / norm).ravel()
        flat[n * n:] = flat[:n + 1]  # wrap so that index + n + 1 stays in range
        _BAKED[octaves] = flat
    return _BAKED[octaves]


class ValueNoise:
    """Smooth 2-D fractal noise; each scene reads the shared baked texture at its own offset."""

    def __init__(self, rng: np.random.Generator):
        self.offset = rng.uniform(0.0, _PERIOD, size=2)

    def fbm(self, u: np.ndarray, v: np.ndarray, octaves: int = 3) -> np.ndarray:
        """Fractal sum of `octaves` (1-4) noise layers at lattice coordinates (u, v), in [0, 1]."""
        flat = _baked_fbm(int(min(max(octaves, 1), 4)))
        n = _PERIOD * _SAMPLES
        x = (np.asarray(u, np.float32) + np.float32(self.offset[0])) * np.float32(_SAMPLES)
        y = (np.asarray(v, np.float32) + np.float32(self.offset[1])) * np.float32(_SAMPLES)
        ix, iy = np.floor(x), np.floor(y)
        fx, fy = x - ix, y - iy
        mask = n - 1  # n is a power of two: & wraps like % but much faster
        base = ((ix.astype(np.int32) & mask) * n) | (iy.astype(np.int32) & mask)
        c00, c01 = flat.take(base), flat.take(base + 1)
        c10, c11 = flat.take(base + n), flat.take(base + n + 1)
        top = c00 + (c10 - c00) * fx
        bottom = c01 + (c11 - c01) * fx
        return top + (bottom - top) * fy


def cell_hash(i: np.ndarray, j: np.ndarray, salt: int = 0) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer cell (i, j)."""
    h = (i.astype(np.int64) * 73856093) ^ (j.astype(np.int64) * 19349663) ^ (salt * 83492791)
    h = (h ^ (h >> 13)) * 1274126177
    return ((h ^ (h >> 16)) & 0xFFFF).astype(np.float32) / 65536.0


def _lines(x: np.ndarray, period: float, width: float) -> np.ndarray:
    """True where x is within `width` of a multiple of `period` (grout, seams, frames)."""
    f = np.mod(x, period)
    return (f < width) | (f > period - width)


def albedo(material: dict, hit: dict, noise: ValueNoise) -> tuple:
    """Linear-RGB albedo (N, 3) and emission (N, 3) of one shape's hit points."""
    pattern = material.get('pattern', 'matte')
    u, v = hit['uv'][:, 0], hit['uv'][:, 1]
    n = len(u)
    if pattern == 'per_face':  # e.g. a room: floor, ceiling and walls differ
        out = np.empty((n, 3), dtype=np.float32)
        emission = np.zeros((n, 3), dtype=np.float32)
        faces = hit['face']
        for face in np.unique(faces):
            sel = faces == face
            sub = {key: hit[key][sel] for key in ('uv', 'face', 'p_world')}
            sub_material = material['faces'].get(int(face), material['default'])
            out[sel], emission[sel] = albedo(sub_material, sub, noise)
        grain = noise.fbm(u * 4.0, v * 4.0, 2)
        for decal in material.get('decals', ()):
            _apply_decal(decal, hit, out, emission, grain)
        return out, emission
    color = np.asarray(material['color'], dtype=np.float32)
    emission = np.zeros((n, 3), dtype=np.float32)
    scale = material.get('scale', 1.0)
    grain = noise.fbm(u * 4.0 / scale, v * 4.0 / scale, 2)
    if pattern == 'matte':
        tone = 1.0 + material.get('roughness', 0.15) * (grain - 0.5)
        out = color[None, :] * tone[:, None]
    elif pattern == 'wood':
        plank = material.get('plank', 0.18)
        row = np.floor(v / plank)
        tint = 0.75 + 0.5 * cell_hash(row, np.floor((u + 7.0 * row) / 1.6))
        streak = noise.fbm(u * 1.5, v * 40.0, 2)
        tone = tint * (0.8 + 0.4 * streak)
        tone = np.where(_lines(v, plank, 0.006), tone * 0.55, tone)
        out = color[None, :] * tone[:, None]
    elif pattern == 'tiles':
        size = material.get('tile', 0.5)
        ti, tj = np.floor(u / size), np.floor(v / size)
        tint = 0.85 + 0.3 * cell_hash(ti, tj, 3)
        if material.get('checker', False):
            tint = tint * np.where((ti + tj) % 2 == 0, 1.0, 0.55)
        grout = _lines(u, size, 0.008) | _lines(v, size, 0.008)
        out = color[None, :] * (tint * (0.92 + 0.16 * grain))[:, None]
        out[grout] = np.asarray(material.get('grout', (0.35, 0.35, 0.33)), dtype=np.float32)
    elif pattern == 'brick':
        bh, bw = 0.075, 0.23
        row = np.floor(v / bh)
        shifted = u + 0.5 * bw * (row % 2)
        tint = 0.75 + 0.5 * cell_hash(np.floor(shifted / bw), row, 5)
        mortar = _lines(v, bh, 0.006) | _lines(shifted, bw, 0.006)
        out = color[None, :] * (tint * (0.85 + 0.3 * grain))[:, None]
        out[mortar] = (0.55, 0.53, 0.5)
    elif pattern == 'facade':
        out, emission = _facade(material, hit, color, grain)
    elif pattern == 'street':
        out = _street(material, hit, noise, grain)
    elif pattern == 'foliage':
        blobs = noise.fbm(u * 3.0, v * 3.0, 4)
        out = color[None, :] * (0.45 + 1.1 * blobs)[:, None] ** 1.5
    elif pattern == 'glass':
        out = color[None, :] * (0.6 + 0.4 * grain)[:, None]
        emit = np.asarray(material.get('emit', (0, 0, 0)), np.float32)
        emission = emit[None, :] * grain[:, None]
    elif pattern == 'emissive':
        out = color[None, :].repeat(n, 0)
        emission = np.asarray(material['emit'], dtype=np.float32)[None, :].repeat(n, 0)
    else:
        raise ValueError(f'unknown material pattern {pattern!r}')
    for decal in material.get('decals', ()):
        _apply_decal(decal, hit, out, emission, grain)
    return np.clip(out, 0.0, 1.0), emission


def _apply_decal(decal: dict, hit: dict, out: np.ndarray, emission: np.ndarray,
                 grain: np.ndarray) -> None:
    """Paint a rectangle (door, window, picture, lamp) onto one face, in place."""
    u, v = hit['uv'][:, 0], hit['uv'][:, 1]
    u0, u1, v0, v1 = decal['rect']
    inside = (hit['face'] == decal['face']) & (u >= u0) & (u <= u1) & (v >= v0) & (v <= v1)
    if not inside.any():
        return
    frame_w = decal.get('frame', 0.05)
    frame = inside & ((u - u0 < frame_w) | (u1 - u < frame_w) | (v - v0 < frame_w)
                      | (v1 - v < frame_w))
    fill = inside & ~frame
    out[fill] = np.asarray(decal['color'], np.float32)[None, :] * (0.9 + 0.2 * grain[fill, None])
    out[frame] = np.asarray(decal.get('frame_color', (0.8, 0.8, 0.78)), np.float32)
    if 'emit' in decal:
        glow = np.asarray(decal['emit'], np.float32)[None, :]
        # a window's view is brighter towards its top (sky) than its bottom (ground)
        rise = np.clip((v[fill] - v0) / max(v1 - v0, 1e-6), 0.0, 1.0)[:, None]
        emission[fill] = glow * (0.6 + 0.6 * rise)
    if decal.get('bars'):
        mid_u = (u0 + u1) * 0.5
        bars = fill & ((np.abs(u - mid_u) < 0.02) | (np.abs(v - (v0 + v1) * 0.5) < 0.02))
        out[bars] = np.asarray(decal.get('frame_color', (0.8, 0.8, 0.78)), np.float32)
        emission[bars] = 0.0


def _facade(material: dict, hit: dict, color: np.ndarray, grain: np.ndarray) -> tuple:
    """Building wall with a grid of windows on its side faces and a plain roof."""
    u, v, face = hit['uv'][:, 0], hit['uv'][:, 1], hit['face']
    n = len(u)
    out = color[None, :] * (0.85 + 0.3 * grain)[:, None]
    emission = np.zeros((n, 3), dtype=np.float32)
    side = (face != 2) & (face != 3)  # box faces 2/3 are -y/+y (floor/roof)
    storey, spacing = material.get('storey', 3.2), material.get('spacing', 3.0)
    win_w, win_h = material.get('win_w', 1.4), material.get('win_h', 1.6)
    fu, fv = np.mod(u, spacing), np.mod(v, storey)
    col, row = np.floor(u / spacing), np.floor(v / storey)
    window = (side & (np.abs(fu - spacing / 2) < win_w / 2)
              & (np.abs(fv - storey * 0.55) < win_h / 2))
    window &= row >= 1 if material.get('shop', False) else v > 0.8
    lit = cell_hash(col, row, 11 + face.astype(np.int64))
    glass = np.asarray(material.get('glass', (0.12, 0.16, 0.2)), np.float32)
    out[window] = glass * (0.6 + 0.9 * lit[window, None])
    if material.get('shop', False):
        shopfront = side & (row < 1) & (fv > 0.3) & (fv < 2.6) & (np.abs(fu - spacing / 2) < 1.3)
        out[shopfront] = (0.1, 0.12, 0.13)
        emission[shopfront] = (0.25, 0.22, 0.15)
    roof = ~side
    out[roof] = color * 0.45 * (0.8 + 0.4 * grain[roof, None])
    return out, emission


def _street(material: dict, hit: dict, noise: ValueNoise, grain: np.ndarray) -> np.ndarray:
    """Ground: asphalt road with lane marks, kerb, pavement slabs, then grass or gravel."""
    p = hit['p_world']
    ax = np.asarray(material['road_dir'], dtype=np.float64)  # unit vector along the road (xz)
    along = p[:, 0] * ax[0] + p[:, 2] * ax[1]
    across = -p[:, 0] * ax[1] + p[:, 2] * ax[0] - material.get('road_offset', 0.0)
    half = material['road_half_width']
    walk = material['sidewalk']
    a = np.abs(across)
    fine = noise.fbm(along * 3.0, across * 3.0, 2)
    asphalt = np.asarray(material['asphalt'], np.float32)
    out = asphalt[None, :] * (0.75 + 0.5 * fine)[:, None]
    lane = (a < 0.07) & (np.mod(along, 9.0) < 4.5)
    edge = np.abs(a - (half - 0.35)) < 0.07
    out[lane | edge] = (0.75, 0.75, 0.7)
    pave = (a >= half) & (a < half + walk)
    slab = _lines(along, 1.0, 0.015) | _lines(across, 1.0, 0.015)
    kerb = pave & (a < half + 0.25)
    out[pave] = np.array((0.42, 0.41, 0.39), np.float32) * (0.85 + 0.3 * grain[pave, None])
    out[pave & slab] = (0.25, 0.25, 0.24)
    out[kerb] = (0.55, 0.55, 0.53)
    verge = a >= half + walk
    ground = np.asarray(material['verge'], np.float32)
    patches = noise.fbm(p[verge, 0] * 0.15, p[verge, 2] * 0.15, 3)
    out[verge] = ground * (0.55 + 0.45 * grain[verge, None] + 0.4 * patches[:, None])
    return out
