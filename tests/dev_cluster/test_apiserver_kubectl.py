"""kubectl 1.33 against the emulated API, as a user would drive it."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator

import pytest
import yaml
from test_apiserver_helpers import (
    KUBECTL,
    TRAININGJOB_CRD_YAML,
    Kubectl,
    kubectl_or_skip,
    trainingjob,
)

from dev_cluster.apiserver.testing import start_in_thread

pytestmark = pytest.mark.slow

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: main
          image: web:1
          env: [{name: A, value: "1"}]
          ports: [{containerPort: 8000}]
"""


@pytest.fixture(scope="module")
def kubectl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    kubectl_or_skip()
    with start_in_thread() as srv:
        yield Kubectl(srv.url, tmp_path_factory.mktemp("kubectl"))


def test_crd_and_custom_resources(kubectl: Kubectl) -> None:
    out = kubectl.run("apply", "-f", "-", stdin=TRAININGJOB_CRD_YAML).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/trainingjobs.gantry.dev created" in out
    assert "trainingjobs.gantry.dev" in kubectl.run("get", "crd").stdout
    out = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(trainingjob("a"))).stdout
    assert out.strip() == "trainingjob.gantry.dev/a created"
    out = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(trainingjob("a", 3))).stdout
    assert out.strip() == "trainingjob.gantry.dev/a configured"
    table = kubectl.run("get", "tj").stdout.split()
    assert table[:3] == ["NAME", "WORKERS", "PHASE"] and table[3:5] == ["a", "3"]
    got = yaml.safe_load(kubectl.run("get", "trainingjob", "a", "-o", "yaml").stdout)
    assert got["spec"]["workers"] == 3 and got["spec"]["epochs"] == 1
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]


def test_apply_rejects_invalid_objects_without_validate_false(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=TRAININGJOB_CRD_YAML)
    bad = kubectl.run("apply", "-f", "-", stdin=yaml.safe_dump(trainingjob("bad", -1)), check=False)
    assert bad.returncode != 0
    assert (
        'The TrainingJob "bad" is invalid: spec.workers: Invalid value: -1: spec.workers '
        "in body should be greater than or equal to 1"
    ) in bad.stderr
    unknown = kubectl.run(
        "apply", "-f", "-", check=False, stdin=yaml.safe_dump(trainingjob("unk", 1, bogus=True))
    )
    assert 'unknown field "spec.bogus"' in unknown.stderr


def test_server_side_apply_scale_patch_delete(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=TRAININGJOB_CRD_YAML)
    out = kubectl.run(
        "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(trainingjob("ssa", 2))
    ).stdout
    assert out.strip() == "trainingjob.gantry.dev/ssa serverside-applied"
    kubectl.run("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump(trainingjob("ssa", 5)))
    assert kubectl.run("get", "tj", "ssa", "-o", "jsonpath={.spec.workers}").stdout == "5"
    assert "scaled" in kubectl.run("scale", "tj", "ssa", "--replicas=6").stdout
    kubectl.run("patch", "tj", "ssa", "--type=merge", "-p", '{"spec":{"epochs":3}}')
    kubectl.run(
        "patch",
        "tj",
        "ssa",
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/epochs","value":4}]',
    )
    spec = json.loads(kubectl.run("get", "tj", "ssa", "-o", "json").stdout)["spec"]
    assert (spec["workers"], spec["epochs"]) == (6, 4)
    assert kubectl.run("delete", "tj", "ssa").stdout.strip() == (
        'trainingjob.gantry.dev "ssa" deleted'
    )
    assert kubectl.run("get", "tj", "ssa", check=False).returncode != 0


def test_builtin_kinds(kubectl: Kubectl) -> None:
    assert "created" in kubectl.run("apply", "-f", "-", stdin=DEPLOYMENT).stdout
    changed = DEPLOYMENT.replace(
        'env: [{name: A, value: "1"}]', 'env: [{name: A, value: "1"}, {name: B, value: "2"}]'
    )
    assert "configured" in kubectl.run("apply", "-f", "-", stdin=changed).stdout
    kubectl.run(
        "patch",
        "deployment",
        "web",
        "--type=strategic",
        "-p",
        '{"spec":{"template":{"spec":{"containers":[{"name":"main","image":"web:2"}]}}}}',
    )
    main = json.loads(kubectl.run("get", "deploy", "web", "-o", "json").stdout)["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert main["image"] == "web:2" and [e["name"] for e in main["env"]] == ["A", "B"]
    kubectl.run("scale", "deployment", "web", "--replicas=3")
    assert kubectl.run("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    kubectl.run("create", "configmap", "cfg", "--from-literal=key=value")
    assert kubectl.run("get", "cm", "cfg", "-o", "jsonpath={.data.key}").stdout == "value"
    kubectl.run("create", "secret", "generic", "sec", "--from-literal=k=v")
    kubectl.run("create", "namespace", "extra")
    assert "extra" in kubectl.run("get", "ns").stdout
    ssa = kubectl.run("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=DEPLOYMENT)
    assert "serverside-applied" in ssa.stdout


def test_get_watch_streams_changes(kubectl: Kubectl) -> None:
    kubectl.run("create", "configmap", "watched")
    proc = subprocess.Popen(
        [
            str(KUBECTL),
            "--cache-dir",
            str(kubectl.cache),
            "get",
            "cm",
            "watched",
            "-w",
            "-o",
            'jsonpath={.data.k}{"\\n"}',
            "--request-timeout=20s",
        ],
        env=kubectl.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "\n"  # the initial object, no data yet
        done = threading.Event()

        def patch() -> None:
            kubectl.run("patch", "cm", "watched", "-p", '{"data":{"k":"v1"}}')
            done.set()

        threading.Thread(target=patch).start()
        assert proc.stdout.readline() == "v1\n"
        assert done.wait(30)
    finally:
        proc.terminate()
        proc.wait(10)


def test_explain_custom_resource(kubectl: Kubectl) -> None:
    kubectl.run("apply", "-f", "-", stdin=TRAININGJOB_CRD_YAML)
    out = kubectl.run("explain", "trainingjobs.spec.workers").stdout
    assert "FIELD: workers <integer>" in out
