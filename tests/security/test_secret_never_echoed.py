"""A secret referenced as `$(VAR)` in a TrainingJob's args and env is never expanded, so
its value reaches no status, condition, Event, container output or operator log — on the
dev cluster, with the chart-installed operator and a node that expands `$(VAR)` exactly as
the kubelet does."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import api_client_for, wait_for

GROUP, VERSION, NS = "gantry.dev", "v1alpha1", "attack"
PLANTED = f"TOPSECRET-{uuid.uuid4().hex}"
REFERENCE = "$(AWS_SECRET_ACCESS_KEY)"
PRINT_AND_FAIL = (
    "import os, sys; print('args:', sys.argv[1:]); print('echo:', os.environ['ECHO']); sys.exit(3)"
)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    from dev_cluster.cluster import DevCluster, operator_available

    if not operator_available():
        pytest.fail("the operator extra and helm are needed: run `make tools`")
    with DevCluster(tmp_path / "cluster", operator=True, backoff_base=1.0) as dev:
        yield dev


@pytest.mark.slow
def test_a_secret_named_in_args_and_env_is_never_expanded_anywhere(cluster: Any) -> None:
    from kubernetes import client

    api = api_client_for(cluster.kubeconfig)
    core, objects = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespace({"metadata": {"name": NS}})
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(NS).items
        ),
        60,
        "the namespace's default ServiceAccount",
    )
    core.create_namespaced_secret(
        NS, {"metadata": {"name": "creds"}, "stringData": {"AWS_SECRET_ACCESS_KEY": PLANTED}}
    )
    job = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": "leak"},
        "spec": {
            "command": ["python", "-c", PRINT_AND_FAIL],
            "args": [REFERENCE],
            "env": [
                {
                    "name": "AWS_SECRET_ACCESS_KEY",
                    "valueFrom": {
                        "secretKeyRef": {"name": "creds", "key": "AWS_SECRET_ACCESS_KEY"}
                    },
                },
                {"name": "ECHO", "value": REFERENCE},
            ],
            "backoffLimit": 0,
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        },
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, NS, "trainingjobs", job)

    def failed() -> dict[str, Any] | None:
        obj = objects.get_namespaced_custom_object(GROUP, VERSION, NS, "trainingjobs", "leak")
        status: dict[str, Any] = obj.get("status") or {}
        return status if status.get("phase") == "Failed" else None

    status = wait_for(failed, 180, "the TrainingJob to fail with its log lines")
    message = json.dumps(status)
    # the worker ran and printed what it was given: the reference, literally
    assert "args:" in message and REFERENCE in message, message

    # the node keeps every container's output as files (the pods are gone with the Job)
    logs = "".join(
        path.read_text(errors="replace")
        for path in sorted(Path(cluster.state_dir).glob(f"logs/{NS}/leak-*/worker/*.log"))
    )
    assert f"echo: {REFERENCE}" in logs, logs
    events = json.dumps([e.to_dict() for e in core.list_namespaced_event(NS).items], default=str)
    places = {
        "status": message,
        "container output": logs,
        "events": events,
        "operator log": cluster.operator_logs(),
    }
    assert [where for where, text in places.items() if PLANTED in text] == []
