"""Procedural camera trajectories: one layout of `render_scene` filmed from a moving camera.

`render_trajectory(seed, height, width, ...)` drives a platform through the layout that
`render_scene(seed, ...)` builds: a ground robot indoors (0.2-1 m/s, camera 0.3-1 m over the
floor) or a car outdoors (2-10 m/s on the road, camera 1.2-2 m up), at `fps` frames a second.
Motions: 'forward' (straight ahead), 'turning' (a robot turning at 0.4-0.9 rad/s, a car weaving
across its lane) and 'sideways' (the camera looks 90 deg off the direction of travel).

Every frame has exact z-depth, the shared K and its camera -> world pose T_wc (4x4, metres): the
camera frame is the optical one (x right, y down, z forward), the world is the layout's (y up,
floor / ground at y = 0), so a pixel (u, v) of depth z sits at
`T_wc[:3, :3] @ (z * K^-1 [u, v, 1]) + T_wc[:3, 3]` in the world. Lighting, shading and
shadows are those of the scene and stay fixed along the sequence; only the sensor noise changes
per frame. The path keeps a clearance from walls, furniture, cars and buildings (it is checked
against every shape's footprint), so the camera never passes through geometry. Deterministic in
(seed, height, width, kind, frames, fps, motion, K).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .procedural import build_scene, camera_rotation, KINDS, light_scene, render_view

MOTIONS = ('forward', 'turning', 'sideways')
# per kind: platform, speed range (m/s), camera height range (m), clearance to geometry (m)
PLATFORMS = {'indoor': {'platform': 'ground_robot', 'speed': (0.2, 1.0), 'height': (0.3, 1.0),
                        'clearance': 0.45},
             'outdoor': {'platform': 'car', 'speed': (2.0, 10.0), 'height': (1.2, 2.0),
                         'clearance': 1.3}}
_SUBSTEPS = 4       # collision checks per frame interval
VIEW_M = 1.5       # indoors the first and last views see at least this far across the room
_ATTEMPTS = 200     # random starts tried before the camera only turns in place


def render_trajectory(seed: int, height: int, width: int, kind: str | None = None,
                      frames: int = 24, fps: float = 10.0, motion: str | None = None,
                      K: np.ndarray | None = None) -> dict:
    """A sequence of `frames` views of `render_scene(seed, height, width, kind)`'s layout.

    `motion` one of MOTIONS (None: chosen by the seed); `K` a fixed camera instead of the
    scene's random one. Returns `rgb` uint8 (N, H, W, 3), `depth` float32 (N, H, W) z-depth in
    metres (NaN = sky), `valid` bool (N, H, W), `K` float64 (3, 3), `poses` float64 (N, 4, 4)
    camera -> world (optical camera frame, y-up world), `timestamps` float64 (N,) seconds from
    the first frame, `fps`, `name`, `kind`, `motion`, `platform` ('ground_robot' | 'car'),
    `speed_mps` (the platform's speed; 0 when it could only turn in place) and
    `camera_height_m`.
    """
    frames, fps = int(frames), float(fps)
    if frames < 1:
        raise ValueError(f'`frames` must be >= 1, got {frames}.')
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f'`fps` must be a positive number, got {fps}.')
    if motion is not None and motion not in MOTIONS:
        raise ValueError(f'`motion` must be one of {MOTIONS} or None, got {motion!r}.')
    scene = build_scene(seed, height, width, kind, K)
    rng = np.random.default_rng([int(seed), 1])  # the path's own draws: the layout is unchanged
    if motion is None:
        motion = MOTIONS[int(rng.integers(len(MOTIONS)))]
    path = plan_path(scene['layout'], scene['kind'], motion, frames, fps, rng)
    poses = path['poses']
    lighting = light_scene(scene['layout'], poses[0, :3, 3], poses[0, :3, :3])
    views = [render_view(scene, lighting, pose[:3, 3], pose[:3, :3], height, width,
                         np.random.default_rng([int(seed), 2, i]))
             for i, pose in enumerate(poses)]
    kind = scene['kind']
    return {'rgb': np.stack([v['rgb'] for v in views]),
            'depth': np.stack([v['depth'] for v in views]),
            'valid': np.stack([v['valid'] for v in views]),
            'K': scene['K'], 'poses': poses, 'timestamps': np.arange(frames) / fps, 'fps': fps,
            'name': f'trajectory_{kind}_{motion}_{seed}', 'kind': kind, 'motion': motion,
            'platform': PLATFORMS[kind]['platform'], 'speed_mps': path['speed_mps'],
            'camera_height_m': float(poses[0, 1, 3])}


def trajectory_frames(sequence: dict):
    """The frames of a render_trajectory result one at a time, as render_scene-like dicts
    (`rgb`, `depth`, `valid`, `K`, `name`, `kind`, `camera_height_m`) plus `pose` (4, 4) and
    `timestamp` (s)."""
    for i in range(len(sequence['poses'])):
        yield trajectory_frame(sequence, i)


def trajectory_frame(sequence: dict, i: int) -> dict:
    """Frame i of a render_trajectory result (see trajectory_frames)."""
    return {'rgb': sequence['rgb'][i], 'depth': sequence['depth'][i],
            'valid': sequence['valid'][i], 'K': sequence['K'],
            'name': f'{sequence["name"]}_{i:04d}', 'kind': sequence['kind'],
            'camera_height_m': float(sequence['poses'][i, 1, 3]),
            'pose': sequence['poses'][i], 'timestamp': float(sequence['timestamps'][i])}


def obstacle_footprints(layout: dict, top_m: float) -> np.ndarray:
    """Floor rectangles (M, 4) rows x0, x1, z0, z1 of the shapes a platform as tall as `top_m`
    could run into (the room and the ground are the space it moves in; a rug lies below it)."""
    boxes = []
    for shape in layout['shapes']:
        if shape.kind in ('room', 'ground'):
            continue
        c = shape.corners()
        if c[:, 1].max() < 0.05 or c[:, 1].min() > top_m:
            continue
        boxes.append((c[:, 0].min(), c[:, 0].max(), c[:, 2].min(), c[:, 2].max()))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _free(x: np.ndarray, z: np.ndarray, bounds: tuple, boxes: np.ndarray,
          clearance: float) -> bool:
    """True when every point (x, z) lies inside `bounds` (x0, x1, z0, z1) and at least
    `clearance` from every footprint rectangle."""
    x0, x1, z0, z1 = bounds
    if not ((x >= x0) & (x <= x1) & (z >= z0) & (z <= z1)).all():
        return False
    if not len(boxes):
        return True
    dx = np.maximum(np.maximum(boxes[None, :, 0] - x[:, None], x[:, None] - boxes[None, :, 1]),
                    0.0)
    dz = np.maximum(np.maximum(boxes[None, :, 2] - z[:, None], z[:, None] - boxes[None, :, 3]),
                    0.0)
    return bool((dx * dx + dz * dz >= clearance * clearance).all())


def _drive(start: tuple, speed: float, yaw_rate, times: np.ndarray) -> tuple:
    """Unicycle positions and headings at `times`: heading 0 drives along +z, pi/2 along +x.
    `yaw_rate(t)` in rad/s; integrated with the midpoint rule on the given time grid."""
    x, z, heading = start
    xs, zs, hs = [x], [z], [heading]
    for t0, t1 in zip(times[:-1], times[1:]):
        dt = t1 - t0
        mid = heading + 0.5 * dt * yaw_rate(t0)
        x += speed * dt * math.sin(mid)
        z += speed * dt * math.cos(mid)
        heading += dt * yaw_rate(t0 + 0.5 * dt)
        xs.append(x)
        zs.append(z)
        hs.append(heading)
    return np.array(xs), np.array(zs), np.array(hs)


def _draw_motion(rng: np.random.Generator, kind: str, motion: str, layout: dict,
                 bounds: tuple) -> dict:
    """One random candidate: start (x, z, heading), speed, yaw rate and camera yaw offset."""
    lo, hi = PLATFORMS[kind]['speed']
    x = rng.uniform(bounds[0], bounds[1])
    offset = 0.0
    if motion == 'sideways':
        offset = math.pi / 2 if rng.random() < 0.5 else -math.pi / 2
    if kind == 'indoor':
        z = rng.uniform(bounds[2], bounds[3])
        heading = rng.uniform(-math.pi, math.pi)
        if motion == 'turning':
            speed = rng.uniform(lo, 0.6)
            rate = rng.uniform(0.4, 0.9) * (1 if rng.random() < 0.5 else -1)
            return {'start': (x, z, heading), 'speed': speed, 'rate': lambda t: rate,
                    'offset': offset}
        speed = rng.uniform(lo, hi if motion == 'forward' else 0.6)
        rate = rng.normal(0.0, 0.05)
        return {'start': (x, z, heading), 'speed': speed, 'rate': lambda t: rate,
                'offset': offset}
    # outdoors: along the road (+z, or -z when the scene's camera looks back), near z = 0
    along = 0.0 if math.cos(layout['yaw_pitch_roll'][0]) >= 0 else math.pi
    z = rng.uniform(-10.0, 10.0)
    heading = along + rng.normal(0.0, 0.02)
    if motion == 'turning':  # weave across the lane: heading swings +-6-15 deg
        speed = rng.uniform(lo, 6.0)
        amp, period = math.radians(rng.uniform(6.0, 15.0)), rng.uniform(2.0, 4.0)
        w = 2 * math.pi / period
        phase = rng.uniform(0, 2 * math.pi)
        heading = along + amp * math.sin(phase)
        return {'start': (x, z, heading), 'speed': speed,
                'rate': lambda t: amp * w * math.cos(w * t + phase), 'offset': offset}
    speed = rng.uniform(lo, hi)
    return {'start': (x, z, heading), 'speed': speed, 'rate': lambda t: 0.0, 'offset': offset}


def plan_path(layout: dict, kind: str, motion: str, frames: int, fps: float,
              rng: np.random.Generator) -> dict:
    """Camera -> world poses (N, 4, 4) of a collision-free drive through `layout`.

    Random starts and speeds are drawn until the whole path, sampled between frames and a look
    ahead of one clearance past the end, keeps the platform's clearance from every obstacle
    footprint and inside the room / on the road. Should no draw fit (a cluttered small room),
    the camera turns in place at the freest point found. Returns `poses` and `speed_mps`.
    """
    if kind not in KINDS:
        raise ValueError(f'`kind` must be one of {KINDS}, got {kind!r}.')
    spec = PLATFORMS[kind]
    clearance = spec['clearance']
    cam_h = rng.uniform(*spec['height'])
    boxes = obstacle_footprints(layout, cam_h + 0.2)
    if kind == 'indoor':
        half_x, half_z = layout['lighting']['room_half']
        bounds = (-half_x + clearance, half_x - clearance, -half_z + clearance,
                  half_z - clearance)
    else:
        road = layout['shapes'][0].material['road_half_width']
        bounds = (-road + clearance, road - clearance, -math.inf, math.inf)
    if bounds[0] > bounds[1] or bounds[2] > bounds[3]:  # narrower than the platform: centre
        bounds = (0.0, 0.0, 0.0, 0.0) if kind == 'indoor' else (0.0, 0.0) + bounds[2:]
    duration = (frames - 1) / fps
    fine = np.linspace(0.0, duration, (frames - 1) * _SUBSTEPS + 1)
    choice = None
    for _ in range(_ATTEMPTS):
        cand = _draw_motion(rng, kind, motion, layout, bounds)
        xs, zs, hs = _drive(cand['start'], cand['speed'], cand['rate'], fine)
        ahead_x = xs[-1] + clearance * math.sin(hs[-1])
        ahead_z = zs[-1] + clearance * math.cos(hs[-1])
        if (_free(np.append(xs, ahead_x), np.append(zs, ahead_z), bounds, boxes, clearance)
                and _sees_the_room(kind, xs, zs, hs + cand['offset'], bounds, clearance)):
            choice = cand
            break
    if choice is None:
        choice = _turn_in_place(rng, bounds, boxes, clearance, kind)
    xs, zs, hs = _drive(choice['start'], choice['speed'], choice['rate'],
                        np.arange(frames) / fps)
    yaw0, pitch, roll = layout['yaw_pitch_roll']
    pitch = float(np.clip(pitch, math.radians(-15.0), math.radians(5.0)))
    roll = float(np.clip(roll, math.radians(-3.0), math.radians(3.0)))
    poses = np.tile(np.eye(4), (frames, 1, 1))
    for i in range(frames):
        poses[i, :3, :3] = camera_rotation(hs[i] + choice['offset'], pitch, roll)
        poses[i, :3, 3] = (xs[i], cam_h, zs[i])
    return {'poses': poses, 'speed_mps': float(choice['speed'])}


def _sees_the_room(kind: str, xs: np.ndarray, zs: np.ndarray, view: np.ndarray,
                   bounds: tuple, clearance: float) -> bool:
    """Indoors, the first and last views look across at least VIEW_M of the room (a robot
    filming the wall it stands before sees little); outdoors always True."""
    if kind != 'indoor':
        return True
    walls = (bounds[0] - clearance, bounds[1] + clearance, bounds[2] - clearance,
             bounds[3] + clearance)
    ends = [0, -1]
    x = xs[ends] + VIEW_M * np.sin(view[ends])
    z = zs[ends] + VIEW_M * np.cos(view[ends])
    return bool(((x >= walls[0]) & (x <= walls[1]) & (z >= walls[2]) & (z <= walls[3])).all())


def _turn_in_place(rng: np.random.Generator, bounds: tuple, boxes: np.ndarray,
                   clearance: float, kind: str) -> dict:
    """The fallback motion: standing at the point of the bounds farthest from any obstacle."""
    x_hi = bounds[1] if math.isfinite(bounds[1]) else 0.0
    z0, z1 = (bounds[2], bounds[3]) if kind == 'indoor' else (-10.0, 10.0)
    gx, gz = np.meshgrid(np.linspace(bounds[0], x_hi, 25), np.linspace(z0, z1, 25))
    gx, gz = gx.ravel(), gz.ravel()
    if len(boxes):
        dx = np.maximum(np.maximum(boxes[None, :, 0] - gx[:, None],
                                   gx[:, None] - boxes[None, :, 1]), 0.0)
        dz = np.maximum(np.maximum(boxes[None, :, 2] - gz[:, None],
                                   gz[:, None] - boxes[None, :, 3]), 0.0)
        best = int(np.argmax(np.hypot(dx, dz).min(axis=1)))
    else:
        best = len(gx) // 2
    rate = 0.5 * (1 if rng.random() < 0.5 else -1)
    return {'start': (float(gx[best]), float(gz[best]), rng.uniform(-math.pi, math.pi)),
            'speed': 0.0, 'rate': lambda t: rate, 'offset': 0.0}


class TrajectoryFrames(torch.utils.data.Dataset):
    """`count` procedural trajectories of `frames` frames each, as one list of frames in order.

    Trajectory i alternates indoor / outdoor and cycles the motions (forward, turning,
    sideways per kind), seed `seed * 1_000_003 + i`. Items are trajectory_frames dicts plus
    `sequence` (the trajectory's name) and `motion`; the last trajectory rendered is kept, so
    reading the frames in order renders each once.
    """

    def __init__(self, count: int, height: int, width: int, frames: int = 24,
                 fps: float = 10.0, seed: int = 0):
        if count < 1 or frames < 1:
            raise ValueError(f'`count` and `frames` must be >= 1, got {count} and {frames}.')
        self.count, self.height, self.width = int(count), int(height), int(width)
        self.frames, self.fps, self.seed = int(frames), float(fps), int(seed)
        self._cached = (None, None)

    def spec(self, i: int) -> tuple:
        """(seed, kind, motion) of trajectory i."""
        return (self.seed * 1_000_003 + i, KINDS[i % 2], MOTIONS[(i // 2) % len(MOTIONS)])

    def sequence(self, i: int) -> dict:
        """render_trajectory result of trajectory i."""
        if self._cached[0] != i:
            seed, kind, motion = self.spec(i)
            self._cached = (i, render_trajectory(seed, self.height, self.width, kind,
                                                 self.frames, self.fps, motion))
        return self._cached[1]

    def __len__(self) -> int:
        return self.count * self.frames

    def __getitem__(self, j: int) -> dict:
        if not 0 <= j < len(self):
            raise IndexError(f'frame {j} out of range for {len(self)} frames')
        seq = self.sequence(j // self.frames)
        frame = trajectory_frame(seq, j % self.frames)
        return dict(frame, sequence=seq['name'], motion=seq['motion'])
