"""Benchmarks: scripts run as `python bench/<name>.py`. A package only so that the import
contracts (`lint-imports`) can check that nothing under operator/ imports it."""
