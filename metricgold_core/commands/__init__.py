"""Subcommands of the `metricgold` CLI."""
