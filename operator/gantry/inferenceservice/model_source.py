"""Model resolution: which exported model an InferenceService serves right now.

A `trainingJobRef` resolves to the job's `status.model` once it Succeeded (its URI and
the sha256 of model.onnx, so a re-trained model is noticed); while the job runs the
service waits, and a failed job fails the service with the job's own message. A
`storageUri` resolves to itself; its content is only read by the optimize Job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gantry.api.common import StorageLocation, parse_storage_uri
from gantry.api.inferenceservice import InferenceServiceSpec


@dataclass(frozen=True)
class ResolvedModel:
    """The model to optimize: its URI and, when known, the sha256 of model.onnx."""

    uri: str
    location: StorageLocation
    digest: str | None = None
    signature: Mapping[str, Any] | None = None
    training_job: str | None = None


@dataclass(frozen=True)
class Unresolved:
    """No model yet (`waiting`: it may still come) or never (`waiting` False: failed)."""

    reason: str
    message: str
    waiting: bool


def resolve_model(
    spec: InferenceServiceSpec,
    namespace: str,
    training_job: Mapping[str, Any] | None,
) -> ResolvedModel | Unresolved:
    """Resolve the spec's model source; `training_job` is the observed TrainingJob or None."""
    source = spec.model
    if source.storage_uri is not None:
        return _from_uri(source.storage_uri, None, None, None)
    assert source.training_job_ref is not None  # the model enforces exactly one source
    job_name = source.training_job_ref.name
    if training_job is None:
        return Unresolved(
            "TrainingJobNotFound",
            f"TrainingJob '{job_name}' does not exist in namespace '{namespace}'; "
            "waiting for it to be created",
            waiting=True,
        )
    status = training_job.get("status") or {}
    phase = status.get("phase")
    if phase == "Failed":
        detail = status.get("message") or "no message"
        return Unresolved(
            "TrainingJobFailed", f"TrainingJob '{job_name}' failed: {detail}", waiting=False
        )
    if phase != "Succeeded":
        return Unresolved(
            "TrainingJobRunning",
            f"waiting for TrainingJob '{job_name}' to succeed (phase {phase or 'Pending'})",
            waiting=True,
        )
    model = status.get("model") or {}
    uri = model.get("uri")
    if not uri:
        return Unresolved(
            "NoModelExported",
            f"TrainingJob '{job_name}' succeeded but reported no exported model "
            "(set spec.output.storageUri on the TrainingJob)",
            waiting=False,
        )
    digest = (model.get("sha256") or {}).get("model.onnx")
    return _from_uri(str(uri), digest, model.get("signature"), job_name)


def _from_uri(
    uri: str,
    digest: str | None,
    signature: Mapping[str, Any] | None,
    training_job: str | None,
) -> ResolvedModel | Unresolved:
    try:
        location = parse_storage_uri(uri)
    except ValueError as err:
        return Unresolved("InvalidStorageUri", str(err), waiting=False)
    return ResolvedModel(
        uri=location.uri,
        location=location,
        digest=digest,
        signature=signature,
        training_job=training_job,
    )
