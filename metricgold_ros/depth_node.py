"""metricgold_depth: camera image in, metric depth, camera_info, colored depth and points out.

A thin shell over metricgold_core: the ROS callbacks only convert a message to numpy and hand
the newest frame to a worker thread (one-slot mailbox); the worker owns the model, picks the
denoising steps and processing resolution that fit `max_latency_ms` from measured stage
times, and hands each depth to the publish thread (outputs.PublishThread) that builds and
publishes the outputs while the next frame is inferred. Run with

    python -m metricgold_ros.depth_node --ros-args --params-file config/depth.yaml \
        -r image:=/camera/image_raw -r camera_info:=/camera/camera_info
"""
from __future__ import annotations

import signal
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from metricgold_core.camera import rectify
from metricgold_core.ros_format import BadInput
from metricgold_core.ros_format import stamp_ns as header_stamp_ns
from metricgold_core.ros_format.camera_info import camera_model_from_info, check_camera_size
from metricgold_core.ros_format.camera_info import fallback_camera_model
from metricgold_core.ros_format.images import compressed_to_rgb8, image_to_rgb8
from .diagnostics import build_diagnostics, NodeStats, Throttle
from .frames import InfoEntry, Mailbox, ReceivedFrame, StampCache
from .latency import LatencyPlanner
from .params import check_consistency, descriptor, normalise, ParameterError, PARAMETERS, SPECS

NODE_NAME = 'metricgold_depth'
RELIABILITY = {'reliable': ReliabilityPolicy.RELIABLE,
               'best_effort': ReliabilityPolicy.BEST_EFFORT}
# Parameters every rclpy node has, or that rcl handles itself: not typos in a YAML file.
BUILTIN_PARAMETERS = ('use_sim_time', 'start_type_description_service')


class StartupError(RuntimeError):
    """The node cannot start as configured (message says what to change)."""


class DepthNode(Node):

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = self._declare_parameters()
        self.stats = NodeStats()
        self.throttle = Throttle(5.0)
        self.planner = LatencyPlanner()
        self.mailbox = Mailbox()
        self.infos = StampCache(self.cfg['camera_info_cache_size'])   # camera_info (InfoEntry)
        self.rectifier = rectify.Rectifier()   # maps cached per camera_info (worker thread)
        self.estimator, self.model_facts = self._load_model()
        from .outputs import Outputs, PublishThread   # after validation (pulls in cv2)

        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2,
                             reliability=RELIABILITY[self.cfg['output_reliability']])
        self.outputs = Outputs(self, out_qos)
        self.publisher = PublishThread(self.outputs.publish, self._published,
                                       self._publish_failed, self._publish_dropped)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        compressed = self.cfg['input_transport'] == 'compressed'
        self._inputs = {   # relative topic -> (message type, callback, queue depth)
            'image/compressed' if compressed else 'image':
                (CompressedImage if compressed else Image, self._on_image, 2),
            'camera_info': (CameraInfo, self._on_camera_info, 10),
        }
        from .odometry import odometry_type
        from .scale_inputs import ScaleInputs
        self.scale = ScaleInputs(self)   # sparse_depth, sparse_points, odom; the session
        self._inputs.update({'sparse_depth': (Image, self.scale.on_sparse_depth, 5),
                             'sparse_points': (PointCloud2, self.scale.on_sparse_points, 5)})
        odometry_msg = odometry_type()
        if odometry_msg is not None:
            self._inputs['odom'] = (odometry_msg, self.scale.on_odometry, 50)
        self._subscriptions_by_topic = {}   # topic -> (subscription, reliability name)
        self._last_stamp_ns = None
        self._fallback = None
        self._update_subscriptions()
        steady = Clock(clock_type=ClockType.STEADY_TIME)   # unaffected by sim-time jumps
        self.create_timer(1.0, self._publish_diagnostics, clock=steady)
        if self.cfg['input_reliability'] == 'auto':
            self.create_timer(0.5, self._update_subscriptions, clock=steady)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._stop = threading.Event()
        self.worker = threading.Thread(target=self._worker_main, name='metricgold_worker',
                                       daemon=True)
        self.worker.start()
        self.get_logger().info(
            f'ready: model {self.model_facts["model"]} on {self.model_facts["device"]} '
            f'({self.model_facts["dtype"]}, {self.model_facts["mode"]} mode), listening on '
            f'{", ".join(self.resolve_topic_name(t) for t in self._inputs)}')
        self.scale.say_source(self.cfg)

    # ------------------------------------------------------------------ set-up

    def _declare_parameters(self) -> dict:
        config = {}
        for spec in PARAMETERS:
            value = self.declare_parameter(spec.name, spec.default, descriptor(spec)).value
            config[spec.name] = normalise(spec.name, value)
        check_consistency(config)
        overrides = getattr(self, '_parameter_overrides', {})
        unknown = sorted(name for name in overrides if name not in SPECS and
                         name not in BUILTIN_PARAMETERS and not name.startswith('qos_overrides'))
        if unknown:
            self.get_logger().warning(f'ignoring unknown parameters (typo?): {", ".join(unknown)}')
        return config

    def _load_model(self):
        import torch   # imported here so a bad YAML file fails before the slow imports

        from metricgold_core.metric_depth import load_estimator

        if self.cfg['torch_threads']:
            torch.set_num_threads(self.cfg['torch_threads'])
        checkpoint = self.cfg['checkpoint']
        try:
            estimator = load_estimator(checkpoint, self.cfg['device'], self.cfg['dtype'],
                                       self.cfg['mode'], compile_mode=self.cfg['compile'],
                                       channels_last=self.cfg['channels_last'])
            model = estimator.model
        except (OSError, ValueError) as exc:
            raise StartupError(f'cannot load the model (`checkpoint` = {checkpoint!r}, `device` '
                               f'= {self.cfg["device"]!r}): {exc}') from exc
        meta = model.meta
        facts = {'model': checkpoint or 'packaged default',
                 'model_preset': meta.get('preset', meta.get('training_data', '-')),
                 'canonical_focal_px': model.canonical_focal_px,
                 'device': str(estimator.device), 'dtype': str(estimator.dtype).split('.')[-1],
                 'mode': self.cfg['mode']}
        facts['depth_type'] = 'affine_invariant' if model.is_relative else 'metric'
        facts['untrained'] = True if meta.get('untrained') else None   # listed only when so
        return estimator, facts

    def _update_subscriptions(self) -> None:
        """(Re)create input subscriptions with the reliability the publishers need.

        Reliable publishers get a reliable subscription: with Fast DDS' default transports a
        best-effort reader of a reliable writer can lose every large (fragmented) image.
        Best-effort publishers (many camera drivers) need a best-effort reader to match at all.
        """
        for topic, (msg_type, callback, depth) in self._inputs.items():
            current = self._subscriptions_by_topic.get(topic)
            wanted = self._wanted_reliability(topic, current[1] if current else None)
            if current is not None and current[1] == wanted:
                continue
            if current is not None:
                self.destroy_subscription(current[0])
                self.get_logger().info(f'{topic}: publishers are {wanted}, resubscribing')
            qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                             reliability=RELIABILITY[wanted])
            self._subscriptions_by_topic[topic] = (
                self.create_subscription(msg_type, topic, callback, qos), wanted)
            if callback == self._on_image:
                self.stats.set(input_reliability=wanted)

    def _wanted_reliability(self, topic: str, current: str | None) -> str:
        mode = self.cfg['input_reliability']
        if mode != 'auto':
            return mode
        publishers = self.get_publishers_info_by_topic(self.resolve_topic_name(topic))
        if not publishers:
            return current or 'best_effort'   # matches either kind once one appears
        best_effort = any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                          for p in publishers)
        return 'best_effort' if best_effort else 'reliable'

    # ------------------------------------------------------------------ callbacks

    def _on_image(self, msg) -> None:
        received_s = time.monotonic()
        self.stats.count('received')
        self.stats.input_rate.tick(received_s)
        stamp_ns = header_stamp_ns(msg.header)
        if self._last_stamp_ns is not None and stamp_ns < self._last_stamp_ns:
            # A bag loop or clock reset: stamps restart, old camera_info pairs are meaningless.
            self.stats.count('stamp_jumps')
            self.infos.clear_history(stamp_ns)
            self._log_throttled('stamp_jump', 'image stamps jumped back in time '
                                f'({self._last_stamp_ns / 1e9:.3f} s -> {stamp_ns / 1e9:.3f} s);'
                                ' camera_info history cleared')
        self._last_stamp_ns = stamp_ns
        self.scale.camera_frame = msg.header.frame_id
        try:
            rgb = compressed_to_rgb8(msg) if isinstance(msg, CompressedImage) \
                else image_to_rgb8(msg)
        except BadInput as exc:
            self._bad_input(exc)
            return
        frame = ReceivedFrame(rgb=rgb, header=msg.header, stamp_ns=stamp_ns,
                              received_s=received_s,
                              convert_ms=(time.monotonic() - received_s) * 1e3)
        if self.mailbox.put(frame):
            self.stats.count('dropped_busy')

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera = camera_model_from_info(msg)
        except BadInput as exc:
            self._bad_input(exc)
            return
        stamp_ns = header_stamp_ns(msg.header)
        self.infos.add(stamp_ns, InfoEntry(msg, camera))
        self.stats.count('camera_info_received')

    def _on_set_parameters(self, params) -> SetParametersResult:
        config = dict(self.cfg)
        try:
            for param in params:
                if param.name in SPECS:
                    config[param.name] = normalise(param.name, param.value)
            check_consistency(config)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        changed = any(config[k] != self.cfg[k]
                      for k in ('scale_source', 'camera_height_m', 'scale_correction'))
        self.cfg = config   # one assignment: the worker sees the old or the new set, never half
        if changed:
            self.scale.say_source(config)
        return SetParametersResult(successful=True)

    def _publish_diagnostics(self) -> None:
        static = {k: v for k, v in self.model_facts.items() if v is not None}
        msg = build_diagnostics(self.stats, time.monotonic(), self.get_clock().now().to_msg(),
                                self.model_facts['device'], self.cfg['max_latency_ms'], static)
        self.diagnostics_pub.publish(msg)

    def _bad_input(self, exc: BadInput) -> None:
        self.stats.bad(exc.kind)
        self._log_throttled('bad_' + exc.kind, f'dropped input ({exc.kind}): {exc}')

    def _log_throttled(self, key: str, text: str) -> None:
        if self.throttle.allow(key):
            self.get_logger().warning(text)

    # ------------------------------------------------------------------ worker

    def _worker_main(self) -> None:
        if self.cfg['warmup']:
            try:
                self._warmup()
            except Exception as exc:   # a failed warm-up is not fatal: frames will show it
                self.get_logger().error(f'warm-up inference failed: {exc!r}')
        while not self._stop.is_set():
            frame = self.mailbox.take(timeout_s=0.2)
            if frame is None:
                continue
            try:
                self._process(frame)
            except BadInput as exc:
                self._bad_input(exc)
            except Exception as exc:   # one bad frame (OOM, odd size) must not end the node
                self.stats.count('errors')
                self._log_throttled('error', f'inference failed on a frame: {exc!r}')

    def _warmup(self) -> None:
        # The first call pays one-off costs (allocations, kernel selection): warm_up times a
        # second one, which the planner starts from.
        pred = self.estimator.warm_up(480, 640, self._resolution(480, 640))
        self.planner.observe(pred.timings, 1, pred.processing_hw)

    def _resolution(self, height: int, width: int) -> int:
        return self.cfg['processing_resolution'] or \
            self.estimator.model.processing_resolution or max(height, width)

    def _process(self, frame: ReceivedFrame) -> None:
        cfg = self.cfg
        age_ms = (time.monotonic() - frame.received_s) * 1e3
        if age_ms > cfg['max_frame_age_ms']:
            self.stats.count('dropped_stale')
            self._log_throttled('stale', f'dropped a frame {age_ms:.0f} ms old (max_frame_age_ms '
                                f'= {cfg["max_frame_age_ms"]:.0f})')
            return
        height, width = frame.rgb.shape[:2]
        source_info, camera = self._camera_for(frame, height, width, cfg)
        rectify_start = time.monotonic()
        rgb, source_info = self._rectify(frame.rgb, source_info, cfg)
        rectify_ms = (time.monotonic() - rectify_start) * 1e3
        plan = self.planner.choose(
            cfg['max_latency_ms'] - age_ms, cfg['steps'], self._resolution(height, width),
            cfg['min_processing_resolution'],
            lambda res: self.estimator.processing_hw(height, width, res))
        want_uncertainty = plan.steps == 2 and self.outputs.wants_uncertainty(cfg)
        from metricgold_core.metric_depth import estimate_metric_depth

        depth_hw = (height, width) if cfg['depth_resolution'] == 'input' else \
            self.estimator.processing_hw(height, width, plan.processing_resolution)
        session, measurement = self.scale.session_for(frame, cfg, camera, depth_hw)
        rejected_before = session.filter.rejected if session.filter is not None else 0
        out = estimate_metric_depth(
            self.estimator, rgb, camera, steps=plan.steps,
            processing_resolution=plan.processing_resolution, seed=cfg['seed'],
            output_uncertainty=want_uncertainty,
            match_input_resolution=cfg['depth_resolution'] == 'input',
            session=session, measurement=measurement)
        pred, factor = out.prediction, out.focal_factor
        self.planner.observe(pred.timings, plan.steps, pred.processing_hw)
        holding, fit_ms = self.scale.observe(out, cfg, session, measurement, rejected_before)
        if not holding:
            self._hand_over(frame, out, source_info, rgb, cfg,
                            frame.convert_ms + rectify_ms + fit_ms)
        self.stats.set(steps=plan.steps, processing_resolution=plan.processing_resolution,
                       plan_changes=self.planner.changes,
                       processing_size='x'.join(map(str, pred.processing_hw[::-1])),
                       predicted_ms=plan.predicted_ms if plan.predicted_ms is not None
                       else float('nan'), focal_rescale=round(factor, 4))

    # ------------------------------------------------------------------ publishing

    def _hand_over(self, frame: ReceivedFrame, out, source_info, rgb, cfg: dict,
                   before_ms: float) -> None:
        """Give the frame's depth (with its camera, out.camera) to the publish thread (never
        blocks the worker)."""
        from .outputs import OutgoingFrame

        outgoing = OutgoingFrame(header=frame.header, depth=out.depth, camera=out.camera,
                                 source_info=source_info, rgb=rgb, uncertainty=out.uncertainty,
                                 cfg=cfg, relative=out.relative, received_s=frame.received_s,
                                 before_ms=before_ms, handed_s=time.monotonic())
        self.publisher.submit(outgoing)

    def _published(self, frame, publish_ms: float) -> None:
        """Publish thread: the frame's outputs are out."""
        done_s = time.monotonic()
        # Hand-over to published (waiting included) is part of every frame's latency.
        self.planner.observe_overhead((done_s - frame.handed_s) * 1e3 + frame.before_ms)
        self.stats.latency.add((done_s - frame.received_s) * 1e3)
        self.stats.output_rate.tick(done_s)
        self.stats.count('published')
        self.stats.set(publish_ms=round(publish_ms, 2))

    def _publish_failed(self, frame, exc: Exception) -> None:
        if self._stop.is_set():   # rclpy already shut down by Ctrl-C: nothing to publish to
            return
        self.stats.count('errors')
        self._log_throttled('publish', f'publishing a frame failed: {exc!r}')

    def _publish_dropped(self, frame) -> None:
        self.stats.count('dropped_publish')
        self._log_throttled('publish_drop', 'publishing is slower than inference (a slow '
                            'subscriber?): dropped a finished frame')

    def _rectify(self, rgb, source_info, cfg: dict):
        """(image, camera_info) in the rectified geometry of P when the input needs it.

        The camera model is P's either way (camera_model_from_info), so only the image and the
        camera_info of the outputs (zero d, identity R) change.
        """
        if source_info is None:
            return rgb, None
        result = self.rectifier.apply(rgb, source_info, cfg['rectify'])
        self.stats.set(rectify=result.status)
        if result.status == rectify.RECTIFIED:
            self.stats.count('rectified')
        elif result.status in (rectify.UNKNOWN_MODEL, rectify.UNSUPPORTED):
            self.stats.count('rectify_' + result.status)
            self._log_throttled('rectify_' + result.status, result.detail)
        return result.image, result.info

    def _camera_for(self, frame: ReceivedFrame, height: int, width: int, cfg: dict):
        """(input CameraInfo or None, CameraModel of the image) for this frame."""
        latest = self.infos.latest
        wait_s = cfg['camera_info_wait_ms'] / 1e3 if latest is not None else 0.0
        entry = self.infos.wait_for(frame.stamp_ns, wait_s)
        if entry is None and latest is not None:
            # No exact pair (late or lost): intrinsics rarely change, so the newest ones for an
            # image of this size are the best guess.
            entry = self.infos.latest_for(height, width)
            self.stats.count('camera_info_unmatched')
        if entry is None:
            if self._fallback is None:
                self.get_logger().warning(
                    'no camera_info received: using a pinhole with fallback_hfov_deg = '
                    f'{cfg["fallback_hfov_deg"]} (remap camera_info to the camera\'s topic)')
            key = (height, width, cfg['fallback_hfov_deg'])
            if self._fallback is None or self._fallback[0] != key:
                self._fallback = (key, fallback_camera_model(height, width,
                                                             cfg['fallback_hfov_deg']))
            self.stats.set(camera_info_source='fallback_hfov')
            return None, self._fallback[1]
        check_camera_size(entry.camera, height, width)
        self.stats.set(camera_info_source='camera_info')
        return entry.info, entry.camera

    def shutdown(self) -> None:
        self._stop.set()
        self.mailbox.close()
        self.worker.join(timeout=5.0)
        self.publisher.close(timeout_s=5.0)   # the frames already handed over, in order


def main(args=None) -> int:
    from . import dds_profile
    dds_note = dds_profile.apply()   # before rclpy.init: read when the participant is made
    # Ctrl-C / SIGTERM stop the spin here instead of in rclpy's handler, which would shut ROS
    # down at once: the frames already handed to the publish thread still go out, in order.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _interrupt)
    node = None
    status = 0
    try:
        node = DepthNode()
        node.get_logger().info(f'Fast DDS profile: {dds_note}')
        node.stats.set(dds_profile=dds_note)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.2)   # back in Python often: signals act at once
    except (ParameterError, ParameterException, StartupError) as exc:
        print(f'[{NODE_NAME}] cannot start: {exc}', file=sys.stderr)
        status = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass   # Ctrl-C or `ros2 lifecycle`-style shutdown: exit quietly
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return status


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == '__main__':
    sys.exit(main())
