"""Random scene layouts (shapes, camera pose, lighting) for the procedural generator.

Units are metres, world y is up, the floor / ground is y = 0. Each layout function draws every
random number from the generator it is given, so a layout is a pure function of the seed.
"""
from __future__ import annotations

import math

import numpy as np

from .raycast import rotation_y, Shape

WALL_COLORS = ((0.75, 0.73, 0.68), (0.62, 0.68, 0.72), (0.78, 0.7, 0.6), (0.55, 0.62, 0.52),
               (0.8, 0.8, 0.8), (0.7, 0.55, 0.5), (0.45, 0.5, 0.6))
WOOD_COLORS = ((0.45, 0.28, 0.15), (0.62, 0.45, 0.28), (0.3, 0.18, 0.1), (0.7, 0.58, 0.42))
FABRIC_COLORS = ((0.55, 0.1, 0.1), (0.15, 0.25, 0.5), (0.3, 0.4, 0.25), (0.6, 0.55, 0.45),
                 (0.2, 0.2, 0.22), (0.7, 0.5, 0.2), (0.45, 0.3, 0.5))
FACADE_COLORS = ((0.6, 0.55, 0.5), (0.7, 0.68, 0.62), (0.5, 0.32, 0.25), (0.55, 0.58, 0.6),
                 (0.75, 0.7, 0.55), (0.4, 0.4, 0.42), (0.65, 0.5, 0.4))
CAR_COLORS = ((0.6, 0.05, 0.05), (0.05, 0.1, 0.35), (0.8, 0.8, 0.8), (0.1, 0.1, 0.1),
              (0.5, 0.5, 0.52), (0.1, 0.3, 0.15), (0.7, 0.6, 0.2))


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _jitter(rng: np.random.Generator, color, amount: float = 0.08) -> tuple:
    return tuple(np.clip(np.asarray(color) * (1.0 + rng.uniform(-amount, amount, 3)), 0, 1))


def _box(center, half, material, yaw=0.0) -> Shape:
    return Shape('box', np.asarray(center, float), np.asarray(half, float), material,
                 rotation_y(yaw))


def _cylinder(center, radius, half_height, material, axis=None) -> Shape:
    rot = np.eye(3) if axis is None else _rotation_with_y_axis(axis)
    return Shape('cylinder', np.asarray(center, float),
                 np.array([radius, half_height, radius]), material, rot)


def _sphere(center, radius, material) -> Shape:
    return Shape('sphere', np.asarray(center, float), np.full(3, float(radius)), material)


def _rotation_with_y_axis(axis) -> np.ndarray:
    """World -> local rotation whose local y axis is the given world direction."""
    y = np.asarray(axis, float) / np.linalg.norm(axis)
    helper = np.array([0.0, 1.0, 0.0]) if abs(y[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(helper, y)
    x /= np.linalg.norm(x)
    return np.stack([x, y, np.cross(x, y)])


def _wood(rng) -> dict:
    return {'pattern': 'wood', 'color': _jitter(rng, _pick(rng, WOOD_COLORS)),
            'plank': float(rng.uniform(0.08, 0.25))}


def _fabric(rng) -> dict:
    return {'pattern': 'matte', 'color': _jitter(rng, _pick(rng, FABRIC_COLORS)),
            'roughness': 0.35, 'scale': 0.3}


def _furniture(rng, x: float, z: float, yaw: float, room_h: float) -> list:
    """One furniture-like group of primitives standing on the floor at (x, z)."""
    kind = _pick(rng, ('table', 'cabinet', 'sofa', 'chair', 'lamp', 'crates', 'ball', 'bin',
                       'pillar', 'plant'))
    c, s = math.cos(yaw), math.sin(yaw)

    def at(dx, y, dz):  # a point in the group's own frame -> world
        return (x + c * dx - s * dz, y, z + s * dx + c * dz)

    if kind == 'table':
        w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.35, 0.6), rng.uniform(0.7, 0.78)
        mat = _wood(rng)
        parts = [_box(at(0, h - 0.02, 0), (w, 0.02, d), mat, -yaw)]
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(_box(at(sx * (w - 0.06), (h - 0.04) / 2, sz * (d - 0.06)),
                                  (0.03, (h - 0.04) / 2, 0.03), mat, -yaw))
        if rng.random() < 0.6:
            parts.append(_sphere(at(rng.uniform(-w, w) * 0.6, h + 0.08, 0), 0.08,
                                 {'pattern': 'matte', 'color': _pick(rng, FABRIC_COLORS)}))
        return parts
    if kind == 'cabinet':
        w, d = rng.uniform(0.3, 1.0), rng.uniform(0.2, 0.35)
        h = rng.uniform(0.4, min(1.1, room_h / 2))
        mat = _wood(rng) if rng.random() < 0.6 else {
            'pattern': 'matte', 'color': _jitter(rng, _pick(rng, WALL_COLORS)), 'roughness': 0.1}
        return [_box(at(0, h, 0), (w, h, d), mat, -yaw)]
    if kind == 'sofa':
        w, d = rng.uniform(0.7, 1.2), rng.uniform(0.4, 0.5)
        mat = _fabric(rng)
        return [_box(at(0, 0.22, 0), (w, 0.22, d), mat, -yaw),
                _box(at(0, 0.45, -d + 0.1), (w, 0.45, 0.1), mat, -yaw),
                _box(at(-w + 0.1, 0.32, 0), (0.1, 0.32, d), mat, -yaw),
                _box(at(w - 0.1, 0.32, 0), (0.1, 0.32, d), mat, -yaw)]
    if kind == 'chair':
        mat = _wood(rng) if rng.random() < 0.5 else _fabric(rng)
        parts = [_box(at(0, 0.45, 0), (0.22, 0.025, 0.22), mat, -yaw),
                 _box(at(0, 0.7, -0.2), (0.22, 0.25, 0.02), mat, -yaw)]
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(_box(at(sx * 0.19, 0.22, sz * 0.19), (0.02, 0.22, 0.02), mat, -yaw))
        return parts
    if kind == 'lamp':
        h = rng.uniform(1.2, 1.8)
        metal = {'pattern': 'matte', 'color': (0.2, 0.2, 0.2), 'roughness': 0.05}
        shade = {'pattern': 'emissive', 'color': (0.9, 0.85, 0.7), 'emit': (0.6, 0.5, 0.3)}
        return [_cylinder((x, h / 2, z), 0.02, h / 2, metal),
                _cylinder((x, 0.01, z), 0.15, 0.01, metal),
                _cylinder((x, h + 0.1, z), 0.18, 0.12, shade)]
    if kind == 'crates':
        parts, y = [], 0.0
        for _ in range(int(rng.integers(1, 4))):
            half = rng.uniform(0.15, 0.35)
            parts.append(_box(at(rng.uniform(-0.05, 0.05), y + half, 0), (half, half, half),
                              _wood(rng), -yaw + rng.uniform(-0.3, 0.3)))
            y += 2 * half
        return parts
    if kind == 'ball':
        r = rng.uniform(0.1, 0.35)
        return [_sphere((x, r, z), r, {'pattern': 'matte', 'color': _pick(rng, FABRIC_COLORS),
                                       'roughness': 0.05})]
    if kind == 'bin':
        r, h = rng.uniform(0.12, 0.25), rng.uniform(0.3, 0.6)
        return [_cylinder((x, h / 2, z), r, h / 2,
                          {'pattern': 'matte', 'color': _pick(rng, CAR_COLORS), 'roughness': 0.1})]
    if kind == 'pillar':
        r = rng.uniform(0.15, 0.35)
        return [_cylinder((x, room_h / 2, z), r, room_h / 2,
                          {'pattern': 'matte', 'color': _pick(rng, WALL_COLORS)})]
    pot = {'pattern': 'matte', 'color': (0.55, 0.3, 0.2)}
    leaves = {'pattern': 'foliage', 'color': (0.12, 0.3, 0.08)}
    r = rng.uniform(0.25, 0.5)
    return [_cylinder((x, 0.2, z), 0.18, 0.2, pot), _sphere((x, 0.4 + r * 0.9, z), r, leaves)]


def indoor_layout(rng: np.random.Generator) -> dict:
    """A room 2-15 m across with furniture, doors, windows and ceiling lamps; camera inside."""
    half_x = math.exp(rng.uniform(math.log(2.0), math.log(15.0))) / 2
    half_z = math.exp(rng.uniform(math.log(2.0), math.log(15.0))) / 2
    room_h = rng.uniform(2.4, 3.2) + 0.1 * max(half_x, half_z)
    floor = _pick(rng, (
        _wood(rng),
        {'pattern': 'tiles', 'color': _jitter(rng, (0.75, 0.72, 0.68)),
         'tile': float(rng.uniform(0.3, 0.6)), 'checker': bool(rng.random() < 0.3)},
        {'pattern': 'matte', 'color': _pick(rng, FABRIC_COLORS), 'roughness': 0.4, 'scale': 0.2}))
    walls = _pick(rng, (
        {'pattern': 'matte', 'color': _jitter(rng, _pick(rng, WALL_COLORS)), 'roughness': 0.08},
        {'pattern': 'brick', 'color': _jitter(rng, (0.6, 0.32, 0.22))},
        {'pattern': 'tiles', 'color': _jitter(rng, (0.85, 0.85, 0.82)), 'tile': 0.2}))
    ceiling = {'pattern': 'matte', 'color': (0.85, 0.85, 0.83), 'roughness': 0.05}
    decals = []
    wall_extent = {0: half_z, 1: half_z, 4: half_x, 5: half_x}  # face -> half length along u
    for face, extent in wall_extent.items():
        for _ in range(int(rng.integers(0, 3))):
            if rng.random() < 0.4 and 2 * extent > 1.4:
                w = rng.uniform(0.8, 1.0)
                u0 = rng.uniform(0.1, 2 * extent - w - 0.1)
                decals.append({'face': face, 'rect': (u0, u0 + w, 0.0, 2.05),
                               'color': _pick(rng, WOOD_COLORS), 'frame': 0.06,
                               'frame_color': (0.85, 0.84, 0.8)})
            elif 2 * extent > 1.0:
                w = rng.uniform(0.6, min(2.5, 2 * extent - 0.3))
                u0 = rng.uniform(0.1, 2 * extent - w - 0.1)
                v0 = rng.uniform(0.7, 1.1)
                decals.append({'face': face, 'rect': (u0, u0 + w, v0, min(v0 + 1.4, room_h - 0.2)),
                               'color': (0.5, 0.6, 0.7), 'emit': (0.9, 1.0, 1.1), 'frame': 0.05,
                               'bars': bool(rng.random() < 0.6)})
    lamps = []
    for _ in range(int(rng.integers(1, 4))):
        lx, lz = rng.uniform(-0.7, 0.7) * half_x, rng.uniform(-0.7, 0.7) * half_z
        lamps.append((np.array([lx, room_h - 0.3, lz]), float(rng.uniform(0.6, 1.4))))
        decals.append({'face': 3, 'rect': (lx + half_x - 0.3, lx + half_x + 0.3,
                                           lz + half_z - 0.3, lz + half_z + 0.3),
                       'color': (1.0, 1.0, 0.95), 'emit': (1.4, 1.35, 1.2), 'frame': 0.03})
    room_mat = {'pattern': 'per_face', 'faces': {2: floor, 3: ceiling}, 'default': walls,
                'color': (1, 1, 1), 'decals': decals}
    shapes = [Shape('room', np.array([0.0, room_h / 2, 0.0]),
                    np.array([half_x, room_h / 2, half_z]), room_mat)]
    cam_x = rng.uniform(-1, 1) * (half_x - 0.3)
    cam_z = rng.uniform(-1, 1) * (half_z - 0.3)
    cam_h = min(rng.uniform(0.5, 1.9), room_h - 0.3)
    area = 4 * half_x * half_z
    for _ in range(int(np.clip(area / 3.0, 3, 25))):
        against_wall = rng.random() < 0.4
        yaw = rng.uniform(0, 2 * math.pi)
        if against_wall:  # cabinets and sofas stand with their back to a wall
            face = int(rng.integers(4))
            yaw = (0.0, math.pi, -math.pi / 2, math.pi / 2)[face]
            x = rng.uniform(-0.8, 0.8) * half_x
            z = rng.uniform(-0.8, 0.8) * half_z
            if face == 0:
                z = -half_z + 0.55
            elif face == 1:
                z = half_z - 0.55
            elif face == 2:
                x = -half_x + 0.55
            else:
                x = half_x - 0.55
        else:
            x = rng.uniform(-0.85, 0.85) * half_x
            z = rng.uniform(-0.85, 0.85) * half_z
        if math.hypot(x - cam_x, z - cam_z) < 1.4:  # never put furniture around the camera
            continue
        shapes.extend(_furniture(rng, x, z, yaw, room_h))
    if rng.random() < 0.5:
        rug_w, rug_d = rng.uniform(0.6, 1.5), rng.uniform(0.5, 1.2)
        rug_x, rug_z = rng.uniform(-0.5, 0.5) * half_x, rng.uniform(-0.5, 0.5) * half_z
        shapes.append(_box((rug_x, 0.006, rug_z),
                           (rug_w, 0.006, rug_d), _fabric(rng), rng.uniform(0, math.pi)))
    lighting = {'ambient': float(rng.uniform(0.12, 0.25)),
                'sky_light': float(rng.uniform(0.1, 0.25)),
                'lamps': lamps, 'room_half': np.array([half_x, half_z]), 'room_height': room_h,
                'tint': _jitter(rng, (1.0, 0.95, 0.85), 0.06),
                'exposure': float(rng.uniform(1.1, 1.7)),
                'sky': {'horizon': (0.8, 0.8, 0.8), 'zenith': (0.5, 0.6, 0.8)}}
    # look towards a random point of the room: views across it, rarely into a near wall
    target_x, target_z = rng.uniform(-0.8, 0.8) * half_x, rng.uniform(-0.8, 0.8) * half_z
    yaw = math.atan2(target_x - cam_x, target_z - cam_z) + rng.uniform(-0.4, 0.4)
    pose = (yaw, math.radians(rng.uniform(-30, 15)),
            math.radians(float(np.clip(rng.normal(0, 4), -10, 10))))
    return {'shapes': shapes, 'camera': np.array([cam_x, cam_h, cam_z]), 'yaw_pitch_roll': pose,
            'lighting': lighting}
