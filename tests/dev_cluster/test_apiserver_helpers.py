"""Shared pieces of the API server tests: a Gantry-like CRD, clients, kubectl runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from dev_cluster.apiserver import write_kubeconfig
from dev_cluster.apiserver.testing import ThreadedAPIServer, start_in_thread

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = ROOT / ".tools" / "bin" / "kubectl"

GROUP = "gantry.dev"
PLURAL = "trainingjobs"

TRAININGJOB_CRD_YAML = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: trainingjobs.gantry.dev
spec:
  group: gantry.dev
  scope: Namespaced
  names:
    plural: trainingjobs
    singular: trainingjob
    kind: TrainingJob
    listKind: TrainingJobList
    shortNames: [tj]
    categories: [gantry]
  versions:
    - name: v1alpha1
      served: true
      storage: true
      additionalPrinterColumns:
        - {name: Workers, type: integer, jsonPath: .spec.workers}
        - {name: Phase, type: string, jsonPath: .status.phase}
      subresources:
        status: {}
        scale:
          specReplicasPath: .spec.workers
          statusReplicasPath: .status.workers
          labelSelectorPath: .status.selector
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [image, workers]
              x-kubernetes-validations:
                - rule: "self.backend == oldSelf.backend"
                  message: backend is immutable
                  fieldPath: .backend
                - rule: "self.workers <= self.maxWorkers"
                  messageExpression: "'workers (' + string(self.workers) + ') exceed maxWorkers'"
              properties:
                image: {type: string, minLength: 1}
                workers: {type: integer, format: int32, minimum: 1, maximum: 64}
                maxWorkers: {type: integer, default: 8, exclusiveMinimum: true, minimum: 0}
                epochs: {type: integer, default: 1, minimum: 1}
                backend: {type: string, enum: [gloo, nccl], default: gloo}
                learningRate: {type: number, exclusiveMaximum: true, maximum: 1}
                name: {type: string, pattern: '^[a-z]+$', maxLength: 10}
                args: {type: array, items: {type: string}, maxItems: 3}
                resources:
                  type: object
                  properties:
                    cpu: {x-kubernetes-int-or-string: true}
                    memory: {type: string, default: 1Gi}
                template:
                  type: object
                  x-kubernetes-preserve-unknown-fields: true
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
              properties:
                phase: {type: string}
                workers: {type: integer}
                selector: {type: string}
                observedGeneration: {type: integer}
                conditions:
                  type: array
                  items:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
"""


def trainingjob_crd() -> dict[str, Any]:
    return dict(yaml.safe_load(TRAININGJOB_CRD_YAML))


def trainingjob(name: str, workers: int = 2, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"image": "trainer:1", "workers": workers, **spec},
    }


def api_client(url: str) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = url
    cfg.api_key = {"authorization": "Bearer ignored"}
    return client.ApiClient(cfg)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until ``predicate`` returns something truthy (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedAPIServer]:
    with start_in_thread(bookmark_interval=0.5) as srv:
        yield srv


@pytest.fixture(scope="module")
def api(server: ThreadedAPIServer) -> Iterator[client.ApiClient]:
    c = api_client(server.url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def crd(api: client.ApiClient) -> dict[str, Any]:
    ext = client.ApiextensionsV1Api(api)
    created = ext.create_custom_resource_definition(trainingjob_crd())
    return dict(api.sanitize_for_serialization(created))


class Kubectl:
    """Runs the real kubectl against one server with a private discovery cache."""

    def __init__(self, url: str, home: Path) -> None:
        self.kubeconfig = write_kubeconfig(home / "kubeconfig", url)
        self.cache = home / "cache"
        self.env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOME=str(home))

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(KUBECTL), "--cache-dir", str(self.cache), *args],
            input=stdin,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc


def kubectl_or_skip() -> None:
    if not KUBECTL.exists() or shutil.which(str(KUBECTL)) is None:
        pytest.skip(f"kubectl is not installed at {KUBECTL} (make tools)")


def http(
    server_url: str,
    method: str,
    path: str,
    body: Any = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One raw request; returns (status code, decoded JSON or text)."""
    import json
    import urllib.error
    import urllib.request

    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request(server_url + path, data=data, method=method)
    req.add_header("Content-Type", content_type)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            code, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        code, raw = err.code, err.read()
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, raw.decode()


def watch_events(server_url: str, path: str, count: int, timeout: float = 10) -> list[Any]:
    """Read ``count`` events from a watch (``path`` includes the query string)."""
    import json
    import urllib.request

    out: list[Any] = []
    with urllib.request.urlopen(server_url + path, timeout=timeout) as resp:
        for line in resp:
            if line.strip():
                out.append(json.loads(line))
            if len(out) >= count:
                break
    return out
