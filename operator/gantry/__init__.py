"""Gantry's operator: API types, configuration, Kubernetes kit, controller wiring,
reconcilers and autoscaler. The `gantry` command lives in `gantry_cli`."""

__version__ = "0.1.0"
