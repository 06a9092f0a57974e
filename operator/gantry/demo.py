"""`gantry demo` (`make demo`): the whole Gantry story on the embedded dev cluster.

Each step runs only when the part it needs is installed; a missing part is named, so a
newcomer sees what exists and what does not yet.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import click

from gantry.crdgen import all_crds
from gantry.validation import validate_manifest

PARTS = {
    "dev_cluster.cluster": "the embedded dev cluster (API server + node agent)",
    "gantry.trainingjob.handlers": "the TrainingJob reconciler",
    "gantry.inferenceservice.handlers": "the InferenceService reconciler",
    "gantry.autoscaler.handlers": "the latency/throughput autoscaler",
}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _say(step: str) -> None:
    click.secho(f"\n==> {step}", bold=True)


@click.command("demo")
def demo_command() -> None:
    """Walk the Gantry story on the embedded dev cluster, as far as it exists."""
    _say("Gantry's API: two custom resources, generated from typed models")
    for name, crd in all_crds().items():
        names = crd["spec"]["names"]
        short = names["shortNames"][0]
        click.echo(f"  {names['kind']:<17} kubectl get {names['plural']} (or {short})  [{name}]")
    from gantry.api.common import API_VERSION

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

    missing = [desc for module, desc in PARTS.items() if not _present(module)]
    if missing:
        _say("Not in this build yet")
        for desc in missing:
            click.echo(f"  - {desc}")
    if not (_present("dev_cluster.cluster") and _present("gantry.demo_story")):
        return
    story = importlib.import_module("gantry.demo_story")
    story.run_story()
