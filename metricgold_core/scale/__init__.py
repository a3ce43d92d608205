"""Metric scale: sparse metres, a known camera height or the camera's own motion anchor the
model's depth (docs/NODE.md "Metric scale"). ROS-free: the node and the CLIs call these.

    fit = fit_sparse(pred, sparse_m, relative=False)    # robust scale (scale + shift if relative)
    fit = fit_ground_plane(depth_m, K, camera_height_m)  # RANSAC floor plane -> scale
    fit = fit_motion(depth_m, camera, grey, pose, history)  # odometry: photometric 1-D search
    filt = ScaleFilter(smoothing=0.8); scale = filt.update(fit)

    anchor = ScaleAnchor.resolve(model, 'odometry')  # the source of a run, checked once
    fit = anchor.fit(depth_m, camera, measurement, rgb)  # what the node and the CLIs call

May import: numpy, OpenCV, and of the core camera (each module also the modules above it here)
and data (triangulation's tracking benchmark renders its frames with data.trajectory, on use).

Modules:
    sparse   which pixels are measurements; another grid; simulated sparse sensors
    lidar    a LiDAR cloud (mount, transform) projected into a sparse image, hidden points out
    fit      ScaleFit, the robust sparse fits (scale; scale + shift), ScaleFilter over frames
    ground   fit_ground_plane: the known camera height over a floor plane
    motion   fit_motion, MotionHistory, Motion: the scale from odometry
    anchor   ScaleAnchor: a run's source, resolved against the model once
    local    correct_locally: metric points bend the depth where they are (per pixel)
    session  ScaleSession: a run's anchor + filter + odometry history + wait rule + correction
    multiview, triangulation  features tracked over frames, triangulated with the poses
"""
from .anchor import AnchorError, camera_height_problem, METRIC_ONLY, RELATIVE_UNANCHORED
from .anchor import ScaleAnchor, SOURCES
from .fit import fit_sparse, MAX_LOG_RESIDUAL, MIN_POINTS, ScaleFilter, ScaleFit
from .ground import fit_ground_plane, GROUND_MAX_TILT_DEG
from .local import correct_locally, LocalCorrection
from .motion import fit_motion, Motion, motion_grey, motion_grid_hw, MotionFrame
from .motion import MotionHistory
from .session import CORRECTIONS, Scaled, ScaleSession
from .sparse import MAX_SPARSE_DEPTH_M, register_to, sparse_sample
from .sparse import valid_sparse

__all__ = [
    'AnchorError', 'camera_height_problem', 'correct_locally', 'CORRECTIONS', 'LocalCorrection',
    'fit_ground_plane', 'fit_motion', 'fit_sparse',
    'GROUND_MAX_TILT_DEG', 'MAX_LOG_RESIDUAL', 'MAX_SPARSE_DEPTH_M', 'METRIC_ONLY',
    'MIN_POINTS', 'Motion', 'motion_grey', 'motion_grid_hw', 'MotionFrame', 'MotionHistory',
    'register_to', 'RELATIVE_UNANCHORED', 'ScaleAnchor', 'Scaled', 'ScaleFilter',
    'ScaleFit', 'ScaleSession', 'SOURCES', 'sparse_sample', 'valid_sparse',
]
