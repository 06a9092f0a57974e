"""`gantry demo` (`make demo`): the whole Gantry story on the embedded dev cluster.

The dev cluster runs its pods (training workers, the optimize Job, Triton, the operator)
with this environment's Python, so the demo needs every dependency group: `make demo`
installs `.[dev]`.
"""

from __future__ import annotations

from typing import Any

import click

from gantry.api.common import API_VERSION
from gantry.crdgen import all_crds
from gantry.validation import validate_manifest
from gantry_cli.demo_story import run_story


def _say(step: str) -> None:
    click.secho(f"\n==> {step}", bold=True)


@click.command("demo")
def demo_command() -> None:
    """Train, serve, predict, load and autoscale on the embedded dev cluster."""
    _say("Gantry's API: two custom resources, generated from typed models")
    for name, crd in all_crds().items():
        names = crd["spec"]["names"]
        short = names["shortNames"][0]
        click.echo(f"  {names['kind']:<17} kubectl get {names['plural']} (or {short})  [{name}]")

    _say("Validating a TrainingJob and an InferenceService offline (gantry validate)")
    job: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "TrainingJob",
        "metadata": {"name": "digits-cnn"},
        "spec": {"command": ["python", "-m", "training_jobs.examples.digits"], "workers": 2},
    }
    validate_manifest(job)
    click.echo("  TrainingJob/digits-cnn: valid")
    bad = {**job, "spec": {**job["spec"], "env": [{"name": "RANK", "value": "3"}]}}
    try:
        validate_manifest(bad)
    except ValueError as err:
        first = str(err).splitlines()[1:3]
        click.echo(
            "  a job that sets RANK itself is rejected: " + " ".join(s.strip() for s in first)
        )

    run_story()
