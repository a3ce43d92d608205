"""`metricgold` subcommands: one module each, with add_parser(sub, name) and run(args).

The top of the core: may import any package of it (never metricgold_ros); nothing but cli.py
imports it. Shared options live here, shared work in the packages below.
"""
import argparse

from ..model.run_options import cli_help, MODES
from ..scale.ground import GROUND_MAX_TILT_DEG


def add_model_arguments(parser, sampling: bool = True,
                        checkpoint_help: str = 'checkpoint directory (default: the packaged '
                        'default model)') -> None:
    """The options of a model run, the same for every command that runs one: --checkpoint,
    --steps, --device, --dtype, --mode and, with `sampling`, --processing-resolution, --seed
    (metric_depth.load_estimator / estimate_metric_depth take them as they are). Their texts
    are the node's parameter descriptions (run_options.DESCRIPTIONS)."""
    parser.add_argument('--checkpoint', default=None, help=checkpoint_help)
    parser.add_argument('--steps', type=int, choices=(1, 2), default=1,
                        help=cli_help('steps', ': 1 or 2 (default 1).'))
    if sampling:
        parser.add_argument('--processing-resolution', type=int, default=None,
                            help=cli_help('processing_resolution', "; 0: the image's own size "
                                          "(default: the checkpoint's)."))
        parser.add_argument('--seed', type=int, default=0, help=cli_help('seed'))
    parser.add_argument('--device', default='auto', help=cli_help('device'))
    parser.add_argument('--dtype', default='auto', help=cli_help('dtype'))
    parser.add_argument('--mode', choices=MODES, default='exact', help=cli_help('mode'))


def add_ground_plane_arguments(parser, height_type=float, height_metavar='M',
                               height_help=cli_help('camera_height_m', ' The scale comes from '
                                                    'a ground plane fitted to the depth (metric '
                                                    'checkpoints only).')) -> None:
    """--camera-height and --ground-max-tilt: the ground_plane scale source (scale.py)."""
    parser.add_argument('--camera-height', type=height_type, default=None,
                        metavar=height_metavar, help=height_help)
    parser.add_argument('--ground-max-tilt', type=float, default=GROUND_MAX_TILT_DEG,
                        metavar='DEG',
                        help=cli_help('ground_max_tilt_deg', ' Default: %(default)g.'))


def scale_anchor_error(args, sparse_option: str, sparse_given: bool,
                       odometry_option: str = '', odometry_given: bool = False) -> str | None:
    """What is wrong with the scale-anchor arguments (None: nothing); see chosen_anchor."""
    return chosen_anchor(args, sparse_option, sparse_given, odometry_option, odometry_given)[1]


def chosen_anchor(args, sparse_option: str, sparse_given: bool, odometry_option: str = '',
                  odometry_given: bool = False) -> tuple:
    """(the scale source the arguments give, 'none' without one; what is wrong with them or
    None): at most one source, and a numeric --camera-height in (0, 1000) m. `sparse_option` /
    `odometry_option` name the command's flags of those sources. Checked before the model
    loads; what the model allows is ScaleAnchor.resolve's."""
    sources = [(source, option) for source, option, on in (
        ('sparse_depth', sparse_option, sparse_given),
        ('ground_plane', '--camera-height', args.camera_height is not None),
        ('odometry', odometry_option, odometry_given)) if on]
    source = sources[0][0] if sources else 'none'
    return source, _anchor_problem(args, [option for _, option in sources])


def _anchor_problem(args, given: list) -> str | None:
    from ..scale import camera_height_problem

    if len(given) > 1:
        return f'give one scale anchor: {" or ".join(given)}, not both.'
    height = args.camera_height
    if height is None or height == 'gt':   # evaluate also takes `gt`
        return None
    if isinstance(height, str):
        try:
            height = float(height)
        except ValueError:
            return f'`--camera-height` must be metres or gt, got {height!r}.'
    problem = camera_height_problem(height)
    return f'`--camera-height`: {problem}.' if problem else None


def add_scale_session_arguments(parser, wait_help: str) -> None:
    """--scale-correction and --wait-for-scale / --no-wait-for-scale (scale.ScaleSession);
    `wait_help` says what waiting means for the command."""
    add_scale_correction_argument(parser)
    parser.add_argument('--wait-for-scale', action=argparse.BooleanOptionalAction, default=True,
                        help=cli_help('wait_for_scale', ' ' + wait_help + ' Default: on.'))


def add_scale_correction_argument(parser) -> None:
    """--scale-correction global|local (scale.ScaleSession)."""
    from ..scale import CORRECTIONS

    parser.add_argument('--scale-correction', choices=CORRECTIONS, default='local',
                        help=cli_help('scale_correction', ' Default: %(default)s.'))


def resolve_anchor(model, args, source: str, camera_height_m: float | None = None):
    """The run's scale.ScaleAnchor from the command's arguments (AnchorError: the message)."""
    from ..scale import GROUND_MAX_TILT_DEG, ScaleAnchor

    return ScaleAnchor.resolve(model, source, camera_height_m=camera_height_m,
                               ground_max_tilt_deg=getattr(args, 'ground_max_tilt',
                                                           GROUND_MAX_TILT_DEG),
                               smoothing=getattr(args, 'scale_smoothing', 0.0))


def scale_session(model, args, source: str, camera_height_m: float | None = None,
                  carry: bool = True):
    """The run's scale.ScaleSession from the command's arguments (AnchorError: the message);
    carry: the scale carries from frame to frame (a sequence)."""
    from ..scale import ScaleSession

    return ScaleSession(resolve_anchor(model, args, source, camera_height_m),
                        getattr(args, 'scale_correction', 'global'),
                        getattr(args, 'wait_for_scale', False), carry=carry)
