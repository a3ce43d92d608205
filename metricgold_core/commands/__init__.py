"""`metricgold` subcommands: one module each, with add_parser(sub, name) and run(args)."""


def add_mode_argument(parser) -> None:
    """--mode, the same for every command that runs the model (pipeline.MODES)."""
    parser.add_argument('--mode', choices=('exact', 'fast'), default='exact',
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


def ground_plane_anchor(args, camera_height_m: float) -> dict:
    """estimate_metric_depth keyword arguments of the ground_plane scale source."""
    return {'camera_height_m': camera_height_m, 'ground_max_tilt_deg': args.ground_max_tilt}
