"""Fused maps: depth integrated along camera poses into a TSDF, scored against the true surface.

Fusion uses Open3D's tensor VoxelBlockGrid (Open3D is an optional extra, `pip install
'.[map]'`; its wheels need the system library libusb-1.0.so.0, Debian package libusb-1.0-0).
The grid is offset by a fraction of a voxel: a floor lying exactly on voxel centres (y = 0 with
voxel-aligned poses) otherwise falls between the zero crossings and is lost.

Scoring follows the 7-Scenes / ScanNet reconstruction protocol: both point sets are thinned on
a grid of half a voxel; accuracy is the mean distance from the map's surface points to the
true surface, completeness the mean distance back; precision and recall are the fractions
within a threshold (5 and 10 cm) and the F-score their harmonic mean. The true surface is the
union of every frame's ground-truth depth back-projected along the true poses (no TSDF in it),
so the ground-truth depth fused the same way scores ~0 cm and shows the protocol is sound.

Poses are camera -> world 4x4 (optical camera frame: x right, y down, z forward).
"""
from __future__ import annotations

import numpy as np

from ..camera.geometry import backproject

# per scene kind: voxel edge, depth integrated up to, TSDF truncation in voxels
MAP_SETTINGS = {'indoor': {'voxel_m': 0.04, 'depth_max_m': 8.0, 'trunc_voxels': 4.0},
                'outdoor': {'voxel_m': 0.10, 'depth_max_m': 30.0, 'trunc_voxels': 4.0}}
GRID_OFFSET = np.array([0.31, 0.47, 0.23])   # voxels: keeps planes off the voxel centres
THRESHOLDS_M = (0.05, 0.10)
# map pictures cut what is this much higher than the highest camera (ceilings, tree crowns)
PICTURE_CUT_M = {'indoor': 0.5, 'outdoor': 4.0}


def require_open3d():
    """The open3d module, or ImportError saying how to install it."""
    try:
        import open3d
    except ImportError as exc:
        hint = (' (the Open3D wheels need libusb-1.0.so.0: apt-get install libusb-1.0-0)'
                if 'libusb' in str(exc) else '')
        raise ImportError(f'fused maps need Open3D: pip install "metricgold_ros[map]" '
                          f'(open3d-cpu){hint}; import failed: {exc}') from exc
    return open3d


def fuse_tsdf(depths, poses, K: np.ndarray, voxel_m: float, depth_max_m: float,
              trunc_voxels: float = 4.0, masks=None, weight_threshold: float | None = None,
              sample_m: float = 0.01, grid_offset=GRID_OFFSET) -> np.ndarray:
    """Surface points (M, 3) float64, world frame, of a TSDF fused from depth maps (N, H, W)
    metres (NaN / <= 0 = no measurement; `masks` (N, H, W) bool drops more pixels) taken from
    poses (N, 4, 4) with one K. The TSDF's mesh (voxels of weight above `weight_threshold`:
    default 0.5, i.e. observed at least once) is covered with points (sample_triangles) and
    thinned to one point per `sample_m` cell. The grid is shifted by `grid_offset` voxels (see
    the module doc)."""
    o3d = require_open3d()
    o3c = o3d.core
    offset = np.asarray(grid_offset, np.float64) * voxel_m
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=('tsdf', 'weight'), attr_dtypes=(o3c.float32, o3c.float32),
        attr_channels=((1), (1)), voxel_size=float(voxel_m), block_resolution=8,
        block_count=20000, device=o3c.Device('CPU:0'))
    # Open3D reads the depth at pixel floor(u, v) of a voxel's projection: moving the principal
    # point half a pixel makes that the nearest pixel (measured: a floor seen at 40 deg came
    # out 6 mm low without it, 0.3 mm with it)
    K_o3d = np.array(K, np.float64)
    K_o3d[:2, 2] += 0.5
    intrinsic = o3c.Tensor(K_o3d)
    for i, (depth, pose) in enumerate(zip(depths, poses)):
        d = np.array(depth, dtype=np.float32)
        with np.errstate(invalid='ignore'):
            bad = ~np.isfinite(d) | (d <= 0)
        if masks is not None:
            bad |= ~masks[i]
        d[bad] = 0.0
        if not d.any():
            continue
        T = np.array(pose, dtype=np.float64)
        T[:3, 3] += offset
        extrinsic = o3c.Tensor(np.linalg.inv(T))
        image = o3d.t.geometry.Image(o3c.Tensor(np.ascontiguousarray(d)))
        blocks = grid.compute_unique_block_coordinates(image, intrinsic, extrinsic, 1.0,
                                                       float(depth_max_m), float(trunc_voxels))
        grid.integrate(blocks, image, intrinsic, extrinsic, 1.0, float(depth_max_m),
                       float(trunc_voxels))
    if weight_threshold is None:
        weight_threshold = 0.5   # Open3D keeps voxels of weight > threshold: seen once is enough
    try:
        mesh = grid.extract_triangle_mesh(weight_threshold=float(weight_threshold))
    except RuntimeError:   # Open3D raises on a grid with no surface
        return np.zeros((0, 3))
    if 'indices' not in mesh.triangle or not len(mesh.triangle.indices):
        return np.zeros((0, 3))
    vertices = mesh.vertex.positions.numpy().astype(np.float64) - offset
    return thin(sample_triangles(vertices, mesh.triangle.indices.numpy(), sample_m), sample_m)


def sample_triangles(vertices: np.ndarray, triangles: np.ndarray, spacing_m: float
                     ) -> np.ndarray:
    """Points (M, 3) covering a triangle mesh at about `spacing_m`: each triangle on a
    barycentric grid fine enough for its longest edge (deterministic, unlike random sampling,
    so the same map always scores the same)."""
    tri = vertices[triangles]  # [T, 3, 3]
    longest = np.max(np.linalg.norm(tri - np.roll(tri, 1, axis=1), axis=2), axis=1)
    steps = np.clip(np.ceil(longest / spacing_m), 1, 64).astype(np.int64)
    out = []
    for k in np.unique(steps):
        i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1), indexing='ij')
        keep = i + j <= k
        a, b = i[keep] / k, j[keep] / k
        weights = np.stack([1 - a - b, a, b], axis=1)  # [P, 3]
        out.append(np.einsum('pc,tcd->tpd', weights, tri[steps == k]).reshape(-1, 3))
    return np.concatenate(out)


def surface_points(depths, poses, K: np.ndarray, depth_max_m: float, masks=None,
                   spacing_m: float = 0.02) -> np.ndarray:
    """The surface a set of depth maps sees: every valid pixel back-projected into the world
    (depth <= depth_max_m), thinned to one point per `spacing_m` cell (M, 3)."""
    chunks = []
    for i, (depth, pose) in enumerate(zip(depths, poses)):
        d = np.asarray(depth, np.float64)
        with np.errstate(invalid='ignore'):
            keep = np.isfinite(d) & (d > 0) & (d <= depth_max_m)
        if masks is not None:
            keep &= masks[i]
        pts = backproject(d, K)[keep]
        chunks.append(pts @ np.asarray(pose)[:3, :3].T + np.asarray(pose)[:3, 3])
    pts = np.concatenate(chunks) if chunks else np.zeros((0, 3))
    return thin(pts, spacing_m)


def thin(points: np.ndarray, spacing_m: float) -> np.ndarray:
    """One point per cubic cell of `spacing_m`: the mean of the points in it (independent of
    their order)."""
    if not len(points):
        return points.reshape(0, 3)
    cells = np.floor(points / spacing_m).astype(np.int64)
    cells -= cells.min(axis=0)
    span = cells.max(axis=0) + 1
    key = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]  # one int per cell
    _, cell, count = np.unique(key, return_inverse=True, return_counts=True)
    return np.stack([np.bincount(cell, weights=points[:, k]) for k in range(3)], axis=1) \
        / count[:, None]


def nearest_distances(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Distance (N,) from each point of `src` to its nearest point of `dst` (Open3D KD tree)."""
    if not len(src):
        return np.zeros(0)
    if not len(dst):
        return np.full(len(src), np.inf)
    o3d = require_open3d()
    a = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(src, np.float64)))
    b = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(dst, np.float64)))
    return np.asarray(a.compute_point_cloud_distance(b))


def map_metrics(map_points: np.ndarray, true_points: np.ndarray, spacing_m: float,
                thresholds=THRESHOLDS_M) -> dict:
    """Accuracy / completeness (cm) and precision, recall, F-score per threshold (7-Scenes /
    ScanNet protocol; see the module doc). NaN distances and 0 scores for an empty map."""
    pred = thin(map_points, spacing_m)
    true = thin(true_points, spacing_m)
    to_true = nearest_distances(pred, true)
    to_pred = nearest_distances(true, pred)
    out = {'points': int(len(pred)), 'true_points': int(len(true)),
           'accuracy_cm': float(to_true.mean() * 100) if len(pred) else float('nan'),
           'completeness_cm': float(to_pred.mean() * 100) if len(pred) and len(true)
           else float('nan')}
    for t in thresholds:
        cm = int(round(t * 100))
        precision = float((to_true < t).mean()) if len(pred) else 0.0
        recall = float((to_pred < t).mean()) if len(true) else 0.0
        out[f'precision_{cm}cm'] = precision
        out[f'recall_{cm}cm'] = recall
        out[f'fscore_{cm}cm'] = (2 * precision * recall / (precision + recall)
                                 if precision + recall > 0 else 0.0)
    return out


def up_direction(poses) -> np.ndarray:
    """World 'up' (3,) as the cameras see it: the mean of their -y (image up) axes."""
    up = -np.asarray(poses)[:, :3, 1].mean(axis=0)
    norm = np.linalg.norm(up)
    return up / norm if norm > 1e-9 else np.array([0.0, 1.0, 0.0])


PANEL_PX = 360
_LABEL_PX = 22


def map_picture(maps: dict, poses, up: np.ndarray | None = None, cut_above_m: float = 0.5,
                panel_px: int = PANEL_PX) -> np.ndarray:
    """One uint8 RGB picture of several fused maps side by side, one column per map (`maps`:
    label -> points (M, 3)), a top view over a perspective view, all drawn from the same views
    and colour scale (height, turbo) so they compare at a glance; the camera path is white.

    Points higher than `cut_above_m` over the highest camera are cut away (ceilings, tree
    crowns) so the top view shows the layout as a 2-D costmap would. Points are splatted with
    a z-buffer (numpy, OpenCV only for text and lines): no OpenGL needed.
    """
    import cv2

    from ..visualize import TURBO_LUT

    poses = np.asarray(poses, np.float64)
    up = up_direction(poses) if up is None else np.asarray(up, np.float64)
    heading = poses[:, :3, 2].mean(axis=0)
    ahead = heading - up * (heading @ up)
    if np.linalg.norm(ahead) < 1e-6:
        ahead = np.cross(up, [1.0, 0.0, 0.0]) if abs(up[0]) < 0.9 else np.cross(up, [0, 0, 1.0])
    ahead /= np.linalg.norm(ahead)
    side = np.cross(ahead, up)  # right, seen from above with `ahead` pointing up the picture
    path = poses[:, :3, 3]
    top = float((path @ up).max()) + cut_above_m
    kept = {}
    for label, pts in maps.items():
        pts = np.asarray(pts, np.float64).reshape(-1, 3)
        kept[label] = pts[pts @ up <= top]
    extent = np.ptp(np.concatenate(list(kept.values()) + [path]), axis=0).max()
    kept = {label: thin(pts, extent / panel_px / 2) for label, pts in kept.items()}
    every = np.concatenate([p for p in kept.values()] + [path])
    h = every @ up
    h_lo, h_hi = np.percentile(h, (2, 98)) if len(h) > 10 else (h.min(), h.max() + 1)
    xy = np.stack([every @ side, every @ ahead], axis=1)
    lo, hi = np.percentile(xy, 1, axis=0), np.percentile(xy, 99, axis=0)
    lo, hi = np.minimum(lo, (path @ np.stack([side, ahead], 1)).min(0)), \
        np.maximum(hi, (path @ np.stack([side, ahead], 1)).max(0))
    centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2 * 1.08, 0.5)
    # perspective: from behind and above the map centre, looking down at 35 deg
    target = side * centre[0] + ahead * centre[1] + up * float(np.median(h))
    dist = half * 2.2
    eye = target - ahead * dist * np.cos(np.radians(35)) + up * dist * np.sin(np.radians(35))
    fwd = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    R_cw = np.stack([right, np.cross(fwd, right), fwd])  # rows: camera axes in the world
    f = panel_px / (2 * np.tan(np.radians(30)))

    def colours(pts):
        t = np.clip((pts @ up - h_lo) / max(h_hi - h_lo, 1e-6), 0, 1)
        return TURBO_LUT[(t * 255).astype(np.int64)]

    def splat(uv, depth, rgb, size=2):
        img = np.full((panel_px, panel_px, 3), 24, np.uint8)
        order = np.argsort(-depth)  # far first, near written last
        u, v = np.round(uv[order, 0]).astype(np.int64), np.round(uv[order, 1]).astype(np.int64)
        for dy in range(size):
            for dx in range(size):
                uu, vv = u + dx, v + dy
                ok = (uu >= 0) & (uu < panel_px) & (vv >= 0) & (vv < panel_px)
                img[vv[ok], uu[ok]] = rgb[order][ok]
        return img

    def heading(text):
        head = np.full((_LABEL_PX, panel_px, 3), 255, np.uint8)
        cv2.putText(head, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                    cv2.LINE_AA)
        return head

    def top_uv(pts):
        x, y = pts @ side - centre[0], pts @ ahead - centre[1]
        s = panel_px / (2 * half)
        return np.stack([panel_px / 2 + x * s, panel_px / 2 - y * s], axis=1)

    def persp_uv(pts):
        c = (pts - eye) @ R_cw.T
        z = np.maximum(c[:, 2], 1e-6)
        return np.stack([f * c[:, 0] / z + panel_px / 2, f * c[:, 1] / z + panel_px / 2],
                        axis=1), c[:, 2]

    columns = []
    for label, pts in kept.items():
        rgb = colours(pts)
        top_img = splat(top_uv(pts), -(pts @ up), rgb)
        cv2.polylines(top_img, [np.round(top_uv(path)).astype(np.int32)], False,
                      (255, 255, 255), 2)
        uv, z = persp_uv(pts)
        front = z > 0.05
        persp_img = splat(uv[front], z[front], rgb[front])
        puv, pz = persp_uv(path)
        if (pz > 0.05).all():
            cv2.polylines(persp_img, [np.round(puv).astype(np.int32)], False, (255, 255, 255), 2)
        columns.append(np.concatenate([heading(f'{label}: top'), top_img,
                                       heading(f'{label}: perspective'), persp_img], axis=0))
    gap = np.full((columns[0].shape[0], 4, 3), 255, np.uint8)
    out = [columns[0]]
    for col in columns[1:]:
        out += [gap, col]
    return np.concatenate(out, axis=1)
