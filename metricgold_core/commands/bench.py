"""`metricgold bench` (filled in below)."""


def add_parser(sub, name):
    p = sub.add_parser(name, help='time our pipeline against diffusers on the same weights')
    p.set_defaults(func=lambda args: 0)
