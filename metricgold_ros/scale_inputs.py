"""The node's metric-scale side: the `sparse_depth` images and `sparse_points` clouds by stamp,
the `odom` odometry, the run's scale.ScaleSession, and the diagnostics of each frame's fit and
local correction. ROS callbacks feed it; the worker asks it for each frame's session and
measurement and reports the result back (docs/NODE.md "Metric scale")."""
from __future__ import annotations

import time

from metricgold_core.ros_format import BadInput
from metricgold_core.ros_format import stamp_ns as header_stamp_ns
from .frames import SparseEntry, StampCache

# Parameters whose change starts a new session (the filter and history start again); the
# correction level and the wait rule apply to the running one.
SESSION_KEYS = ('scale_source', 'scale_smoothing', 'camera_height_m', 'ground_max_tilt_deg')


class ScaleInputs:
    """Scale measurements and state of one node (`node`: its stats, throttled log, bad-input
    count, estimator and logger)."""

    def __init__(self, node):
        from .odometry import OdometryInput
        from .sparse_points import PointsInput

        self.node = node
        self.odometry = OdometryInput(node)   # scale_source odometry
        self.points_input = PointsInput(self.odometry.tf_buffer)   # sparse_points clouds
        self.camera_frame = ''   # frame_id of the newest image: where clouds are placed
        # sparse_depth images (SparseEntry) and sparse_points clouds (CloudEntry) by stamp
        self.sparse = StampCache(10)
        self._session = None   # (SESSION_KEYS values, scale.ScaleSession): worker only

    # ------------------------------------------------------------------ callbacks

    def on_sparse_depth(self, msg) -> None:
        from metricgold_core.ros_format.images import sparse_depth_to_metres

        try:
            metres = sparse_depth_to_metres(msg)
        except BadInput as exc:   # never fatal: dropped and counted
            self.node._bad_input(exc)
            return
        self.sparse.add(header_stamp_ns(msg.header), SparseEntry(metres))
        self.node.stats.count('sparse_depth_received')

    def on_sparse_points(self, msg) -> None:
        stats = self.node.stats
        try:
            stamp_ns, entry = self.points_input.to_camera(msg, self.camera_frame, self.node.cfg)
        except BadInput as exc:   # malformed, or a frame nothing places: dropped and counted
            self.node._bad_input(exc)
            if exc.kind == 'sparse_points_frame':
                stats.set(sparse_points_transform='unknown frame', sparse_points_warning=(
                    f'sparse_points clouds dropped: frame {msg.header.frame_id!r} unknown (no TF '
                    'to the image frame, no sparse_points_mount)'))
            return
        self.sparse.add(stamp_ns, entry)
        stats.count('sparse_points_received')
        stats.set(sparse_points_transform=entry.how, sparse_points_warning='')

    def on_odometry(self, msg) -> None:
        why = self.odometry.on_odometry(msg)
        self.node.stats.count('odometry_refused' if why else 'odometry_received')
        if why:
            self.node._log_throttled('odometry', f'dropped an odometry message: {why}')

    # ------------------------------------------------------------------ the session

    def new_session(self, cfg: dict):
        """The scale.ScaleSession of these parameters (its `note`: why no metres)."""
        from metricgold_core.scale import ScaleAnchor, ScaleSession

        anchor = ScaleAnchor.resolve(self.node.estimator.model, cfg['scale_source'],
                                     camera_height_m=cfg['camera_height_m'],
                                     ground_max_tilt_deg=cfg['ground_max_tilt_deg'],
                                     smoothing=cfg['scale_smoothing'], strict=False)
        return ScaleSession(anchor, cfg['scale_correction'], cfg['wait_for_scale'])

    def say_source(self, cfg: dict) -> None:
        """Log (and keep for diagnostics) why the outputs are what they are."""
        session = self.new_session(cfg)
        anchor = session.anchor
        warning = anchor.note
        if warning and anchor.relative_model:
            warning += ': publishing depth/relative only, no depth or points'
        elif warning:
            warning += ': using the model scale'
        else:
            warning = session.note
        self.node.stats.set(scale_warning=warning, scale_source=anchor.source)
        if warning:
            self.node.get_logger().warning(warning)

    def session_for(self, frame, cfg: dict, camera, depth_hw: tuple) -> tuple:
        """(scale.ScaleSession, this frame's measurement) for a frame whose image has the
        CameraModel `camera` and whose depth will be (height, width) depth_hw."""
        key = tuple(cfg[k] for k in SESSION_KEYS)
        if self._session is None or self._session[0] != key:
            self._session = (key, self.new_session(cfg))
        session = self._session[1]
        session.correction, session.wait_for_scale = cfg['scale_correction'], \
            cfg['wait_for_scale']
        anchor = session.anchor
        measurement = None
        if anchor.active and anchor.source == 'sparse_depth':
            depth_camera = camera if (camera.height, camera.width) == tuple(depth_hw) else \
                camera.scaled(*depth_hw)
            measurement = self._sparse_for(frame, cfg, depth_camera)
        elif anchor.active and anchor.source == 'odometry':
            pose, how = self.odometry.camera_pose(frame.stamp_ns, frame.header.frame_id, cfg)
            if pose is None:
                self.node._log_throttled('odometry_pose', f'no camera pose for a frame ({how}): '
                                         'keeping the last good scale')
            measurement = session.motion(pose, frame.stamp_ns)
        return session, measurement

    def _sparse_for(self, frame, cfg: dict, depth_camera):
        """Sparse metres paired with this frame (exact stamp, bounded wait, then the newest):
        a sparse_depth image, or a sparse_points cloud projected into `depth_camera` (the
        CameraModel of the depth image this frame will have)."""
        stats = self.node.stats
        entry = self.sparse.wait_for(frame.stamp_ns, cfg['sparse_depth_wait_ms'] / 1e3)
        if entry is None:
            entry = self.sparse.latest
            if entry is None:
                stats.count('sparse_depth_missing')
                self.node._log_throttled(
                    'sparse_missing', 'scale_source is sparse_depth but no sparse_depth image '
                    'or sparse_points cloud has arrived: keeping the last good scale')
                return None
            stats.count('sparse_depth_unmatched')
        if isinstance(entry, SparseEntry):
            return entry.metres
        return self._project_cloud(entry, depth_camera, cfg)

    def _project_cloud(self, entry, camera, cfg: dict):
        """A sparse_points cloud (CloudEntry) as a sparse depth image of `camera`."""
        from metricgold_core.scale.lidar import project_cloud

        start = time.monotonic()
        projection = project_cloud(entry.points_cam, camera, entry.origin_cam,
                                   cfg['sparse_points_occlusion_gap'])
        self.node.stats.set(sparse_points_kept=projection.kept,
                            sparse_points_in_cloud=projection.points,
                            sparse_points_occluded=projection.occluded,
                            sparse_points_project_ms=round((time.monotonic() - start) * 1e3, 2))
        if projection.kept == 0:
            self.node.stats.count('sparse_points_none_in_view')
            self.node._log_throttled('sparse_points_view', 'no point of the sparse_points cloud '
                                     f'is in view: {projection.summary()}; keeping the last '
                                     'good scale')
        return projection.depth_m

    # ------------------------------------------------------------------ after the frame

    def observe(self, out, cfg: dict, session, measurement, rejected_before: int) -> tuple:
        """Diagnostics and logs of this frame's fit, local correction and wait rule; returns
        (hold the frame back, the odometry fit's ms inside the latency budget)."""
        stats, log = self.node.stats, self.node._log_throttled
        fit_ms = getattr(measurement, 'fit_ms', None)   # odometry: the fit, inside the budget
        if fit_ms is not None:
            stats.set(scale_fit_ms=round(fit_ms, 1))
        else:
            fit_ms = 0.0
        fit = out.fit
        if fit is not None and not fit.ok:
            log('scale_fit', f'scale fit rejected ({fit.reason}): keeping the last good scale')
        scale_filter = session.filter
        if scale_filter is not None and scale_filter.rejected > rejected_before:
            # a bad fit or an outlier the filter rejected this frame
            stats.count('scale_rejected', scale_filter.rejected - rejected_before)
        if fit is not None and cfg['scale_source'] == 'odometry':
            stats.count('odometry_fits_tried')
            stats.count('odometry_fits_accepted' if fit.ok else
                        f'odometry_rejected_{fit.reject or "other"}')
            points = getattr(measurement, 'point_stats', {}) or {}
            stats.set(odometry_parallax_px=fit.parallax_px, odometry_fit=fit.method,
                      odometry_points=int(points.get('triangulated', 0)),
                      odometry_points_ms=round(float(points.get('ms', 0.0)), 2))
        local = out.local
        if local is not None:
            stats.count('local_corrections' if local.ok else 'local_fallbacks')
            if not local.ok:
                log('local', f'local scale correction not applied ({local.reason}): global '
                    'scale only')
            stats.set(local_points=local.points, local_outliers=local.outliers,
                      local_ms=round(local.ms, 2), local_fallback=local.reason)
        stats.set(scale_source=cfg['scale_source'], scale=out.scale, shift=out.shift,
                  scale_correction=cfg['scale_correction'],
                  scale_points=0 if fit is None else fit.points,
                  scale_residual=float('nan') if fit is None else fit.residual,
                  output='depth/relative' if out.relative else 'depth')
        holding = session.holding(out.relative)
        stats.set(holding_for_scale=holding, waiting_for=(
            f'a first accepted {cfg["scale_source"]} scale fit'
            + ('' if fit is None or fit.ok else f' (last: {fit.reason})')
            + ('' if fit is not None else ' (no measurement for this frame)'))
            if holding else '')
        if holding:
            stats.count('waiting_for_scale')
            log('wait_for_scale', "no accepted scale fit yet: holding the depth back "
                "(wait_for_scale), the model's own scale would not match what follows")
        return holding, fit_ms
