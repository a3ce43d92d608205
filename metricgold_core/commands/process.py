"""`metricgold process`: depth for every frame of an image folder, a video or a rosbag2 bag.

Outputs in --output DIR:
    depth/<frame>.npy   float32 metres (NaN = invalid); the record that a frame is done
    depth/<frame>.png   uint16 millimetres (0 = invalid)
    clouds/<frame>.ply  binary little-endian PLY of the valid points, every --cloud-every frames
    bag/                bags only: depth (32FC1), depth/camera_info, points (PointCloud2)
    process_report.json what ran, counts and every failed frame with its reason
Every file is written to a temporary name and renamed, so none is ever half-written.
"""
from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np

from . import add_ground_plane_arguments, add_model_arguments, add_scale_session_arguments
from . import chosen_anchor, scale_session
from ..camera.geometry import DEFAULT_FALLBACK_HFOV_DEG
from ..io_utils import remove_temporaries
from ..model.run_options import cli_help

LOG = logging.getLogger(__name__)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name, help='depth for an image folder, a video or a rosbag2 recording',
        description='Predict metric depth for every frame of INPUT (an image folder, a video '
        'file, or a rosbag2 bag folder / .db3 / .mcap file) and write depth/<frame>.npy '
        '(float32 m), depth/<frame>.png (uint16 mm), clouds/<frame>.ply and, for bags, a new '
        'bag with depth, depth/camera_info and points topics stamped like the input images.')
    p.add_argument('input', metavar='INPUT', help='image folder, video file or rosbag2 bag')
    p.add_argument('--output', required=True, help='output directory (created if missing)')
    add_model_arguments(p)
    p.add_argument('--depth-resolution', choices=('input', 'processing'), default='input',
                   help=cli_help('depth_resolution', ' camera_info and clouds follow it.'))
    p.add_argument('--cloud-every', type=int, default=10, metavar='N',
                   help='write a PLY cloud for every N-th frame (0 = none; bag points topics '
                   'get every frame)')
    p.add_argument('--intrinsics', default=None, metavar='JSON',
                   help='fx, fy, cx, cy [, width, height] in pixels for frames without '
                   "camera_info (default: the input folder's intrinsics.json if present)")
    p.add_argument('--hfov', type=float, default=DEFAULT_FALLBACK_HFOV_DEG, metavar='DEG',
                   help=cli_help('fallback_hfov_deg', ': no camera_info, --intrinsics or '
                                 'intrinsics.json (default: %(default)g).'))
    p.add_argument('--image-topic', default=None, help='bag image topic (default: detected)')
    p.add_argument('--camera-info-topic', default=None,
                   help='bag camera_info topic (default: <image namespace>/camera_info, or the '
                   'only one)')
    p.add_argument('--sparse-depth-topic', default=None, metavar='TOPIC',
                   help='bag Image topic of sparse metric depth registered to the camera image '
                   '(32FC1 m or 16UC1 mm, 0/NaN = none; e.g. a projected lidar): anchors the '
                   'scale per frame, paired by exact stamp (then the newest)')
    p.add_argument('--odometry-topic', default=None, metavar='TOPIC',
                   help='bag nav_msgs/Odometry topic: the scale from the camera\'s metric '
                   'motion (scale source odometry; metric checkpoints only), with --camera-mount')
    p.add_argument('--camera-mount', type=float, nargs=7, default=None,
                   metavar=('X', 'Y', 'Z', 'QX', 'QY', 'QZ', 'QW'),
                   help=cli_help('camera_mount', ", with --odometry-topic (e.g. from the "
                                 "robot's URDF / tf_static)."))
    add_ground_plane_arguments(p)
    p.add_argument('--scale-smoothing', type=float, default=0.0, metavar='W',
                   help=cli_help('scale_smoothing', ' Default: %(default)g.'))
    add_scale_session_arguments(p, 'Here: no files for those frames, counted in '
                                'process_report.json.')
    p.add_argument('--output-namespace', default=None,
                   help="namespace of the output bag topics (default: the image topic's)")
    p.add_argument('--bag-storage', choices=('same', 'sqlite3', 'mcap'), default='same',
                   help='storage of the output bag (default: that of the input)')
    p.add_argument('--ros-distro', choices=('humble', 'jazzy'), default='humble',
                   help='message definitions written to the output bag')
    p.add_argument('--resume', action='store_true',
                   help='skip frames whose outputs are all present (the bag is rebuilt from '
                   'their saved depth)')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    p.set_defaults(func=run)


def frame_paths(out_dir: Path, name: str, with_cloud: bool) -> dict:
    paths = {'npy': out_dir / 'depth' / f'{name}.npy', 'png': out_dir / 'depth' / f'{name}.png'}
    if with_cloud:
        paths['ply'] = out_dir / 'clouds' / f'{name}.ply'
    return paths


def remove_stale_temporaries(out_dir: Path) -> int:
    """Delete what a killed run can leave: atomic-write temp files and the unfinished bag."""
    return sum(len(remove_temporaries(folder))
               for folder in (out_dir, out_dir / 'depth', out_dir / 'clouds'))


def open_source(args, stack: contextlib.ExitStack):
    """(kind, total or None, frame iterator, BagInput or None, default camera) for INPUT."""
    from ..offline import sources

    path = Path(args.input)
    kind = sources.input_kind(path)
    intrinsics_path = args.intrinsics
    if intrinsics_path is None and kind == 'folder':
        found = [p / 'intrinsics.json' for p in (path, path.parent)
                 if (p / 'intrinsics.json').is_file()]
        if found:
            intrinsics_path = found[0]
            LOG.info('using intrinsics from %s', intrinsics_path)
    intrinsics = None if intrinsics_path is None else sources.load_intrinsics(intrinsics_path)
    camera = sources.DefaultCamera(intrinsics, args.hfov)
    for option, value in (('--sparse-depth-topic', args.sparse_depth_topic),
                          ('--odometry-topic', args.odometry_topic)):
        if value is not None and kind != 'bag':
            raise ValueError(f'{option} needs a bag INPUT.')
    if kind == 'folder':
        files = sources.folder_images(path)
        return kind, len(files), sources.folder_frames(files), None, camera
    if kind == 'video':
        return kind, sources.video_frame_count(path), sources.video_frames(path), None, camera
    from ..offline.bag_reader import BagInput, typestore_for

    bag = stack.enter_context(BagInput(path, typestore_for(args.ros_distro), args.image_topic,
                                       args.camera_info_topic, args.sparse_depth_topic,
                                       args.odometry_topic))
    LOG.info('bag %s (%s): images from %s, camera_info from %s', path, bag.storage,
             bag.image_topic, bag.info_topic or 'none (using --intrinsics / --hfov)')
    return kind, bag.total, bag.frames(), bag, camera


def run(args) -> int:
    if args.cloud_every < 0:
        LOG.error('`--cloud-every` must be >= 0, got %d.', args.cloud_every)
        return 2
    source, problem = chosen_anchor(args, '--sparse-depth-topic',
                                    args.sparse_depth_topic is not None, '--odometry-topic',
                                    args.odometry_topic is not None)
    if problem:
        LOG.error('%s', problem)
        return 2
    if (args.odometry_topic is None) != (args.camera_mount is None):
        LOG.error('--odometry-topic and --camera-mount go together (the odometry and where '
                  'the camera sits in its child frame).')
        return 2
    if args.camera_mount is not None:
        from ..camera.poses import mount_matrix
        try:
            mount_matrix(args.camera_mount)
        except ValueError as exc:
            LOG.error('--camera-mount: %s', exc)
            return 2
    if not 0.0 <= args.scale_smoothing < 1.0:
        LOG.error('`--scale-smoothing` must be in [0, 1), got %g.', args.scale_smoothing)
        return 2
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    if remove_stale_temporaries(out_dir):
        LOG.info('removed temporary files an interrupted run left in %s', out_dir)
    try:
        return _process(args, out_dir, source)
    except SetupError as exc:   # an output bag in progress was removed on the way out
        LOG.error('%s', exc)
        return 2


def _process(args, out_dir: Path, source: str) -> int:
    from tqdm import tqdm

    with contextlib.ExitStack() as stack:
        try:
            kind, total, frames, bag, camera = open_source(args, stack)
        except (ValueError, ImportError) as exc:
            LOG.error('%s', exc)
            return 2
        runner = FrameRunner(args, out_dir, camera, source)
        runner.bag = bag
        bag_out = None
        if bag is not None:
            from ..offline.bag_reader import image_namespace
            from ..offline.bag_writer import BagOutput

            namespace = args.output_namespace if args.output_namespace is not None else \
                image_namespace(bag.image_topic)
            storage = bag.storage if args.bag_storage == 'same' else args.bag_storage
            bag_out = stack.enter_context(
                BagOutput(out_dir / 'bag', storage, bag.typestore, namespace))
        failures = []
        progress = tqdm(frames, total=total, unit='frame', disable=args.no_progress,
                        dynamic_ncols=True)
        for frame in progress:
            if frame.error is None:
                try:
                    depth, K_depth = runner.depth_for(frame)
                except NoScaleYet:   # --wait-for-scale: counted by the runner
                    continue
                except ValueError as exc:   # input the model cannot take
                    frame.error = f'{frame.name}: {exc}'
            if frame.error is not None:
                failures.append({'index': frame.index, 'name': frame.name,
                                 'error': frame.error})
                LOG.error('skipped frame %d: %s', frame.index, frame.error)
                continue
            if bag_out is not None:
                points = runner.points(frame, depth, K_depth)
                bag_out.write(frame.header, frame.log_time_ns, depth, K_depth,
                              frame.camera_info, points)
        progress.close()
    seen = runner.done + runner.resumed + len(failures) + runner.waiting
    report = {'input': str(args.input), 'kind': kind, 'frames': seen,
              'inferred': runner.done, 'resumed': runner.resumed, 'failed': failures,
              'clouds_written': runner.clouds}
    if args.wait_for_scale:
        report['waiting_for_scale'] = runner.waiting
    if runner.source != 'none' and runner.session is not None:
        report['scale'] = runner.scale_report(bag)
    if bag_out is not None:
        report['bag'] = {'path': str(bag_out.final_path), 'storage': bag_out.storage,
                         'topics': bag_out.topics, 'messages': bag_out.counts}
    from ..io_utils import save_text
    save_text(out_dir / 'process_report.json', json.dumps(report, indent=2) + '\n')
    LOG.info('%d frames: %d inferred, %d already done, %d failed -> %s', seen, runner.done,
             runner.resumed, len(failures), out_dir)
    if failures:
        LOG.error('%d of %d frames failed (see %s)', len(failures), seen,
                  out_dir / 'process_report.json')
    return 1 if failures else 0


class SetupError(RuntimeError):
    """The run cannot go on (e.g. the model does not load): no frame is to blame."""


class NoScaleYet(Exception):
    """--wait-for-scale: this frame came before the scale source's first accepted fit."""


class FrameRunner:
    """Depth for one frame: loaded when --resume finds it complete, else predicted and saved."""

    def __init__(self, args, out_dir: Path, camera, source: str):
        self.args = args
        self.out_dir = out_dir
        self.camera = camera
        self.estimator = None   # loaded on the first frame that needs it: resumes skip loading
        self.done = self.resumed = self.clouds = 0
        self.waiting = 0        # frames held back by --wait-for-scale
        self.source = source    # scale source (commands.chosen_anchor)
        self.session = None     # scale.ScaleSession, built when the model loads
        self.scales = []        # per inferred frame: (scale used, this frame's fit was good)
        self.local = {'applied': 0, 'fallback': 0}   # local corrections tried, by outcome
        self.bag = None         # BagInput (odometry)
        self.rejects = {}       # odometry fits rejected, by reason
        self.mount = None       # 4x4 camera optical frame in the odometry child frame
        if args.camera_mount is not None:   # checked by run() before this runner is built
            from ..camera.poses import mount_matrix
            self.mount = mount_matrix(args.camera_mount)

    def scale_report(self, bag) -> dict:
        values = np.array([s for s, _ in self.scales], dtype=np.float64)
        report = {'source': self.source,
                  'smoothing': self.args.scale_smoothing,
                  'correction': self.args.scale_correction,
                  'frames_fitted': sum(1 for _, ok in self.scales if ok),
                  'rejected': self.session.filter.rejected if self.session else 0,
                  'local_corrections': dict(self.local)}
        if values.size:
            report.update(scale_median=float(np.median(values)),
                          scale_cv=float(values.std() / values.mean()) if values.size > 1
                          else 0.0)
        if bag is not None and self.args.sparse_depth_topic is not None:
            report['sparse_depth'] = dict(bag.sparse_counts)
        if bag is not None and self.args.odometry_topic is not None:
            report['odometry'] = dict(bag.odometry_counts, fits_rejected=dict(self.rejects))
        return report

    def _estimator(self):
        if self.estimator is None:
            from ..metric_depth import load_estimator
            from ..scale import AnchorError

            try:
                estimator = load_estimator(self.args.checkpoint, self.args.device,
                                           self.args.dtype, self.args.mode)
            except (OSError, ValueError) as exc:   # not a frame's fault: stop the run
                raise SetupError(f'cannot load the model: {exc}') from exc
            try:
                self.session = scale_session(estimator.model, self.args, self.source,
                                             self.args.camera_height)
            except AnchorError as exc:
                raise SetupError(f'{exc} (--sparse-depth-topic, a bag with sparse metric '
                                 'depth)') from exc
            if self.session.anchor.note:
                raise SetupError(f'{self.session.anchor.note}; process writes metres: anchor it '
                                 'with --sparse-depth-topic (a bag with sparse metric depth)')
            if self.session.note:
                LOG.warning('%s', self.session.note)
            self.estimator = estimator
        return self.estimator

    def depth_for(self, frame) -> tuple[np.ndarray, np.ndarray]:
        """(depth (h, w) float32 metres, its 3x3 K) for a readable frame; files saved."""
        from ..metric_depth import estimate_metric_depth
        from ..io_utils import depth_to_mm_png, save_npy, save_png
        from ..offline.ply import write_ply
        from ..ros_format.clouds import cloud_xyz_rgb

        height, width = frame.rgb.shape[:2]
        camera = frame.camera if frame.camera is not None else self.camera.camera(height, width)
        every = self.args.cloud_every
        paths = frame_paths(self.out_dir, frame.name, every > 0 and frame.index % every == 0)
        if self.args.resume and all(p.exists() for p in paths.values()):
            depth = np.load(paths['npy'])
            self.resumed += 1
            return depth, camera.scaled(*depth.shape).K

        estimator = self._estimator()
        out = estimate_metric_depth(
            estimator, frame.rgb, camera, steps=self.args.steps,
            processing_resolution=self.args.processing_resolution, seed=self.args.seed,
            match_input_resolution=self.args.depth_resolution == 'input',
            session=self.session, measurement=self.measurement(frame))
        if out.relative:   # a relative model before its first good sparse fit: no metres
            raise ValueError('no metric scale yet for this affine-invariant checkpoint (no '
                             'good sparse depth fit so far)')
        if out.fit is not None and not out.fit.ok and out.fit.reject:
            self.rejects[out.fit.reject] = self.rejects.get(out.fit.reject, 0) + 1
        if out.local is not None:
            self.local['applied' if out.local.ok else 'fallback'] += 1
        if self.session.holding():
            self.waiting += 1
            raise NoScaleYet(frame.name)
        if self.source != 'none':
            self.scales.append((out.scale, bool(out.fit is not None and out.fit.ok)))
        depth = out.depth
        K_depth = out.camera.K
        # The .npy goes last: its presence is what marks the frame as done for --resume.
        if 'ply' in paths:
            write_ply(paths['ply'], *cloud_xyz_rgb(self.points(frame, depth, K_depth)))
            self.clouds += 1
        save_png(paths['png'], depth_to_mm_png(depth))
        save_npy(paths['npy'], depth)
        self.done += 1
        return depth, K_depth

    def measurement(self, frame):
        """This frame's scale measurement for the anchor (None: none this frame)."""
        if self.source == 'odometry':
            pose = self.bag.odometry.at(frame.stamp_ns)
            if pose is not None:
                pose = pose @ self.mount
            return self.session.motion(pose, frame.stamp_ns)
        return frame.sparse_m if self.source == 'sparse_depth' else None

    def points(self, frame, depth: np.ndarray, K_depth: np.ndarray) -> np.ndarray:
        from ..ros_format.clouds import organized_cloud

        return organized_cloud(depth, K_depth, frame.rgb)
