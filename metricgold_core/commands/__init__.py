"""`metricgold` subcommands: one module each, with add_parser(sub, name) and run(args)."""
from ..run_options import DTYPES, MODES


def add_model_arguments(parser, sampling: bool = True,
                        checkpoint_help: str = 'checkpoint directory (default: the packaged '
                        'default model)') -> None:
    """The options of a model run, the same for every command that runs one: --checkpoint,
    --steps, --device, --dtype, --mode and, with `sampling`, --processing-resolution, --seed
    (metric_depth.load_estimator / estimate_metric_depth take them as they are)."""
    parser.add_argument('--checkpoint', default=None, help=checkpoint_help)
    parser.add_argument('--steps', type=int, choices=(1, 2), default=1, help='DDIM steps')
    if sampling:
        parser.add_argument('--processing-resolution', type=int, default=None,
                            help="long side the network sees (0 = native; default: the "
                            "checkpoint's)")
        parser.add_argument('--seed', type=int, default=0,
                            help='noise seed (deterministic output)')
    parser.add_argument('--device', default='auto', help='auto, cpu, cuda or cuda:N')
    parser.add_argument('--dtype', default='auto',
                        help=f'{", ".join(DTYPES)} (auto: float16 on CUDA, float32 on a CPU; '
                        'bfloat16 is faster on AVX512-BF16 / AMX CPUs and less exact)')
    parser.add_argument('--mode', choices=MODES, default='exact',
                        help="exact (diffusers' maths) or fast (the checkpoint's light decoder "
                        'and pooled VAE attention: approximate)')


def add_ground_plane_arguments(parser, height_type=float, height_metavar='M',
                               height_help='height of the camera over a visible floor / road '
                               '(m): the scale comes from a fitted ground plane (metric '
                               'checkpoints only)') -> None:
    """--camera-height and --ground-max-tilt: the ground_plane scale source (scale.py)."""
    parser.add_argument('--camera-height', type=height_type, default=None,
                        metavar=height_metavar, help=height_help)
    parser.add_argument('--ground-max-tilt', type=float, default=15.0, metavar='DEG',
                        help='--camera-height: largest angle between the floor normal and the '
                        "camera's down direction (default 15; set it just above the mount's "
                        'pitch)')


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


def resolve_anchor(model, args, source: str, camera_height_m: float | None = None):
    """The run's scale.ScaleAnchor from the command's arguments (AnchorError: the message)."""
    from ..scale import ScaleAnchor

    return ScaleAnchor.resolve(model, source, camera_height_m=camera_height_m,
                               ground_max_tilt_deg=getattr(args, 'ground_max_tilt', 15.0),
                               smoothing=getattr(args, 'scale_smoothing', 0.0))
