"""The `gantry` command: one entry point for users and developers.

Every sub-command is imported here, unconditionally: a sub-command that cannot be imported
is an ImportError when `gantry` starts, never a command that silently disappears. The
`cli` extra (`pip install 'gantry[cli]'`) holds everything they import.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import yaml
from pydantic import ValidationError

from dev_cluster.cli import dev
from gantry import __version__
from gantry_cli.demo import demo_command
from gantry_cli.loadgen.cli import load
from gantry_cli.predict import predict_command


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


main.add_command(dev, "dev")
main.add_command(predict_command, "predict")
main.add_command(demo_command, "demo")
bench.add_command(load, "load")

if __name__ == "__main__":
    main()
