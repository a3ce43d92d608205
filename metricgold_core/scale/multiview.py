"""Multi-view geometry of tracked points: rays, parallax, midpoint triangulation, Gauss-Newton
refinement on the reprojection error and the uncertainty of the depth, vectorised over many
points seen in a few frames.

Poses are 4x4 camera -> world transforms of the optical frame (metres); K the 3x3 intrinsics of
each frame; observations `obs` [N, F, 2] pixels of N points in F frames, NaN where unseen, with
weights `w` [N, F] (1 seen, 0 not). Pure numpy.
"""
from __future__ import annotations

import numpy as np


def world_rays(obs: np.ndarray, poses: np.ndarray, Ks: np.ndarray) -> np.ndarray:
    """Unit bearings [N, F, 3] in the world of observations obs [N, F, 2] (NaN rows give the
    ray of pixel (0, 0): weigh them out)."""
    uv1 = np.concatenate([np.nan_to_num(obs.astype(np.float64)),
                          np.ones(obs.shape[:2] + (1,))], axis=2)         # [N, F, 3]
    rays = np.matmul(poses[:, :3, :3] @ np.linalg.inv(Ks), uv1[..., None])[..., 0]
    return rays / np.linalg.norm(rays, axis=2, keepdims=True)


def parallax_deg(rays: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """[N] widest angle (degrees) between each point's newest ray (frame F-1) and an earlier
    one: 0 for a camera that only turned, which sees a point along one world direction."""
    cos = np.where(seen, (rays * rays[:, -1:]).sum(axis=2), 1.0)
    return np.degrees(np.arccos(np.clip(cos.min(axis=1), -1.0, 1.0)))


def midpoint(rays: np.ndarray, w: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Points [M, 3] closest to their rays [M, F, 3] from camera centres [F, 3] (weights w):
    sum_j w_j (I - d_j d_j^T)(X - c_j) = 0. NaN rows where the rays are parallel."""
    wd = rays * w[..., None]
    A = w.sum(axis=1)[:, None, None] * np.eye(3) - wd.transpose(0, 2, 1) @ rays
    along = (rays @ centres.T).diagonal(axis1=1, axis2=2)                 # d_j . c_j
    b = w @ centres - (wd * along[..., None]).sum(axis=1)
    return solve3(A, b)


def refine_points(X: np.ndarray, obs: np.ndarray, w: np.ndarray, poses: np.ndarray,
                  Ks: np.ndarray, iterations: int = 2) -> tuple:
    """Gauss-Newton on the reprojection error of points X [M, 3] seen at obs [M, F, 2]
    (weights w [M, F]): X, the normal matrix [M, 3, 3] and squared residuals [M, F]."""
    R, K = poses[:, :3, :3], Ks
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    target = np.nan_to_num(obs.astype(np.float64))
    sw = np.sqrt(w)[..., None]
    for it in range(iterations + 1):
        p = to_cameras(X, poses)                                          # [M, F, 3]
        # (views a track was not seen in, and points behind a camera, weigh nothing here;
        # the cheirality gate rejects the latter)
        z = np.where((w > 0) & (p[..., 2] > 1e-6), p[..., 2], 1.0)
        x, y = p[..., 0] / z, p[..., 1] / z
        r_u = fx * x + cx - target[..., 0]
        r_v = fy * y + cy - target[..., 1]
        # d(u, v)/dX: the camera's axes (columns of R) over z
        J_u = (fx / z)[..., None] * (R[:, :, 0] - x[..., None] * R[:, :, 2]) * sw
        J_v = (fy / z)[..., None] * (R[:, :, 1] - y[..., None] * R[:, :, 2]) * sw
        J = np.concatenate([J_u, J_v], axis=1)                            # [M, 2F, 3]
        H = gram(J)
        if it == iterations:
            break
        r = np.concatenate([r_u, r_v], axis=1) * np.concatenate([sw, sw], axis=1)[..., 0]
        g = (J * r[..., None]).sum(axis=1)
        X = X - solve3(H, g)
    return X, H, r_u ** 2 + r_v ** 2


def log_depth_sigma(H: np.ndarray, noise: np.ndarray, z: np.ndarray,
                    pose: np.ndarray) -> np.ndarray:
    """[M] 1-sigma of log depth in the camera `pose` of points whose Gauss-Newton normal matrix
    is H [M, 3, 3] and pixel noise variance `noise` [M] (px^2), at depth z [M]:
    var(z) = noise a^T H^-1 a with a the camera's optical axis in the world."""
    axis = np.broadcast_to(pose[:3, 2], (len(H), 3))
    with np.errstate(invalid='ignore', divide='ignore'):
        var_z = noise * (solve3(H, axis) * axis).sum(axis=1)
        return np.sqrt(np.maximum(var_z, 0.0)) / z


def predict_pixels(uv: np.ndarray, X: np.ndarray, pose_prev: np.ndarray, K_prev: np.ndarray,
                   pose: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Where pixels uv [N, 2] of the last frame should appear in this one: their point X
    [N, 3] (world) projected where known, else moved by the rotation between the frames alone
    (a turning camera's flow is mostly rotation). [N, 2] float64."""
    R = pose[:3, :3].T @ pose_prev[:3, :3]
    rays = np.concatenate([uv, np.ones((len(uv), 1))], axis=1) @ (K @ R @ np.linalg.inv(K_prev)).T
    known = np.isfinite(X).all(axis=1)
    if known.any():
        rays[known] = (X[known] - pose[:3, 3]) @ pose[:3, :3] @ K.T
    with np.errstate(invalid='ignore', divide='ignore'):
        out = rays[:, :2] / rays[:, 2:]
    bad = ~np.isfinite(out).all(axis=1) | (rays[:, 2] <= 0)
    out[bad] = uv[bad]
    return out


def to_cameras(X: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Points X [M, 3] (world) in each camera of poses [F, 4, 4]: [M, F, 3]."""
    # R^T (X - c) as a row vector: X^T R - c^T R
    R = poses[:, :3, :3]
    offset = np.einsum('fj,fjk->fk', poses[:, :3, 3], R)                  # [F, 3]
    return (X @ R.transpose(1, 0, 2).reshape(3, -1)).reshape(len(X), -1, 3) - offset


def gram(J: np.ndarray) -> np.ndarray:
    """J^T J [M, 3, 3] of J [M, K, 3]."""
    H = np.empty((len(J), 3, 3))
    for i in range(3):
        for j in range(i, 3):
            H[:, i, j] = H[:, j, i] = (J[..., i] * J[..., j]).sum(axis=1)
    return H


def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a x b row by row for [M, 3] arrays (np.cross costs more on small arrays)."""
    return np.stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1], a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                     a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]], axis=1)


def solve3(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x [M, 3] of A x = b for A [M, 3, 3] (Cramer's rule); NaN rows where A is singular."""
    c0 = cross(A[:, 1], A[:, 2])     # columns of the adjugate
    c1 = cross(A[:, 2], A[:, 0])
    c2 = cross(A[:, 0], A[:, 1])
    det = (A[:, 0] * c0).sum(axis=1)
    scale = np.abs(A).max(axis=(1, 2)) ** 3
    with np.errstate(invalid='ignore', divide='ignore', over='ignore'):
        ok = np.isfinite(det) & (np.abs(det) > 1e-12 * scale)
        x = np.stack([c0, c1, c2], axis=2) @ b[..., None] / det[:, None, None]
    x = x[..., 0]
    x[~ok] = np.nan
    return x
