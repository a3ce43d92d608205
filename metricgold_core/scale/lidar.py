"""A LiDAR cloud as sparse depth: the mount, the transform into the camera's optical frame, and
the projection through the camera model into a sparse depth image, hidden points removed.

The result is what a registered sparse depth image holds (float32 metres, NaN = none), so a
cloud anchors the scale through the same path as the `sparse_depth` image.

Hidden points: where several points fall in one pixel the nearest wins (a z-buffer). A LiDAR
mounted apart from the camera also sees background the camera cannot see (past the edge of a
nearer object, seen from the LiDAR's side): projected, such a point lands inside the nearer
object's image, within the parallax of the two depths from that object's edge. Parallax moves a
point along the epipolar direction (the camera -> LiDAR offset seen in the image), so a point is
dropped when, walking from its pixel towards the LiDAR's side, a substantially nearer point
(`occlusion_gap`, relative) comes within that parallax, f b (1/z_near - 1/z). A cloud from the
camera's own centre (a registered depth image, a cloud in the camera's frame) keeps every
nearest point; so do a surface at a grazing angle (a floor towards the horizon) and background
beside an object that both sensors see. The walk follows a line two pixels wide: where the
LiDAR's samples of the nearer object miss it (few rings, offset across them), such a point can
stay.
"""
from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

from ..camera.geometry import CameraModel

OCCLUSION_GAP = 0.1          # a point this much (relative) nearer can hide another
MIN_POINT_DEPTH_M = 1e-3     # points nearer the camera plane than this are behind it
PARALLAX_SLACK_PX = 1.0      # pixel rounding of the projected points
MAX_WALK_FRACTION = 1 / 4    # parallax searched up to this fraction of the image's long side


def transform_points(points: np.ndarray, T: np.ndarray | None) -> np.ndarray:
    """(N, 3) points -> float64 (N, 3) R p + t with the 4x4 T (None: unchanged)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if T is None:
        return points
    T = np.asarray(T, dtype=np.float64)
    return points @ T[:3, :3].T + T[:3, 3]


@dataclass
class SparseProjection:
    """A cloud projected into a camera: the sparse depth image and where its points went."""

    depth_m: np.ndarray          # float32 (h, w) metres (z), NaN where no point is kept
    points: int = 0              # points in the cloud
    invalid: int = 0             # NaN / inf coordinates
    behind: int = 0              # at or behind the camera plane
    outside: int = 0             # in front but outside the image
    hidden: int = 0              # a nearer point in the same pixel (z-buffer)
    occluded: int = 0            # hidden from the camera by a nearer point (parallax)
    kept: int = 0                # pixels with a measurement

    def summary(self) -> str:
        """One line for logs and diagnostics."""
        return (f'{self.kept} of {self.points} points kept ({self.invalid} not finite, '
                f'{self.behind} behind the camera, {self.outside} outside the image, '
                f'{self.hidden + self.occluded} hidden by nearer points)')


def _walk_pixels(dx: float, dy: float, k: np.ndarray) -> list:
    """Pixel offsets (du, dv) the walk in unit direction (dx, dy) visits at steps `k`: at each
    step the two pixels the line passes between across the walk (one on a pixel centre)."""
    x, y = k * dx, k * dy
    if abs(dx) >= abs(dy):   # along rows: the rows above and below the line
        u = np.floor(x + 0.5)
        return [(u, np.floor(y)), (u, np.ceil(y))]
    v = np.floor(y + 0.5)
    return [(np.floor(x), v), (np.ceil(x), v)]


def parallax_hidden(zbuf: np.ndarray, offset_px_m: tuple, gap: float) -> np.ndarray:
    """bool (h, w): measured pixels of `zbuf` (float32 (h, w), +inf = empty) hidden from the
    camera by a nearer point (module docstring).

    `offset_px_m` is (fx bx, fy by): the LiDAR's offset from the camera centre (bx, by in the
    camera's optical frame, m) times the focal lengths (px), so a point at depth z moves
    f b / z px between the two views (the offset along the optical axis is neglected: its
    epipolar lines are taken as parallel). Walking pixel by pixel from each point towards
    that offset (at each step the two pixels the line passes between), a point `gap`
    (relative) nearer at step k hides it when k <= f b (1/z_near - 1/z) + PARALLAX_SLACK_PX,
    for k up to MAX_WALK_FRACTION of the image's long side.

    One OpenCV erosion with the walk as its kernel finds the nearest point on each walk
    (about 1 ms at 640x480); only the points with a nearer one on theirs are walked.
    """
    import cv2

    h, w = zbuf.shape
    hidden = np.zeros((h, w), bool)
    fb = math.hypot(*offset_px_m)
    occupied = np.isfinite(zbuf)
    if fb < 1e-9 or np.count_nonzero(occupied) < 2:
        return hidden
    dx, dy = offset_px_m[0] / fb, offset_px_m[1] / fb
    z_front = float(zbuf[occupied].min())
    z_back = float(zbuf[occupied].max())
    steps = int(min(math.ceil(fb * (1.0 / z_front - 1.0 / z_back) + PARALLAX_SLACK_PX),
                    max(2, round(max(h, w) * MAX_WALK_FRACTION))))
    if steps < 1:
        return hidden
    # The erosion kernel: every pixel the walk visits, anchored at the walk's start.
    ks = np.arange(1, steps + 1, dtype=np.float64)
    offsets = [(du.astype(int), dv.astype(int)) for du, dv in _walk_pixels(dx, dy, ks)]
    du_all = np.concatenate([o[0] for o in offsets])
    dv_all = np.concatenate([o[1] for o in offsets])
    u0, v0 = min(0, du_all.min()), min(0, dv_all.min())
    kernel = np.zeros((dv_all.max() - v0 + 1, du_all.max() - u0 + 1), np.uint8)
    kernel[dv_all - v0, du_all - u0] = 1
    nearest_on_walk = cv2.erode(zbuf, kernel, anchor=(-u0, -v0),
                                borderType=cv2.BORDER_CONSTANT, borderValue=float('inf'))
    limit = zbuf / np.float32(1.0 + gap)
    vs, us = np.nonzero(occupied & (nearest_on_walk < limit))
    if not len(vs):
        return hidden
    zs = zbuf[vs, us].astype(np.float64)
    reach = fb * (1.0 / nearest_on_walk[vs, us] - 1.0 / zs) + PARALLAX_SLACK_PX
    active = np.flatnonzero(reach >= 1.0)
    for k in range(1, steps + 1):
        active = active[reach[active] >= k]
        if not active.size:
            break
        zq = np.full(len(active), np.inf)
        for du, dv in _walk_pixels(dx, dy, np.float64(k)):
            qu, qv = us[active] + int(du), vs[active] + int(dv)
            inside = (qu >= 0) & (qu < w) & (qv >= 0) & (qv < h)
            zq[inside] = np.minimum(zq[inside], zbuf[qv[inside], qu[inside]])
        with np.errstate(divide='ignore'):
            hit = (zq < zs[active] / (1.0 + gap)) & \
                (k <= fb * (1.0 / zq - 1.0 / zs[active]) + PARALLAX_SLACK_PX)
        hidden[vs[active[hit]], us[active[hit]]] = True
        active = active[~hit]
    return hidden


def project_cloud(points_cam: np.ndarray, camera: CameraModel, origin_cam=(0.0, 0.0, 0.0),
                  occlusion_gap: float = OCCLUSION_GAP) -> SparseProjection:
    """Points (N, 3) in the camera's optical frame (x right, y down, z forward, metres) ->
    the sparse depth image of `camera` (its rectified P; size camera.height x camera.width).

    Pixel centres are at integer coordinates (a point goes to the pixel nearest its
    projection). Dropped: non-finite points, points behind the camera plane, outside the image,
    behind a nearer point in their pixel, and (occlusion_gap > 0) points the camera cannot see
    past a nearer one from the LiDAR's origin `origin_cam` (x, y, z in the camera's optical
    frame, m; module docstring).
    """
    h, w = int(camera.height), int(camera.width)
    pts = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
    result = SparseProjection(depth_m=np.full((h, w), np.nan, np.float32), points=len(pts))
    # One pass of whole-array operations over contiguous coordinates (100k points: ~1 ms).
    x, y, z = (np.ascontiguousarray(pts[:, i]) for i in range(3))
    with np.errstate(invalid='ignore', divide='ignore', over='ignore'):
        finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
        front = finite & (z > MIN_POINT_DEPTH_M)
        u = camera.fx * (x / z) + camera.cx
        v = camera.fy * (y / z) + camera.cy
        inside = front & (u > -0.5) & (u < w - 0.5) & (v > -0.5) & (v < h - 0.5)
    n_finite, n_front, n_inside = (int(np.count_nonzero(m)) for m in (finite, front, inside))
    result.invalid = result.points - n_finite
    result.behind = n_finite - n_front
    result.outside = n_front - n_inside
    z = z[inside].astype(np.float32)
    index = np.floor(v[inside] + 0.5).astype(np.intp) * w + \
        np.floor(u[inside] + 0.5).astype(np.intp)
    zbuf = np.full(h * w, np.inf, np.float32)
    np.minimum.at(zbuf, index, z)
    zbuf = zbuf.reshape(h, w)
    occupied = np.isfinite(zbuf)
    kept = int(occupied.sum())
    result.hidden = int(len(z) - kept)
    offset = (camera.fx * float(origin_cam[0]), camera.fy * float(origin_cam[1]))
    if occlusion_gap > 0 and kept > 1 and math.hypot(*offset) > 1e-9:
        occluded = parallax_hidden(zbuf, offset, occlusion_gap)
        result.occluded = int(occluded.sum())
        zbuf[occluded] = np.inf
        kept -= result.occluded
    result.kept = kept
    out = result.depth_m
    np.copyto(out, zbuf, where=np.isfinite(zbuf))
    return result
