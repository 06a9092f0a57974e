"""The chart proven by running it: `helm upgrade --install` on the dev cluster (what
`DevCluster(operator=True)` does) runs the operator from the chart's own Deployment
(command, args, env, the mounted ConfigMap), as the chart's ServiceAccount under the
chart's RBAC, in-cluster over HTTPS; the operator reconciles a TrainingJob.

One dev cluster per mode: namespaced (one replica, Roles in the watched namespace) and
clusterwide-ha (two replicas meeting in a ClusterKopfPeering). The peering CRDs are
applied with Gantry's CRDs when the cluster starts (the dev values leave CRDs out of the
chart), so the chart's post-install hook finds its kind served.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from chart_testkit import CHART, ROOT, documents, helm_binary

from tests.conftest import wait_for

pytestmark = pytest.mark.slow

T = TypeVar("T")
TRAINER_IMAGE = "ghcr.io/gantry-dev/gantry-trainer:chart-test"
KUBECTL = ROOT / ".tools" / "bin" / "kubectl"
NS = "default"


def _require_tools() -> None:
    """helm and kubectl come with `make tools`, which `make test` runs: fail without them."""
    if helm_binary() is None or not KUBECTL.is_file():
        pytest.fail("helm/kubectl are not installed under .tools/bin: run `make tools`")


MODES: dict[str, dict[str, Any]] = {
    # One replica watching a namespace list: per-namespace Roles, kopf in namespaced mode.
    "namespaced": {"clusterWide": False, "config": {"watchNamespaces": [NS]}},
    # Two replicas watching the whole cluster: kopf peering through a ClusterKopfPeering.
    "clusterwide-ha": {"clusterWide": True, "replicaCount": 2},
}


def crd_dir(directory: Path) -> Path:
    """Gantry's CRDs and kopf's peering CRDs, for the dev cluster to establish at start."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in [
        *(ROOT / "crds").glob("*.yaml"),
        *(CHART / "files" / "peering-crds").glob("*.yaml"),
    ]:
        shutil.copy(path, directory / path.name)
    return directory


@dataclass
class Installed:
    cluster: Any  # a running DevCluster
    mode: str

    def wait(self, probe: Callable[[], T | None], timeout: float, what: str) -> T:
        """`wait_for`, failing with the operator's log tail."""
        return wait_for(probe, timeout, what, on_timeout=self.operator_view)

    def operator_view(self) -> str:
        return f"operator log:\n{self.cluster.operator_logs()}"


@pytest.fixture(scope="module", params=sorted(MODES))
def installed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Installed]:
    """A dev cluster with the chart installed in one mode (one cluster per mode)."""
    _require_tools()
    from dev_cluster.cluster import DevCluster

    mode: str = request.param
    state = tmp_path_factory.mktemp(f"chart-{mode}")
    values = {**MODES[mode]}
    values["config"] = {**values.get("config", {}), "trainerImage": TRAINER_IMAGE}
    dev = DevCluster(
        state / "cluster",
        operator=True,
        backoff_base=0.5,
        crd_dir=crd_dir(state / "crds"),
        operator_values=values,
    )
    with dev:
        yield Installed(dev, mode)


def kubectl(cluster: Any, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(cluster.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def training_job() -> str:
    docs = documents((ROOT / "examples" / "trainingjob-digits.yaml").read_text(encoding="utf-8"))
    for doc in docs:
        if doc["kind"] == "TrainingJob":
            doc["spec"]["args"] = ["--epochs", "1"]
    return yaml.safe_dump_all(docs)


def test_chart_runs_the_operator_which_reconciles_a_training_job(installed: Installed) -> None:
    from kubernetes import client

    cluster = installed.cluster
    api = cluster.api_client()
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    custom = client.CustomObjectsApi(api)
    replicas = MODES[installed.mode].get("replicaCount", 1)

    def operators_ready() -> list[Any] | None:
        pods = core.list_namespaced_pod(
            "gantry-system", label_selector="app.kubernetes.io/component=operator"
        ).items
        ready = [
            p
            for p in pods
            if {c.type: c.status for c in p.status.conditions or []}.get("Ready") == "True"
        ]
        return ready if len(ready) == replicas else None

    pods = installed.wait(
        operators_ready, 120, "the operator pods to be Ready (kopf health endpoint)"
    )
    for pod in pods:
        (container,) = pod.spec.containers
        assert container.command == ["python", "-m", "gantry.controller"]
        assert pod.spec.service_account_name == "gantry"
        assert pod.spec.automount_service_account_token is not False
        assert not [e for e in container.env or [] if e.name == "KUBECONFIG"]

    if replicas > 1:

        def peers() -> set[str] | None:
            peering = custom.get_cluster_custom_object(
                "kopf.dev", "v1", "clusterkopfpeerings", "gantry"
            )
            names = set((peering.get("status") or {}).keys())
            return names if len(names) == replicas else None

        # Both replicas announce themselves in the peering (POD_ID = pod name).
        assert installed.wait(peers, 120, "both replicas in the peering") == {
            p.metadata.name for p in pods
        }

    kubectl(cluster, "-n", NS, "apply", "-f", "-", stdin=training_job())

    def worker_job() -> Any:
        jobs = batch.list_namespaced_job(NS, label_selector="gantry.dev/trainingjob=digits-cnn")
        return jobs.items[0] if jobs.items else None

    job = installed.wait(worker_job, 120, "the TrainingJob's worker Job")
    assert job.metadata.owner_references[0].kind == "TrainingJob"
    # The image comes from the chart's ConfigMap: the operator read its mounted configuration.
    assert {c.image for c in job.spec.template.spec.containers} == {TRAINER_IMAGE}

    def phase() -> str | None:
        tj = custom.get_namespaced_custom_object(
            "gantry.dev", "v1alpha1", NS, "trainingjobs", "digits-cnn"
        )
        current = (tj.get("status") or {}).get("phase")
        return current if current in {"Running", "Succeeded"} else None

    assert installed.wait(phase, 180, "the TrainingJob to run") in {
        "Running",
        "Succeeded",
    }
