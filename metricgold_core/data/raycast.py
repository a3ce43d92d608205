"""Vectorised ray casting against a handful of primitives (boxes, cylinders, spheres, ground disk).

Every shape lives in its own local frame (centre + rotation), so one canonical intersection per
shape kind serves any pose. Casting is two passes: pass 1 finds the nearest hit parameter `t` per
ray (cheap: no normals), pass 2 recomputes the local hit point, normal and texture coordinates
only for the rays each shape won. A shape is only tested against the rays inside its projected
screen rectangle, so small and distant objects cost almost nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_EPS = 1e-4


def rotation_y(yaw_rad: float) -> np.ndarray:
    """World -> local rotation for a shape turned by `yaw_rad` about the vertical (y) axis."""
    c, s = np.cos(yaw_rad), np.sin(yaw_rad)
    return np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])


_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)],
                         dtype=np.float64)


@dataclass
class Shape:
    """One primitive: `kind` box | cylinder | sphere | ground | room (box seen from inside).

    size: half extents (box/room), (radius, half height, radius) for cylinders (local y axis),
    (r, r, r) for spheres, (radius, 0, 0) for the ground disk at local y = 0.
    """
    kind: str
    center: np.ndarray
    size: np.ndarray
    material: dict
    rot: np.ndarray = field(default_factory=lambda: np.eye(3))  # world -> local

    def corners(self) -> np.ndarray:
        """The 8 corners (8, 3) of a world box enclosing the shape (for screen culling)."""
        if self.kind in ('sphere',):
            half = np.full(3, self.size[0])
        elif self.kind == 'ground':
            half = np.array([self.size[0], 0.0, self.size[0]])
        else:
            half = np.asarray(self.size, dtype=np.float64)
        local = _CORNER_SIGNS * half
        return local @ self.rot + self.center  # local -> world is rot.T applied to columns


def _safe(d: np.ndarray) -> np.ndarray:
    # Nudge exact zeros so slab divisions give +-huge instead of inf * 0 = NaN.
    return d + np.float32(1e-30) * (d == 0)


def _slabs(o: np.ndarray, d: tuple, half: np.ndarray) -> tuple:
    """Entry and exit parameters of rays o + t d against the box |x| <= half (local frame)."""
    t_near = t_far = None
    for axis in range(3):
        inv = 1.0 / _safe(d[axis])
        t1 = (-half[axis] - o[axis]) * inv
        t2 = (half[axis] - o[axis]) * inv
        lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near = lo if t_near is None else np.maximum(t_near, lo)
        t_far = hi if t_far is None else np.minimum(t_far, hi)
    return t_near, t_far


def intersect(shape: Shape, o: np.ndarray, d: tuple) -> np.ndarray:
    """Nearest positive hit parameter t of rays o + t d; inf = miss.

    o: local ray origin (3,); d: local direction components (dx, dy, dz), arrays of one shape.
    """
    kind, size = shape.kind, shape.size.astype(np.float32)  # float32 scalars keep float32 math
    inf = np.float32(np.inf)
    dx, dy, dz = d
    if kind in ('box', 'room'):
        t_near, t_far = _slabs(o, d, size)
        if kind == 'room':  # the camera is inside: the visible surface is where the ray exits
            return np.where(t_far > _EPS, t_far, inf)
        return np.where((t_far >= t_near) & (t_near > _EPS), t_near, inf)
    if kind == 'sphere':
        r = size[0]
        a = dx * dx + dy * dy + dz * dz
        b = o[0] * dx + o[1] * dy + o[2] * dz
        c = o @ o - r * r
        disc = b * b - a * c
        t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        return np.where((disc >= 0) & (t > _EPS), t, inf)
    if kind == 'cylinder':
        r, hh = size[0], size[1]
        a = np.maximum(dx * dx + dz * dz, np.float32(1e-12))
        b = o[0] * dx + o[2] * dz  # half of the usual b: t = (-b - sqrt(b^2 - a c)) / a
        c = o[0] ** 2 + o[2] ** 2 - r * r
        disc = b * b - a * c
        t_side = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
        y_side = o[1] + t_side * dy
        t = np.where((disc >= 0) & (t_side > _EPS) & (np.abs(y_side) <= hh), t_side, inf)
        if abs(o[1]) > hh:  # seen from above or below: the cap can be the first surface
            cap_y = hh if o[1] > 0 else -hh
            t_cap = (cap_y - o[1]) / _safe(dy)
            xc, zc = o[0] + t_cap * dx, o[2] + t_cap * dz
            ok = (t_cap > _EPS) & (xc * xc + zc * zc <= r * r)
            t = np.where(ok & (t_cap < t), t_cap, t)
        return t
    if kind == 'ground':
        if o[1] <= 0:
            return np.full(dx.shape, inf, dtype=np.float32)
        t = -o[1] / np.minimum(dy, np.float32(-1e-12))
        xg, zg = o[0] + t * dx, o[2] + t * dz
        return np.where((dy < 0) & (xg * xg + zg * zg <= size[0] ** 2), t, inf)
    raise ValueError(f'unknown shape kind {kind!r}')


def surface(shape: Shape, p: np.ndarray) -> tuple:
    """Local hit points (3, N) -> (local normals (3, N), face id (N,), uv (2, N) in metres).

    Component-major arrays: numpy is several times faster on whole rows than on (N, 3) columns.
    Box faces: 0/1 = -x/+x, 2/3 = -y/+y (floor/top), 4/5 = -z/+z.
    """
    kind = shape.kind
    size = shape.size.astype(np.float32)
    x, y, z = p
    zero = np.zeros_like(x)
    if kind in ('box', 'room'):
        qx, qy, qz = np.abs(x) / size[0], np.abs(y) / size[1], np.abs(z) / size[2]
        on_x = (qx >= qy) & (qx >= qz)  # the point lies on the face its largest ratio names
        on_y = ~on_x & (qy >= qz)
        on_z = ~on_x & ~on_y
        axis = np.where(on_x, 0, np.where(on_y, 1, 2))
        coord = np.where(on_x, x, np.where(on_y, y, z))
        sign = np.where(coord >= 0, np.float32(1.0), np.float32(-1.0))
        outward = -sign if kind == 'room' else sign  # a room is seen from inside
        n = np.stack([np.where(on_x, outward, zero), np.where(on_y, outward, zero),
                      np.where(on_z, outward, zero)])
        face = axis * 2 + (sign > 0)
        # uv: the two axes in the face plane, horizontal first, measured from the box corner
        u = np.where(on_x, z + size[2], x + size[0])
        v = np.where(on_y, z + size[2], y + size[1])
        return n, face, np.stack([u, v])
    if kind == 'sphere':
        r = size[0]
        n = p / r
        ang = np.arctan2(z, x)
        uv = np.stack([ang * r, np.arcsin(np.clip(n[1], -1, 1)) * r])
        return n, np.zeros(x.shape, np.int64), uv
    if kind == 'cylinder':
        r, hh = size[0], size[1]
        rho = np.sqrt(x * x + z * z)
        side = rho / r >= np.abs(y) / hh
        inv_rho = 1.0 / np.maximum(rho, np.float32(1e-9))
        n = np.stack([np.where(side, x * inv_rho, zero), np.where(side, zero, np.sign(y)),
                      np.where(side, z * inv_rho, zero)])
        ang = np.arctan2(z, x)
        uv = np.stack([np.where(side, ang * r, x), np.where(side, y + hh, z)])
        return n, (~side).astype(np.int64), uv
    if kind == 'ground':
        n = np.stack([zero, zero + 1.0, zero])
        return n, np.zeros(x.shape, np.int64), np.stack([x, z])
    raise ValueError(f'unknown shape kind {kind!r}')


def screen_windows(shapes: list, origin: np.ndarray, R_wc: np.ndarray, K: np.ndarray,
                   height: int, width: int) -> np.ndarray:
    """Pixel rectangles (S, 4) rows r0, r1, c0, c1 holding each shape's projection; r0 = r1 = 0
    for a shape that cannot be seen. Projects the 8 corners of each shape's enclosing box.
    """
    corners = np.stack([shape.corners() for shape in shapes])  # [S, 8, 3] world
    cam = (corners - origin) @ R_wc  # [S, 8, 3] camera frame, z forward
    z = cam[..., 2]
    front = z > 1e-3
    with np.errstate(divide='ignore', invalid='ignore'):
        u = K[0, 0] * cam[..., 0] / z + K[0, 2]
        v = K[1, 1] * cam[..., 1] / z + K[1, 2]
    c0 = np.clip(np.floor(u.min(axis=1)) - 1, 0, width)
    c1 = np.clip(np.ceil(u.max(axis=1)) + 2, 0, width)
    r0 = np.clip(np.floor(v.min(axis=1)) - 1, 0, height)
    r1 = np.clip(np.ceil(v.max(axis=1)) + 2, 0, height)
    win = np.stack([r0, r1, c0, c1], axis=1)
    # a shape straddling the camera plane projects without bound: test every pixel
    straddle = front.any(axis=1) & ~front.all(axis=1)
    always = np.array([shape.kind in ('room', 'ground') for shape in shapes])
    win[straddle | always] = (0, height, 0, width)
    hidden = ~front.any(axis=1) & ~always
    win[hidden] = 0
    return np.nan_to_num(win).astype(np.int64)


def cast(shapes: list, origin: np.ndarray, R_wc: np.ndarray, K: np.ndarray,
         height: int, width: int, surfaces: bool = True) -> dict:
    """Cast one ray per pixel of a pinhole camera; returns z-depth, hit shape ids and surfaces.

    origin: camera centre (3,) world; R_wc: camera -> world rotation (columns right, down,
    forward). The ray of pixel (u, v) is R_wc @ ((u - cx) / fx, (v - cy) / fy, 1), so its hit
    parameter t is exactly the z-depth in metres. Returns `depth` (H, W) float32 (inf = no hit),
    `shape_id` (H, W) (-1 = none), `dirs` (H, W, 3) world ray directions, and `groups`: per
    visible shape, the flat pixel `index` it won and `p_world`, `p_local`, `n_world`, `face`,
    `uv` of those pixels. `surfaces=False` stops after `depth` and `shape_id` (shadow maps).
    """
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    u = ((np.arange(width) - cx) / fx).astype(np.float32)[None, :]
    v = ((np.arange(height) - cy) / fy).astype(np.float32)[:, None]
    R = R_wc.astype(np.float32)
    # world direction components, each (H, W); kept separate because numpy is much faster on
    # whole planes than on (N, 3) rows
    dirs = [R[i, 0] * u + R[i, 1] * v + R[i, 2] for i in range(3)]
    depth = np.full((height, width), np.inf, dtype=np.float32)
    shape_id = np.full((height, width), -1, dtype=np.int16)
    windows = screen_windows(shapes, origin, R_wc, K, height, width)
    for k, shape in enumerate(shapes):
        r0, r1, c0, c1 = windows[k]
        if r0 >= r1 or c0 >= c1:
            continue
        sub = [d[r0:r1, c0:c1] for d in dirs]
        rot = shape.rot.astype(np.float32)
        if not np.array_equal(shape.rot, np.eye(3)):
            sub = [rot[i, 0] * sub[0] + rot[i, 1] * sub[1] + rot[i, 2] * sub[2] for i in range(3)]
        o_local = (shape.rot @ (origin - shape.center)).astype(np.float32)
        t = intersect(shape, o_local, sub)
        sub_depth = depth[r0:r1, c0:c1]
        closer = t < sub_depth
        sub_depth[closer] = t[closer]
        shape_id[r0:r1, c0:c1][closer] = k
    if not surfaces:
        return {'depth': depth, 'shape_id': shape_id}
    # pass 2: hit points as whole planes once, then per shape only the pixels it won
    flat_depth = depth.ravel()
    origin32 = origin.astype(np.float32)
    with np.errstate(invalid='ignore'):  # inf depth * 0 direction: sky pixels, never read
        hit_world = [origin32[i] + flat_depth * dirs[i].ravel() for i in range(3)]
    flat_id = shape_id.ravel()
    order = np.argsort(flat_id, kind='stable')  # radix sort for int16: linear time
    counts = np.bincount(flat_id.astype(np.int64) + 1, minlength=len(shapes) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    groups = []
    for k in np.flatnonzero(counts[1:]):
        shape = shapes[k]
        idx = order[starts[k + 1]:starts[k + 2]]
        p_world = np.stack([c.take(idx) for c in hit_world])  # [3, N]
        rot = shape.rot.astype(np.float32)
        p_local = p_world - shape.center.astype(np.float32)[:, None]
        identity = np.array_equal(shape.rot, np.eye(3))
        if not identity:
            p_local = rot @ p_local
        n_local, face, uv = surface(shape, p_local)
        n_world = n_local if identity else rot.T @ n_local
        # (N, 3) / (N, 2) views of the component-major arrays for the shading code
        groups.append({'shape': int(k), 'index': idx, 'p_world': p_world.T, 'p_local': p_local.T,
                       'n_world': n_world.T, 'face': face, 'uv': uv.T})
    return {'depth': depth, 'shape_id': shape_id, 'dirs': np.stack(dirs, axis=-1),
            'groups': groups}
