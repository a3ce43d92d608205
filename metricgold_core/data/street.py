"""Random outdoor layouts: a road with pavements, buildings, cars, poles, trees and far hills.

The road runs along world +z through the origin; geometry reaches a few hundred metres (far
building rows, hills, an 800 m ground disk), so depth spans ~1 m to well beyond 80 m and
everything else is sky (invalid depth).
"""
from __future__ import annotations

import math

import numpy as np

from .layouts import _box, _cylinder, _jitter, _pick, _sphere, CAR_COLORS, FACADE_COLORS
from .raycast import Shape

FOLIAGE_COLORS = ((0.1, 0.25, 0.06), (0.16, 0.3, 0.08), (0.22, 0.28, 0.1), (0.3, 0.25, 0.08))


def _car(rng, x: float, z: float, yaw: float) -> list:
    """Body, cabin and four wheels of a car centred at (x, z), heading `yaw` (0 = along +z)."""
    length, width = rng.uniform(1.9, 2.4), rng.uniform(0.85, 0.95)  # half sizes
    paint = {'pattern': 'matte', 'color': _jitter(rng, _pick(rng, CAR_COLORS)), 'roughness': 0.05}
    glass = {'pattern': 'glass', 'color': (0.08, 0.1, 0.12), 'emit': (0.05, 0.06, 0.07)}
    tyre = {'pattern': 'matte', 'color': (0.03, 0.03, 0.03)}
    c, s = math.cos(yaw), math.sin(yaw)

    def at(dx, y, dz):
        return (x + c * dx + s * dz, y, z - s * dx + c * dz)

    parts = [_box(at(0, 0.65, 0), (width, 0.33, length), paint, yaw),
             _box(at(0, 1.2, -0.15 * length), (width * 0.9, 0.25, length * 0.5), glass, yaw)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            axis = (c, 0.0, -s)
            parts.append(_cylinder(at(sx * (width - 0.1), 0.33, sz * length * 0.65), 0.33, 0.11,
                                   tyre, axis=axis))
    return parts


def _tree(rng, x: float, z: float) -> list:
    trunk_h, r = rng.uniform(1.5, 4.0), rng.uniform(1.2, 3.5)
    bark = {'pattern': 'matte', 'color': _jitter(rng, (0.25, 0.17, 0.1)), 'roughness': 0.5,
            'scale': 0.3}
    leaves = {'pattern': 'foliage', 'color': _jitter(rng, _pick(rng, FOLIAGE_COLORS))}
    parts = [_cylinder((x, trunk_h / 2, z), rng.uniform(0.12, 0.3), trunk_h / 2, bark),
             _sphere((x, trunk_h + r * 0.8, z), r, leaves)]
    if rng.random() < 0.5:  # a second, offset crown makes the silhouette less ball-like
        parts.append(_sphere((x + rng.uniform(-0.6, 0.6) * r, trunk_h + r * 1.4,
                              z + rng.uniform(-0.6, 0.6) * r), r * 0.7, leaves))
    return parts


def _building_row(rng, side: int, inner_x: float, style: dict) -> list:
    """Buildings along one side (side -1 / +1) of the road, from behind the camera to ~300 m."""
    shapes, z = [], rng.uniform(-80.0, -40.0)
    while z < 300.0:
        width = rng.uniform(8.0, 30.0)
        depth = rng.uniform(8.0, 20.0)
        height = rng.uniform(*style['height'])
        setback = rng.uniform(0.0, 4.0)
        material = {'pattern': 'facade', 'color': _jitter(rng, _pick(rng, FACADE_COLORS), 0.12),
                    'storey': float(rng.uniform(2.9, 3.6)),
                    'spacing': float(rng.uniform(2.4, 4.0)),
                    'win_w': float(rng.uniform(0.9, 1.6)), 'win_h': float(rng.uniform(1.2, 1.9)),
                    'shop': bool(rng.random() < style['shops'])}
        cx = side * (inner_x + setback + depth / 2)
        shapes.append(_box((cx, height / 2, z + width / 2), (depth / 2, height / 2, width / 2),
                           material))
        z += width + (rng.uniform(1.0, 12.0) if rng.random() < 0.35 else 0.2)
    return shapes


def outdoor_layout(rng: np.random.Generator) -> dict:
    """A street scene: road along +z, camera on the road at 1.2-4 m looking roughly along it."""
    half = rng.uniform(3.0, 8.0)
    walk = rng.uniform(1.5, 4.0)
    cam = np.array([rng.uniform(-0.8, 0.8) * (half - 0.5), rng.uniform(1.2, 4.0), 0.0])
    verge = _pick(rng, ((0.2, 0.3, 0.1), (0.35, 0.3, 0.22), (0.3, 0.32, 0.15)))
    ground_mat = {'pattern': 'street', 'color': (1, 1, 1), 'road_dir': (0.0, 1.0),
                  'road_half_width': half, 'sidewalk': walk, 'verge': verge,
                  'asphalt': _jitter(rng, (0.16, 0.16, 0.17), 0.2)}
    shapes = [Shape('ground', np.zeros(3), np.array([800.0, 0.0, 0.0]), ground_mat)]
    style = _pick(rng, ({'height': (5.0, 14.0), 'shops': 0.3},
                        {'height': (8.0, 40.0), 'shops': 0.6},
                        {'height': (3.5, 8.0), 'shops': 0.1}))
    for side in (-1, 1):
        if rng.random() < 0.8:
            shapes.extend(_building_row(rng, side, half + walk, style))
        else:  # an open side: scattered trees on the verge
            for _ in range(int(rng.integers(4, 14))):
                shapes.extend(_tree(rng, side * (half + walk + rng.uniform(2.0, 40.0)),
                                    rng.uniform(-20.0, 250.0)))
    z = rng.uniform(5.0, 20.0)
    while z < 200.0:  # street furniture along the kerbs
        side = 1 if rng.random() < 0.5 else -1
        x = side * (half + 0.5)
        if rng.random() < 0.5:
            h = rng.uniform(4.0, 8.0)
            metal = {'pattern': 'matte', 'color': _jitter(rng, (0.35, 0.36, 0.38)),
                     'roughness': 0.1}
            shapes.append(_cylinder((x, h / 2, z), rng.uniform(0.07, 0.14), h / 2, metal))
            shapes.append(_box((x - side * 0.6, h, z), (0.6, 0.06, 0.15), metal))
        else:
            shapes.extend(_tree(rng, side * (half + walk * 0.6), z))
        z += rng.uniform(10.0, 35.0)
    for _ in range(int(rng.integers(0, 9))):  # parked and driving cars
        lane = _pick(rng, (-1, 1))
        parked = rng.random() < 0.5
        x = lane * (half - 1.3 if parked else half * 0.45)
        z = rng.uniform(6.0, 120.0) * (1 if rng.random() < 0.8 else -0.3)
        yaw = 0.0 if lane > 0 else math.pi
        if abs(z) < 5.0 and abs(x - cam[0]) < 3.0:  # keep the camera out of the car
            continue
        shapes.extend(_car(rng, x, z, yaw + rng.uniform(-0.05, 0.05)))
    for _ in range(int(rng.integers(2, 7))):  # hills behind everything
        r = rng.uniform(60.0, 220.0)
        ang = rng.uniform(-1.2, 1.2) + (math.pi if rng.random() < 0.3 else 0.0)
        dist = rng.uniform(300.0, 550.0)
        hill = {'pattern': 'foliage', 'color': _jitter(rng, _pick(rng, FOLIAGE_COLORS)),
                'scale': 20.0}
        shapes.append(_sphere((dist * math.sin(ang), -0.75 * r, dist * math.cos(ang)), r, hill))
    overcast = rng.random() < 0.3
    elevation = math.radians(rng.uniform(15.0, 65.0))
    azimuth = rng.uniform(0.0, 2 * math.pi)
    sun = np.array([math.cos(elevation) * math.sin(azimuth), math.sin(elevation),
                    math.cos(elevation) * math.cos(azimuth)])
    sky = {'horizon': _jitter(rng, (0.75, 0.8, 0.85), 0.05),
           'zenith': _jitter(rng, (0.55, 0.6, 0.65) if overcast else (0.22, 0.4, 0.75), 0.1),
           'clouds': float(rng.uniform(0.7, 0.95) if overcast else rng.uniform(0.1, 0.5))}
    lighting = {'ambient': float(rng.uniform(0.08, 0.15)),
                'sky_light': float(rng.uniform(0.5, 0.7) if overcast else rng.uniform(0.25, 0.4)),
                'sun': sun, 'sun_strength': float(rng.uniform(0.1, 0.3) if overcast
                                                  else rng.uniform(0.9, 1.4)),
                'haze_m': float(rng.uniform(200.0, 700.0)), 'sky': sky,
                'tint': _jitter(rng, (1.0, 0.98, 0.95), 0.04),
                'exposure': float(rng.uniform(1.0, 1.4))}
    yaw = rng.uniform(-0.6, 0.6) + (math.pi if rng.random() < 0.2 else 0.0)
    pose = (yaw, math.radians(rng.uniform(-12.0, 8.0)),
            math.radians(float(np.clip(rng.normal(0, 2.5), -6, 6))))
    return {'shapes': shapes, 'camera': cam, 'yaw_pitch_roll': pose, 'lighting': lighting}
