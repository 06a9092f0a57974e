"""`gantry predict`: send one request to a served model over gRPC and print the answer.

The library part (`predict`, `model_signature`, `load_inputs`, `resolve_target`) is what
scripts and examples call; the click command is a thin layer over it.

Targets: `host:port` is used as is. An InferenceService name is resolved through the
API: its `status.endpoints.grpc` when that name resolves here (inside a cluster), else
the IP of a Ready Triton pod, one that `<name>-headless` selects (from a laptop, or on
the dev cluster, where Service DNS names exist only inside pods and EndpointSlices stay
empty because the API server rejects loopback endpoint addresses).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from gantry.autoscaler.scrape import ready_targets
from gantry.inferenceservice import names

Array = npt.NDArray[Any]
API_VERSION = "gantry.dev/v1alpha1"


class PredictError(Exception):
    """A request that cannot be made or answered; the message says why."""


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str  # Triton's name, e.g. FP32
    shape: tuple[int, ...]  # -1 for dynamic dimensions (the batch)


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


@dataclass(frozen=True)
class Target:
    """Where to send requests, and what the API knows about the model."""

    url: str
    model: str | None = None
    labels: tuple[str, ...] = field(default_factory=tuple)


def _client(target: str) -> Any:
    from gantry_cli.grpc_client import triton_client

    return triton_client(target)


def _error(err: Exception, target: str, model: str) -> PredictError:
    text = str(err).strip() or type(err).__name__
    return PredictError(f"{target} (model '{model}'): {text}")


def model_signature(target: str, model: str, *, timeout: float = 10.0) -> Signature:
    """Inputs and outputs as Triton reports them (`get_model_metadata`)."""
    from tritonclient.utils import InferenceServerException

    client = _client(target)
    try:
        meta = client.get_model_metadata(model, as_json=True, client_timeout=timeout)
    except InferenceServerException as err:
        raise _error(err, target, model) from err
    finally:
        client.close()

    def tensors(key: str) -> tuple[TensorInfo, ...]:
        return tuple(
            TensorInfo(t["name"], t["datatype"], tuple(int(d) for d in t.get("shape", [])))
            for t in meta.get(key, [])
        )

    return Signature(tensors("inputs"), tensors("outputs"))


def predict(
    target: str,
    model: str,
    inputs: Mapping[str, Array],
    *,
    timeout: float = 10.0,
    outputs: Sequence[str] | None = None,
) -> tuple[dict[str, Array], float]:
    """Run one inference over gRPC: (outputs by name, round-trip latency in ms).

    `outputs` defaults to every output in the model's metadata.
    """
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    if not inputs:
        raise PredictError("no inputs given")
    client = _client(target)
    try:
        if outputs is None:
            meta = client.get_model_metadata(model, as_json=True, client_timeout=timeout)
            outputs = [o["name"] for o in meta.get("outputs", [])]
        request = []
        for name, array in inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            request.append(tensor)
        wanted = [grpcclient.InferRequestedOutput(name) for name in outputs]
        started = time.perf_counter()
        result = client.infer(model, request, outputs=wanted, client_timeout=timeout)
        latency_ms = (time.perf_counter() - started) * 1000.0
    except InferenceServerException as err:
        raise _error(err, target, model) from err
    finally:
        client.close()
    return {name: result.as_numpy(name) for name in outputs}, latency_ms


# --- inputs -----------------------------------------------------------------------------


def _conform(array: Array, info: TensorInfo) -> Array:
    """Cast to the model's dtype and add the batch axis when a single sample is given."""
    from tritonclient.utils import triton_to_np_dtype

    dtype = triton_to_np_dtype(info.datatype)
    if dtype is None:
        raise PredictError(f"input '{info.name}' has unsupported datatype {info.datatype}")
    try:
        array = np.asarray(array, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise PredictError(f"input '{info.name}' cannot be read as {info.datatype}: {err}") from err
    if info.shape and array.ndim == len(info.shape) - 1:
        array = array[np.newaxis, ...]
    if info.shape and array.ndim != len(info.shape):
        raise PredictError(
            f"input '{info.name}' has shape {list(array.shape)}; the model expects "
            f"{list(info.shape)} (-1 = any)"
        )
    for got, want in zip(array.shape, info.shape, strict=True):
        if want != -1 and got != want:
            raise PredictError(
                f"input '{info.name}' has shape {list(array.shape)}; the model expects "
                f"{list(info.shape)} (-1 = any)"
            )
    return array


def load_inputs(path: Path, inputs: Sequence[TensorInfo]) -> dict[str, Array]:
    """Read .npy (one input), .npz or .json (a list for one input, or {name: list})."""
    if not inputs:
        raise PredictError("the model declares no inputs")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            raw: Any = np.load(path, allow_pickle=False)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                raw = {key: archive[key] for key in archive.files}
        elif suffix == ".json":
            raw = json.loads(path.read_text(encoding="utf-8"))
        else:
            raise PredictError(f"{path}: use a .npy, .npz or .json input file")
    except (OSError, ValueError) as err:
        raise PredictError(f"cannot read {path}: {err}") from err
    by_name = {t.name: t for t in inputs}
    if isinstance(raw, dict):
        unknown = sorted(set(raw) - set(by_name))
        if unknown:
            raise PredictError(
                f"{path} names unknown inputs {unknown}; the model's inputs: {sorted(by_name)}"
            )
        missing = sorted(set(by_name) - set(raw))
        if missing:
            raise PredictError(f"{path} lacks inputs {missing}")
        return {name: _conform(np.asarray(value), by_name[name]) for name, value in raw.items()}
    if len(inputs) != 1:
        raise PredictError(
            f"the model has {len(inputs)} inputs ({sorted(by_name)}): give them by name "
            "in a .json object or an .npz file"
        )
    return {inputs[0].name: _conform(np.asarray(raw), inputs[0])}


# --- outputs ----------------------------------------------------------------------------


def _probabilities(row: Array) -> Array:
    values = row.astype(np.float64)
    if values.min() >= 0 and abs(values.sum() - 1.0) < 1e-3:
        return values
    shifted = np.exp(values - values.max())
    result: Array = shifted / shifted.sum()
    return result


def format_outputs(
    outputs: Mapping[str, Array], labels: Sequence[str] = (), *, top_k: int = 3
) -> list[str]:
    """Human-readable lines: top-k classes for classifier-shaped outputs, else values."""
    lines: list[str] = []
    for name, array in outputs.items():
        classifier = (
            array.ndim == 2 and array.shape[1] > 1 and np.issubdtype(array.dtype, np.floating)
        )
        if not classifier:
            lines.append(f"{name} {list(array.shape)}: {np.array2string(array, threshold=50)}")
            continue
        lines.append(f"{name} {list(array.shape)}: top {min(top_k, array.shape[1])} per row")
        for index, row in enumerate(array):
            probs = _probabilities(row)
            best = np.argsort(-probs)[:top_k]
            ranked = ", ".join(
                f"{labels[i] if i < len(labels) else i} ({probs[i]:.3f})" for i in best
            )
            lines.append(f"  [{index}] {ranked}")
    return lines


# --- target resolution ------------------------------------------------------------------


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        return False
    return True


def ready_pod_address(pods: Sequence[Mapping[str, Any]]) -> str | None:
    """host:port (gRPC) of the first Ready Triton pod by name, or None."""
    targets = ready_targets(pods)
    return f"{targets[0].ip}:{names.GRPC_PORT}" if targets else None


def resolve_target(
    client: Any,
    service: str,
    namespace: str,
    *,
    resolves: Callable[[str], bool] = _resolves,
) -> Target:
    """Find where an InferenceService answers gRPC (see the module docstring)."""
    isvc = client.get(API_VERSION, "inferenceservices", service, namespace)
    if isvc is None:
        raise PredictError(f"InferenceService '{service}' not found in namespace '{namespace}'")
    status = isvc.get("status") or {}
    signature = (status.get("model") or {}).get("signature") or {}
    labels = tuple(str(label) for label in signature.get("labels") or [])
    endpoint = (status.get("endpoints") or {}).get("grpc")
    if endpoint and resolves(str(endpoint).rsplit(":", 1)[0]):
        return Target(str(endpoint), service, labels)
    pods = client.list("v1", "pods", namespace, label_selector=names.selector_string(service))
    address = ready_pod_address(pods)
    if address is None:
        phase = status.get("phase") or "unknown"
        detail = f": {status['message']}" if status.get("message") else ""
        raise PredictError(
            f"InferenceService '{service}' has no ready Triton pod (phase {phase}{detail})"
        )
    return Target(address, service, labels)


def _kube_client(kubeconfig: Path | None) -> Any:
    from gantry.k8s.client import KubeClient

    if kubeconfig is None:
        return KubeClient()
    from kubernetes import config

    api = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return KubeClient(api)


def _only_model(target: str, timeout: float) -> str:
    from tritonclient.utils import InferenceServerException

    client = _client(target)
    try:
        index = client.get_model_repository_index(as_json=True, client_timeout=timeout)
    except InferenceServerException as err:
        raise PredictError(f"{target}: {err}") from err
    finally:
        client.close()
    models = sorted({str(m["name"]) for m in index.get("models", [])})
    if len(models) != 1:
        raise PredictError(f"{target} serves {models or 'no models'}: choose one with --model")
    return models[0]


def find_target(
    service_or_target: str,
    namespace: str,
    kubeconfig: Path | None,
    model: str | None,
    timeout: float,
) -> Target:
    """A `host:port` as is, or an InferenceService name resolved through the API."""
    if ":" in service_or_target:
        return Target(service_or_target, model or _only_model(service_or_target, timeout))
    try:
        client = _kube_client(kubeconfig)
    except Exception as err:  # kubeconfig problems come in many exception types
        raise PredictError(f"cannot reach the Kubernetes API: {err}") from err
    try:
        target = resolve_target(client, service_or_target, namespace)
    except PredictError:
        raise
    except Exception as err:
        raise PredictError(f"cannot look up '{service_or_target}': {err}") from err
    finally:
        client.close()
    return Target(target.url, model or target.model, target.labels)


@click.command("predict")
@click.argument("service_or_target")
@click.option(
    "--input",
    "-i",
    "input_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Input file: .npy (one input), .npz or .json ({name: values}).",
)
@click.option("--namespace", "-n", default="default", show_default=True)
@click.option(
    "--kubeconfig",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Kubeconfig (default: $KUBECONFIG or in-cluster).",
)
@click.option("--model", default=None, help="Triton model name (default: the service's).")
@click.option("--top-k", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 600))
def predict_command(
    service_or_target: str,
    input_path: Path,
    namespace: str,
    kubeconfig: Path | None,
    model: str | None,
    top_k: int,
    timeout: float,
) -> None:
    """Send INPUT to SERVICE_OR_TARGET (an InferenceService name or host:port) over gRPC."""
    try:
        target = find_target(service_or_target, namespace, kubeconfig, model, timeout)
        assert target.model is not None
        signature = model_signature(target.url, target.model, timeout=timeout)
        inputs = load_inputs(input_path, signature.inputs)
        outputs, latency_ms = predict(
            target.url,
            target.model,
            inputs,
            timeout=timeout,
            outputs=[o.name for o in signature.outputs],
        )
    except PredictError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"model {target.model} at {target.url}")
    for line in format_outputs(outputs, target.labels, top_k=top_k):
        click.echo(line)
    click.echo(f"latency: {latency_ms:.2f} ms (client round trip)")
