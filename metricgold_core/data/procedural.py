"""Procedural indoor and outdoor scenes with exact metric z-depth, for training and tests.

`render_scene(seed, height, width)` is deterministic in its seed: it lays out a room (2-15 m,
furniture-like boxes, cylinders, spheres, doors, windows, lamps) or a street (road, buildings,
cars, poles, trees, hills; geometry out to a few hundred metres, sky invalid), picks a pinhole
camera (horizontal FOV 40-100 deg) and pose (height, pitch, roll, yaw), ray casts it and shades
it (sun or lamps, sky light, corner occlusion, haze, vignetting, sensor noise).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .framing import close_view, FRAMINGS
from .layouts import indoor_layout
from .photometric import vignetting_falloff
from .raycast import cast
from .street import outdoor_layout
from .textures import albedo, ValueNoise
from ..camera.geometry import intrinsics_from_hfov

KINDS = ('indoor', 'outdoor')


def camera_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera -> world rotation (columns right, down, forward) for a y-up world; radians.

    yaw turns left-right about the vertical, pitch > 0 looks up, roll turns about the view axis.
    """
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch),
                        math.cos(yaw) * math.cos(pitch)])
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = math.cos(roll), math.sin(roll)
    right, down = c * right + s * down, -s * right + c * down
    return np.stack([right, down, forward], axis=1)


def _random_K(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Square-pixel pinhole, horizontal FOV 40-100 deg, principal point within 2 % of centre."""
    K = intrinsics_from_hfov(width, height, float(rng.uniform(40.0, 100.0)))
    K[0, 2] += rng.uniform(-0.02, 0.02) * width
    K[1, 2] += rng.uniform(-0.02, 0.02) * height
    return K


def _sky(dirs: np.ndarray, sun: np.ndarray, palette: dict, noise: ValueNoise) -> np.ndarray:
    """Sky colour (N, 3) linear RGB for world ray directions (N, 3): gradient, sun glow, clouds."""
    d = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    up = np.clip(d[:, 1], 0.0, 1.0)[:, None]
    horizon = np.asarray(palette['horizon'], np.float32)
    zenith = np.asarray(palette['zenith'], np.float32)
    sky = horizon + (zenith - horizon) * np.sqrt(up)
    glow = np.clip(d @ sun, 0.0, 1.0)[:, None] ** 32
    sky = sky + glow * np.array([1.0, 0.9, 0.7], np.float32)
    # clouds: noise on the sky dome, projected onto a plane so they flatten towards the horizon
    h = np.maximum(d[:, 1], 0.05)
    cloud = noise.fbm(d[:, 0] / h * 1.5 + 40.0, d[:, 2] / h * 1.5, 3)
    cover = palette.get('clouds', 0.4)
    amount = np.clip((cloud - (1.0 - cover)) * 3.0, 0.0, 1.0)[:, None]
    return sky * (1 - amount) + np.array([0.85, 0.86, 0.88], np.float32) * amount


SHADOW_MAP_PX = 192        # shadow-map resolution (square); ~1 m texels, PCF softens them
SHADOW_HALF_SIZE_M = 100.0  # it covers 200 m x 200 m around a point ahead of the camera
SUN_DISTANCE_M = 5000.0     # a far pinhole stands in for the sun's parallel rays


def _shadow_map(shapes: list, sun: np.ndarray, center: np.ndarray) -> dict:
    """Depth of the sun-facing occluders seen from far along `sun` (ground left out: it casts
    no shadow on anything, and leaving it out spares it the self-shadowing bias)."""
    forward = -sun
    yaw = math.atan2(forward[0], forward[2])
    pitch = math.asin(float(np.clip(forward[1], -1.0, 1.0)))
    R = camera_rotation(yaw, pitch, 0.0)
    eye = center + sun * SUN_DISTANCE_M
    f = 0.5 * SHADOW_MAP_PX * SUN_DISTANCE_M / SHADOW_HALF_SIZE_M
    c = (SHADOW_MAP_PX - 1) / 2.0
    K = np.array([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]])
    occluders = [shape for shape in shapes if shape.kind != 'ground']
    depth = cast(occluders, eye, R, K, SHADOW_MAP_PX, SHADOW_MAP_PX, surfaces=False)['depth']
    return {'depth': depth, 'R': R.astype(np.float32), 'eye': eye.astype(np.float32),
            'f': np.float32(f), 'c': np.float32(c)}


def _sunlit(p: np.ndarray, shadow: dict, bias_m: float) -> np.ndarray:
    """Fraction (N,) of sun reaching world points (N, 3): 0 in shadow, 1 lit or off the map.

    Percentage-closer filtering: the four texels around the point are tested and blended
    bilinearly, which softens the staircase a coarse map would draw along shadow edges.
    """
    q = (p - shadow['eye']) @ shadow['R']  # sun-camera frame
    x = shadow['f'] * q[:, 0] / q[:, 2] + shadow['c']
    y = shadow['f'] * q[:, 1] / q[:, 2] + shadow['c']
    x0, y0 = np.floor(x), np.floor(y)
    wx, wy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    last = SHADOW_MAP_PX - 1
    inside = (x0 >= 0) & (x0 < last) & (y0 >= 0) & (y0 < last)
    lit = np.ones(len(p), dtype=np.float32)
    xi, yi, z = x0[inside], y0[inside], q[inside, 2] - bias_m
    dmap = shadow['depth']
    taps = [(z <= dmap[yi + dy, xi + dx]).astype(np.float32) for dy in (0, 1) for dx in (0, 1)]
    ax, ay = wx[inside], wy[inside]
    top = taps[0] + (taps[1] - taps[0]) * ax
    bottom = taps[2] + (taps[3] - taps[2]) * ax
    lit[inside] = top + (bottom - top) * ay
    return lit


def _shade_group(group: dict, shape, scene: dict, noise: ValueNoise) -> np.ndarray:
    """Linear RGB (N, 3) of the pixels one shape won: albedo x lighting + emission."""
    base, emission = albedo(shape.material, group, noise)
    n = group['n_world']
    p = group['p_world']
    light = np.full(len(p), scene['ambient'], dtype=np.float32)
    light += scene['sky_light'] * (0.5 + 0.5 * n[:, 1])  # hemisphere: surfaces facing up get more
    if 'sun' in scene:
        sun = scene['sun_strength'] * np.clip(n @ scene['sun'], 0.0, None)
        if 'shadow' in scene:
            # receivers in the map need a bias of a couple of texels against self-shadowing
            texel = 2.0 * SHADOW_HALF_SIZE_M / SHADOW_MAP_PX
            bias = 0.05 if shape.kind == 'ground' else 2.5 * texel
            lit = np.ones(len(p), np.float32)
            facing = sun > 0
            lit[facing] = _sunlit(p[facing], scene['shadow'], bias)
            sun = sun * lit
        light += sun
    for lamp_pos, strength in scene.get('lamps', ()):
        to_lamp = lamp_pos[None, :] - p
        dist2 = np.einsum('ij,ij->i', to_lamp, to_lamp)
        cos = np.clip(np.einsum('ij,ij->i', n, to_lamp) / np.sqrt(dist2 + 1e-9), 0.0, None)
        light += strength * cos / (1.0 + dist2 / 4.0)
    if 'room_half' in scene:
        light *= _corner_occlusion(p, scene['room_half'], scene['room_height'])
    rgb = base * light[:, None] * np.asarray(scene['tint'], np.float32)[None, :]
    return rgb + emission


def _corner_occlusion(p: np.ndarray, half: np.ndarray, height: float) -> np.ndarray:
    """Darkening (N,) near a room's edges and corners, where less indirect light arrives."""
    gap_x = half[0] - np.abs(p[:, 0])
    gap_z = half[1] - np.abs(p[:, 2])
    gap_y = np.minimum(p[:, 1], height - p[:, 1])
    # on a surface one gap is ~0; the middle one is the distance to the nearest edge
    lo = np.minimum(np.minimum(gap_x, gap_y), gap_z)
    hi = np.maximum(np.maximum(gap_x, gap_y), gap_z)
    middle = gap_x + gap_y + gap_z - lo - hi
    return 1.0 - 0.35 * np.exp(-np.maximum(middle, 0.0) / 0.35)


def render_scene(seed: int, height: int, width: int, kind: str | None = None,
                 K: np.ndarray | None = None, framing: str = 'normal') -> dict:
    """One procedural frame: `rgb` uint8 (H, W, 3), `depth` float32 (H, W) metres (NaN = sky),
    `valid` bool (H, W), `K` float64 (3, 3), `name` str, `kind` 'indoor' | 'outdoor',
    `camera_height_m` float (the eye's height over the floor / ground plane y = 0), `sky` bool
    (H, W) (rays that hit nothing: the invalid pixels are exactly the sky).

    Deterministic: the same (seed, height, width, kind) gives the same arrays. `K` films the
    same layout with this camera instead of the scene's random one (a fixed camera over a
    sequence of scenes, as a robot has). `framing='close'` moves the camera to 0.3-1.5 m from
    a surface of the same layout (data.framing.close_view).
    """
    if framing not in FRAMINGS:
        raise ValueError(f'`framing` must be one of {FRAMINGS}, got {framing!r}.')
    scene = build_scene(seed, height, width, kind, K)
    if framing == 'close':  # its own stream: the layout and shading draws stay the same
        scene['layout'] = close_view(scene['layout'], np.random.default_rng(
            [seed, 7, KINDS.index(scene['kind'])]), camera_rotation)
    layout = scene['layout']
    origin = layout['camera']
    R_wc = camera_rotation(*layout['yaw_pitch_roll'])
    lighting = light_scene(layout, origin, R_wc)
    view = render_view(scene, lighting, origin, R_wc, height, width, scene['rng'])
    # The floor / ground is the plane y = 0 (layouts.py), so the eye's y is the camera height.
    name = f'procedural_{scene["kind"]}_{seed}' + ('_close' if framing == 'close' else '')
    return dict(view, K=scene['K'], name=name, kind=scene['kind'],
                camera_height_m=float(origin[1]))


def build_scene(seed: int, height: int, width: int, kind: str | None = None,
                K: np.ndarray | None = None) -> dict:
    """The seed's layout and camera, before any view is cast: `rng` (the generator, after the
    layout's draws), `kind`, `noise` (texture noise), `K` (the scene's random camera, or `K`
    when given), `layout` (layouts.py: shapes, camera, yaw_pitch_roll, lighting)."""
    if height < 8 or width < 8:
        raise ValueError(f'`height` and `width` must be >= 8 px, got {height}x{width}.')
    if kind is not None and kind not in KINDS:
        raise ValueError(f'`kind` must be one of {KINDS} or None, got {kind!r}.')
    rng = np.random.default_rng(seed)
    if kind is None:
        kind = KINDS[int(rng.integers(2))]
    noise = ValueNoise(rng)
    scene_K = _random_K(rng, height, width)   # drawn either way: the layout stays the same
    K = scene_K if K is None else np.asarray(K, dtype=np.float64)
    layout = indoor_layout(rng) if kind == 'indoor' else outdoor_layout(rng)
    return {'rng': rng, 'kind': kind, 'noise': noise, 'K': K, 'layout': layout}


def light_scene(layout: dict, origin: np.ndarray, R_wc: np.ndarray) -> dict:
    """The layout's lighting, with the sun's shadow map placed ahead of a camera at `origin`
    looking along R_wc (computed once: a sequence keeps the shadows of its first view)."""
    scene = layout['lighting']
    if 'sun' in scene and scene.get('shadows', True):
        ahead = origin + R_wc[:, 2] * np.array([1.0, 0.0, 1.0]) * 0.6 * SHADOW_HALF_SIZE_M
        scene = dict(scene, shadow=_shadow_map(layout['shapes'], scene['sun'],
                                               np.array([ahead[0], 0.0, ahead[2]])))
    return scene


def render_view(scene: dict, lighting: dict, origin: np.ndarray, R_wc: np.ndarray,
                height: int, width: int, sensor_rng: np.random.Generator) -> dict:
    """Cast and shade one view of a built scene (build_scene) lit by `lighting` (light_scene)
    from a camera at `origin` (world, metres) with camera -> world rotation R_wc (columns right,
    down, forward). Only the sensor noise comes from `sensor_rng`. Returns `rgb` uint8 (H, W, 3),
    `depth` float32 (H, W) z-depth in metres (NaN = sky), `valid` bool (H, W) and `sky` bool
    (H, W) (rays that hit nothing: exactly the invalid pixels)."""
    layout, noise = scene['layout'], scene['noise']
    hits = cast(layout['shapes'], origin, R_wc, scene['K'], height, width)
    rgb = np.empty((height * width, 3), dtype=np.float32)
    depth = hits['depth'].ravel()
    valid = np.isfinite(depth)
    dirs = hits['dirs'].reshape(-1, 3)
    if not valid.all():
        sky_dir = lighting.get('sun', np.array([0.0, 1.0, 0.0]))
        rgb[~valid] = _sky(dirs[~valid], sky_dir, lighting['sky'], noise)
    if 'haze_m' in lighting:  # aerial perspective: distant things fade into the horizon colour
        with np.errstate(invalid='ignore'):
            keep_all = np.exp(depth * np.sqrt((dirs * dirs).sum(axis=1)) / -lighting['haze_m'])
        horizon = np.asarray(lighting['sky']['horizon'], np.float32)
    for group in hits['groups']:
        shape = layout['shapes'][group['shape']]
        color = _shade_group(group, shape, lighting, noise)
        if 'haze_m' in lighting:
            keep = keep_all.take(group['index'])[:, None]
            color = horizon + (color - horizon) * keep
        rgb[group['index']] = color
    rgb = rgb.reshape(height, width, 3)
    rgb = _camera_response(rgb, sensor_rng, lighting['exposure'])
    depth = depth.reshape(height, width).astype(np.float32)
    valid = valid.reshape(height, width)
    depth[~valid] = np.nan
    return {'rgb': rgb, 'depth': depth, 'valid': valid, 'sky': ~valid}


def _response_lut() -> np.ndarray:
    """Linear exposure in [0, 8) on 4096 steps -> uint8: soft highlight roll-off, then gamma."""
    v = np.arange(4096, dtype=np.float64) / 512.0
    v = v / (1.0 + 0.25 * v)  # roll off highlights instead of clipping them flat
    v = np.power(np.clip(v, 0.0, 1.0), 1.0 / 2.2) * 255.0 + 0.5
    return np.clip(v, 0, 255).astype(np.uint8)


_RESPONSE = _response_lut()


def _camera_response(rgb: np.ndarray, rng: np.random.Generator, exposure: float) -> np.ndarray:
    """Linear RGB (H, W, 3) -> uint8 sRGB-like: exposure, vignetting, sensor noise, tone curve."""
    h, w = rgb.shape[:2]
    gain = (exposure * 512.0) * vignetting_falloff(h, w, 0.36)   # 18 % darker corners
    # noise in linear light, like photon noise: strongest in the shadows after the gamma curve
    noise = rng.standard_normal((h, w), dtype=np.float32) * np.float32(3.0)
    idx = rgb * gain + noise[..., None]
    return _RESPONSE.take(np.clip(idx, 0, 4095).astype(np.int32))


class ProceduralScenes(torch.utils.data.Dataset):
    """An endless-style dataset of `length` procedural frames; item i is a fixed scene."""

    def __init__(self, length: int, height: int, width: int, seed: int = 0,
                 kinds=KINDS, framing: str = 'normal'):
        if length < 0:
            raise ValueError(f'`length` must be >= 0, got {length}.')
        kinds = tuple(kinds)
        if not kinds or any(k not in KINDS for k in kinds):
            raise ValueError(f'`kinds` must be a non-empty subset of {KINDS}, got {kinds}.')
        self.length, self.height, self.width = int(length), int(height), int(width)
        if framing not in FRAMINGS:
            raise ValueError(f'`framing` must be one of {FRAMINGS}, got {framing!r}.')
        self.seed, self.kinds, self.framing = int(seed), kinds, framing

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if not -self.length <= i < self.length:
            raise IndexError(f'index {i} out of range for {self.length} scenes')
        i = i % self.length
        scene_seed = self.seed * 1_000_003 + i
        kind = self.kinds[i % len(self.kinds)]  # alternate kinds so any window is balanced
        return render_scene(scene_seed, self.height, self.width, kind, framing=self.framing)
