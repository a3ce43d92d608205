"""`metricgold infer`: images -> <stem>_depth.npy (m), _depth.png (uint16 mm), _colored.png.

An affine-invariant checkpoint (Marigold) without a scale anchor gives relative depth, written
as <stem>_relative.npy (unitless, linear [0, 1], near = 0) and <stem>_relative_colored.png; with
--sparse-depth it is anchored to metres like a metric one (--camera-height needs a metric model).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from . import add_ground_plane_arguments, add_model_arguments, add_scale_session_arguments
from . import chosen_anchor, scale_session
from ..camera.geometry import DEFAULT_FALLBACK_HFOV_DEG
from ..model.run_options import cli_help
from ..scale import SOURCES

LOG = logging.getLogger(__name__)


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help='predict metric depth for image files',
                       description='Predict metric depth for each IMAGE and write '
                       '<stem>_depth.npy (float32 metres, NaN = invalid), <stem>_depth.png '
                       '(uint16 millimetres, 0 = invalid) and <stem>_depth_colored.png.')
    p.add_argument('images', nargs='+', metavar='IMAGE', help='input image files')
    p.add_argument('--output', required=True, help='output directory (created if missing)')
    add_model_arguments(p)
    p.add_argument('--intrinsics', default=None, metavar='JSON',
                   help='camera intrinsics: JSON with fx, fy, cx, cy in pixels [, width, '
                   'height of the image they describe] (e.g. a data/real/*/intrinsics.json)')
    p.add_argument('--hfov', type=float, default=None, metavar='DEG',
                   help=cli_help('fallback_hfov_deg', ': no --intrinsics file (default: '
                                 f'{DEFAULT_FALLBACK_HFOV_DEG:g}).'))
    p.add_argument('--sparse-depth', nargs='+', default=None, metavar='FILE',
                   help='sparse metric depth registered to the image(s) that anchors the scale: '
                   '.npy float metres (NaN or 0 = no measurement) or a 16-bit PNG in '
                   'millimetres (0 = none), on any grid (scaled to the image); one file for all '
                   'images or one per image, in order')
    add_ground_plane_arguments(p)
    p.add_argument('--scale-source', choices=SOURCES, default=None,
                   help=cli_help('scale_source', ' Default: sparse_depth with --sparse-depth, '
                                 'ground_plane with --camera-height, else none; odometry '
                                 'needs --poses.'))
    p.add_argument('--poses', default=None, metavar='FILE',
                   help='--scale-source odometry: camera poses in the TUM format, one line per '
                   'IMAGE in order: `timestamp tx ty tz qx qy qz qw`, camera-to-world of the '
                   "camera's optical frame in metres (the scale comes from the motion between "
                   'images; metric checkpoints only)')
    add_scale_session_arguments(
        p, 'Here: no files for an image without an accepted fit (with --scale-source odometry: '
        'the images before the first one).')
    p.set_defaults(func=run)


def read_sparse_depth(path) -> np.ndarray:
    """float32 metres (NaN = none) from a .npy (metres, or uint16 millimetres) or a 16-bit PNG
    (millimetres), read with the dataset readers' file helpers."""
    from ..data.base import load_npy, read_depth_png
    from ..ros_format.images import sparse_to_metres

    path = Path(path)
    try:
        array = load_npy(path) if path.suffix.lower() == '.npy' else read_depth_png(path)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(f'cannot read sparse depth {path}: {exc} Give a 16-bit PNG in '
                         'millimetres or a .npy in metres.') from exc
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f'sparse depth {path} must be one 2-D depth image, got shape '
                         f'{array.shape} {array.dtype}')
    return sparse_to_metres(array, '16UC1' if array.dtype == np.uint16 else '32FC1')


def infer_source(args, given: str, problem: str | None) -> tuple:
    """(scale source, problem or None) from --scale-source and the source the anchor options
    give (commands.chosen_anchor: one at most, 'none' without)."""
    if problem:
        return 'none', problem
    source = args.scale_source or given
    needs = {'sparse_depth': '--sparse-depth', 'ground_plane': '--camera-height',
             'odometry': '--poses'}
    if source != 'none' and given != source:
        return source, f'--scale-source {source} needs {needs[source]}.'
    if source == 'none' and given != 'none':
        return source, f'{needs[given]} needs --scale-source {given} (or no --scale-source).'
    return source, None


def fallback_camera_said(args) -> str:
    """How the camera is known when no --intrinsics file is given."""
    hfov = args.hfov if args.hfov is not None else DEFAULT_FALLBACK_HFOV_DEG
    how = '--hfov' if args.hfov is not None else 'fallback (no --intrinsics / --hfov)'
    return f'{how}: hfov {hfov:g} deg'


def run(args) -> int:
    from ..io_utils import depth_to_mm_png, read_rgb, save_npy, save_png
    from ..metric_depth import estimate_metric_depth, load_estimator
    from ..offline.sources import check_unique_stems, DefaultCamera, load_intrinsics
    from ..scale import AnchorError
    from ..visualize import colorize_depth

    try:
        check_unique_stems(args.images, 'the IMAGE list')
    except ValueError as exc:
        LOG.error('%s', exc)
        return 2
    intrinsics = None
    if args.intrinsics is not None:
        try:
            intrinsics = load_intrinsics(args.intrinsics)
        except ValueError as exc:
            LOG.error('%s', exc)
            return 2
    elif args.hfov is not None and not 0.0 < args.hfov < 180.0:
        LOG.error('`--hfov` must be in (0, 180) degrees, got %g.', args.hfov)
        return 2
    sparse = None
    given, problem = chosen_anchor(args, '--sparse-depth', args.sparse_depth is not None,
                                   '--poses', args.poses is not None)
    source, problem = infer_source(args, given, problem)
    if problem:
        LOG.error('%s', problem)
        return 2
    if args.sparse_depth is not None:
        if len(args.sparse_depth) not in (1, len(args.images)):
            LOG.error('--sparse-depth takes one file for all images or one per image (%d '
                      'images, %d files).', len(args.images), len(args.sparse_depth))
            return 2
        try:
            sparse = [read_sparse_depth(f) for f in args.sparse_depth]
        except ValueError as exc:
            LOG.error('%s', exc)
            return 2
    motion = None
    if args.poses is not None:
        from ..camera.poses import read_tum

        try:
            stamps, poses = read_tum(args.poses, len(args.images))
        except (OSError, ValueError) as exc:
            LOG.error('%s', exc)
            return 2
        motion = (stamps, poses)
    camera = DefaultCamera(intrinsics, args.hfov if args.hfov is not None
                           else DEFAULT_FALLBACK_HFOV_DEG)
    camera_said = (f'--intrinsics {args.intrinsics}' if intrinsics is not None
                   else fallback_camera_said(args))
    est = load_estimator(args.checkpoint, args.device, args.dtype, args.mode)
    try:
        # odometry is a sequence: the scale (and the earlier frames) carry from image to image
        session = scale_session(est.model, args, source, args.camera_height,
                                carry=source == 'odometry')
    except AnchorError as exc:
        LOG.error('%s', exc)
        return 2
    if session.note:
        LOG.warning('%s', session.note)
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = held = 0
    fallback_said = [False]
    for index, name in enumerate(args.images):
        try:
            rgb = read_rgb(name)
        except ValueError as exc:
            LOG.error('skipping %s', exc)
            failed += 1
            continue
        image_camera = camera.camera(*rgb.shape[:2])
        fx = image_camera.fx
        if intrinsics is None and args.hfov is None and not fallback_said[0]:
            print(f'no camera intrinsics given: assuming {camera_said} (fx {fx:.1f} px at '
                  f'{rgb.shape[1]} px wide); pass --intrinsics FILE or --hfov DEG')
            fallback_said[0] = True
        measurement = None
        if sparse is not None:
            measurement = sparse[index if len(sparse) > 1 else 0]
        elif motion is not None:
            measurement = session.motion(motion[1][index], round(motion[0][index] * 1e9))
        pred = estimate_metric_depth(est, rgb, image_camera, steps=args.steps,
                                     processing_resolution=args.processing_resolution,
                                     seed=args.seed, session=session, measurement=measurement)
        stem = out_dir / Path(name).stem
        fit = pred.fit
        if fit is not None:
            LOG.info('%s: scale anchor %s: scale %.4g, shift %.4g, %d points, residual %.3g%s',
                     name, source, pred.scale, pred.shift, fit.points, fit.residual,
                     '' if fit.ok else f' -- fit rejected ({fit.reason}): last good (or the '
                     'model) scale kept')
        if pred.local is not None:
            LOG.info('%s: local scale correction %s', name,
                     f'from {pred.local.points} points ({pred.local.outliers} outliers dropped)'
                     if pred.local.ok else f'not applied ({pred.local.reason}): global scale')
        if session.holding():
            held += 1
            print(f'{name}: no accepted scale fit yet: nothing written (--wait-for-scale)')
            continue
        if pred.relative:
            save_npy(f'{stem}_relative.npy', pred.depth)
            save_png(f'{stem}_relative_colored.png',
                     colorize_depth(np.maximum(pred.depth, 1e-6), 0.0, 1.0, log_scale=False))
            print(f'{name}: this checkpoint gives relative depth (affine-invariant, unitless, '
                  f'0 = near, 1 = far), not metres: wrote {stem}_relative.npy and '
                  f'{stem}_relative_colored.png; pass --sparse-depth FILE for metres')
            continue
        save_npy(f'{stem}_depth.npy', pred.depth)
        save_png(f'{stem}_depth.png', depth_to_mm_png(pred.depth))
        save_png(f'{stem}_depth_colored.png', colorize_depth(pred.depth))
        valid = pred.depth[np.isfinite(pred.depth)]
        LOG.info('%s: %dx%d, fx %.1f px (%s, focal rescale %.4g), depth %.2f..%.2f m '
                 '(median %.2f m), %.0f ms -> %s_depth.*', name, rgb.shape[1], rgb.shape[0],
                 fx, camera_said, pred.focal_factor, valid.min(), valid.max(), np.median(valid),
                 pred.timings['total'], stem)
    if held:
        LOG.info('%d of %d images held back before the first accepted scale fit', held,
                 len(args.images))
    if failed:
        LOG.error('%d of %d images failed', failed, len(args.images))
    return 1 if failed else 0
