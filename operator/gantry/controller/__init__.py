"""The Gantry operator process: kopf wiring, settings and operator metrics."""
