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
                        help=f'{", ".join(DTYPES)} (auto: float16 on CUDA; bfloat16 on a CPU with '
                        'AVX512-BF16 or AMX; else float32)')
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


def scale_anchor_error(args, sparse_option: str, sparse_given: bool) -> str | None:
    """What is wrong with the scale-anchor arguments (None: nothing): at most one source, and a
    numeric --camera-height in (0, 1000) m. `sparse_option` names the command's sparse flag."""
    if sparse_given and args.camera_height is not None:
        return f'give one scale anchor: {sparse_option} or --camera-height, not both.'
    height = args.camera_height
    if isinstance(height, str):   # evaluate also takes `gt`
        if height == 'gt':
            return None
        try:
            height = float(height)
        except ValueError:
            return f'`--camera-height` must be metres or gt, got {height!r}.'
    if height is not None and not 0.0 < height < 1000.0:
        return f'`--camera-height` must be in (0, 1000) m, got {height:g}.'
    return None


def ground_plane_anchor(args, camera_height_m: float) -> dict:
    """estimate_metric_depth keyword arguments of the ground_plane scale source."""
    return {'camera_height_m': camera_height_m, 'ground_max_tilt_deg': args.ground_max_tilt}
