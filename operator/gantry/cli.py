"""The `gantry` command: one entry point for users and developers.

Sub-commands live next to the code they drive and are mounted here; a sub-command whose
module is not part of this installation (e.g. the dev cluster in the operator image) is
left out, while a module that exists but fails to import is an error, never hidden.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import click
import yaml
from pydantic import ValidationError

from gantry import __version__

# (group or None, command name, module, attribute)
_MOUNTS: tuple[tuple[str | None, str, str, str], ...] = (
    (None, "dev", "dev_cluster.cli", "dev"),
    (None, "predict", "gantry.predict", "predict_command"),
    ("bench", "load", "gantry.loadgen.cli", "load"),
    (None, "demo", "gantry.demo", "demo_command"),
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gantry")
def main() -> None:
    """Gantry: train PyTorch models and serve them on Triton, autoscaled by latency."""


@main.group()
def bench() -> None:
    """Load and benchmark tools."""


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default="crds")
def crds(directory: Path) -> None:
    """Render the CRD manifests from the API models into DIRECTORY."""
    from gantry.crdgen import write_all

    for path in write_all(directory):
        click.echo(f"wrote {path}")


@main.command()
@click.option(
    "-f", "--filename", "path", required=True, type=click.Path(exists=True, dir_okay=False)
)
def validate(path: str) -> None:
    """Check TrainingJob/InferenceService manifests in a file against the API, offline."""
    from gantry.validation import validate_manifest

    with open(path, encoding="utf-8") as stream:
        try:
            documents = [d for d in yaml.safe_load_all(stream) if d]
        except yaml.YAMLError as err:
            raise click.ClickException(f"{path} is not valid YAML: {err}") from err
    failures = 0
    for doc in documents:
        name = f"{doc.get('kind', '?')}/{(doc.get('metadata') or {}).get('name', '?')}"
        try:
            validate_manifest(doc)
        except (ValidationError, ValueError) as err:
            failures += 1
            click.echo(f"{name}: invalid", err=True)
            for line in str(err).splitlines():
                click.echo(f"  {line}", err=True)
        else:
            click.echo(f"{name}: valid")
    if failures:
        sys.exit(1)


def _mount() -> None:
    for group_name, name, module_name, attribute in _MOUNTS:
        if importlib.util.find_spec(module_name.rpartition(".")[0] or module_name) is None:
            continue
        if importlib.util.find_spec(module_name) is None:
            continue
        command = getattr(importlib.import_module(module_name), attribute)
        group = bench if group_name == "bench" else main
        group.add_command(command, name)


_mount()

if __name__ == "__main__":
    main()
