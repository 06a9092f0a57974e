"""Gantry's controller package: API types, reconcilers, autoscaler and the CLI."""

__version__ = "0.1.0"
