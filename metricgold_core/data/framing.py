"""Close-range framing: move a layout's camera up to a surface, as a robot sees when it
approaches a wall, a cabinet, a table or the floor.

The camera travels along one of its own viewing rays towards the first surface that ray hits
and stops 0.3-1.5 m short of it. The segment from the original camera to the hit point is free
space (the ray hit nothing before), so the moved camera is never inside geometry.
"""
from __future__ import annotations

import math

import numpy as np

from .raycast import cast

FRAMINGS = ('normal', 'close')
CLOSE_RANGE_M = (0.3, 1.5)      # distance kept to the surface, along the viewing ray
_PROBE_K = np.eye(3)            # a 1x1 pinhole: its one ray is the camera's forward axis


def _forward_hit(shapes: list, origin: np.ndarray, R_wc: np.ndarray) -> float:
    """Distance along R_wc's forward axis to the first surface (inf when the ray escapes)."""
    depth = cast(shapes, origin, R_wc, _PROBE_K, 1, 1, surfaces=False)['depth']
    return float(depth[0, 0])


def close_view(layout: dict, rng: np.random.Generator, rotation, tries: int = 12) -> dict:
    """A copy of `layout` whose camera looks at a surface from 0.3-1.5 m.

    `rotation(yaw, pitch, roll)` is the camera -> world rotation of the procedural world. A
    direction is drawn (any yaw; pitch -75..+10 deg, so floors and table tops come up as often
    as walls and fronts); the camera moves along it and keeps its new distance. Directions
    whose ray escapes to the sky are redrawn; after `tries` the layout is returned unchanged.
    """
    origin = np.asarray(layout['camera'], dtype=np.float64)
    yaw0 = layout['yaw_pitch_roll'][0]
    for _ in range(tries):
        yaw = yaw0 + rng.uniform(-math.pi, math.pi)
        pitch = math.radians(rng.uniform(-75.0, 10.0))
        roll = math.radians(float(np.clip(rng.normal(0.0, 4.0), -10.0, 10.0)))
        R = rotation(yaw, pitch, 0.0)
        hit = _forward_hit(layout['shapes'], origin, R)
        if not math.isfinite(hit) or hit > 60.0:
            continue
        keep = rng.uniform(*CLOSE_RANGE_M)
        camera = origin + R[:, 2] * max(hit - keep, 0.0)
        # look a little off the approach ray, as a robot rarely faces a surface square on
        pose = (yaw + math.radians(rng.uniform(-12.0, 12.0)),
                pitch + math.radians(rng.uniform(-8.0, 8.0)), roll)
        return dict(layout, camera=camera, yaw_pitch_roll=pose)
    return layout
