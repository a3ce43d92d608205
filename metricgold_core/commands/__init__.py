"""`metricgold` subcommands: one module each, with add_parser(sub, name) and run(args)."""


def add_mode_argument(parser) -> None:
    """--mode, the same for every command that runs the model (pipeline.MODES)."""
    parser.add_argument('--mode', choices=('exact', 'fast'), default='exact',
                        help="exact (diffusers' maths) or fast (the checkpoint's light decoder "
                        'and pooled VAE attention: approximate)')
