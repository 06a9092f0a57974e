"""`python -m gantry_cli`: the `gantry` command."""

from gantry_cli.main import main

main()
