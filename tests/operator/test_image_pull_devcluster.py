"""Children whose image cannot be pulled, on the dev cluster: the kubelet's reason reaches
the TrainingJob's and the InferenceService's status.

The dev node pulls no images, but fails the pull of one whose registry host cannot exist
(`registry.invalid`, see `dev_cluster.agent.images`) as a kubelet does: ErrImagePull, then
ImagePullBackOff. The operator (the chart's, on this module's own cluster) runs optimize
Jobs with such an image (`optimizerImage`); a TrainingJob names one in `spec.image`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dev_cluster.cluster import DevCluster
from gantry.k8s.client import KubeClient
from tests.conftest import claim_manifest, wait_for

pytestmark = pytest.mark.slow

NS = "default"
API = "gantry.dev/v1alpha1"
TRAINER = "registry.invalid/trainer:1"
OPTIMIZER = "registry.invalid/gantry-optimizer:0.1.0"
PULL_REASONS = ("ErrImagePull", "ImagePullBackOff")
SMALL = {"requests": {"cpu": "100m", "memory": "128Mi"}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    values = {"config": {"optimizerImage": OPTIMIZER}}
    with DevCluster(
        tmp_path_factory.mktemp("pull-dev"), operator=True, operator_values=values
    ) as dev:
        yield dev


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def view(cluster: DevCluster, kube: KubeClient, plural: str, name: str) -> Callable[[], str]:
    def render() -> str:
        status = ((kube.get(API, plural, name, NS) or {}).get("status")) or {}
        pods = [
            f"pod {p['metadata']['name']}: {(p.get('status') or {}).get('phase')} "
            f"{(p.get('status') or {}).get('containerStatuses')}"
            for p in kube.list("v1", "pods", NS)
        ]
        return "\n".join([f"{plural}/{name}: {status}", *pods, cluster.operator_logs()[-3000:]])

    return render


def warning_events(kube: KubeClient, name: str) -> set[tuple[str, str]]:
    return {
        (str(e.get("reason")), str(e.get("message")))
        for e in kube.list("v1", "events", NS)
        if e["involvedObject"].get("name") == name and e.get("type") == "Warning"
    }


def never_started(pods: list[dict[str, Any]]) -> bool:
    """Every pod Pending and none of its containers ever ran."""
    statuses = [
        c
        for p in pods
        for key in ("initContainerStatuses", "containerStatuses")
        for c in (p.get("status") or {}).get(key) or []
    ]
    return all((p.get("status") or {}).get("phase") == "Pending" for p in pods) and not any(
        c.get("containerID") or {"running", "terminated"} & set(c.get("state") or {})
        for c in statuses
    )


def test_a_trainingjob_whose_image_cannot_be_pulled_says_why(
    cluster: DevCluster, kube: KubeClient
) -> None:
    kube.create(
        {
            "apiVersion": API,
            "kind": "TrainingJob",
            "metadata": {"name": "unpullable", "namespace": NS},
            "spec": {
                "image": TRAINER,
                "command": ["python", "-c", "print('never runs')"],
                "workers": 2,
                "resources": SMALL,
            },
        }
    )
    shown = view(cluster, kube, "trainingjobs", "unpullable")

    def reason(*wanted: str) -> Callable[[], dict[str, Any] | None]:
        def probe() -> dict[str, Any] | None:
            obj = kube.get(API, "trainingjobs", "unpullable", NS)
            return obj if condition(obj, "Running").get("reason") in wanted else None

        return probe

    stuck = wait_for(reason(*PULL_REASONS), 120, "a pull reason", 0.3, on_timeout=shown)
    running = condition(stuck, "Running")
    assert stuck["status"]["phase"] == "Pending"
    assert running["status"] == "False"
    assert f'"{TRAINER}"' in running["message"], running
    assert "cannot start" in running["message"], running
    # it follows the kubelet into the back-off, and says so in an Event as well
    backoff = condition(
        wait_for(reason("ImagePullBackOff"), 120, "ImagePullBackOff", 0.3, on_timeout=shown),
        "Running",
    )
    assert f'Back-off pulling image "{TRAINER}"' in backoff["message"], backoff
    wait_for(
        lambda: any(r == "ImagePullBackOff" for r, _ in warning_events(kube, "unpullable")),
        60,
        "an ImagePullBackOff Event on the TrainingJob",
        on_timeout=lambda: repr(warning_events(kube, "unpullable")),
    )
    pods = kube.list("v1", "pods", NS, label_selector="gantry.dev/trainingjob=unpullable")
    assert pods and never_started(pods), pods
    kube.delete(API, "trainingjobs", "unpullable", NS)


def test_an_optimize_job_whose_image_cannot_be_pulled_says_why(
    cluster: DevCluster, kube: KubeClient
) -> None:
    kube.create(claim_manifest("exports", NS, access_mode="ReadWriteMany"))
    kube.create(
        {
            "apiVersion": API,
            "kind": "InferenceService",
            "metadata": {"name": "pull", "namespace": NS},
            "spec": {
                "model": {"storageUri": "pvc://exports/digits/v1"},
                "optimization": {"precision": "fp32", "accuracy": {"samples": 16}},
            },
        }
    )

    def backing_off() -> dict[str, Any] | None:
        obj = kube.get(API, "inferenceservices", "pull", NS)
        return obj if condition(obj, "Optimized").get("reason") == "ImagePullBackOff" else None

    svc = wait_for(
        backing_off,
        120,
        "the optimize Job's ImagePullBackOff in the service's status",
        0.3,
        on_timeout=view(cluster, kube, "inferenceservices", "pull"),
    )
    optimized = condition(svc, "Optimized")
    assert optimized["status"] == "False"
    assert f'Back-off pulling image "{OPTIMIZER}"' in optimized["message"], optimized
    assert "cannot start" in optimized["message"], optimized
    assert svc["status"]["phase"] == "Optimizing"
    assert OPTIMIZER in svc["status"]["message"], svc["status"]
    pods = kube.list("v1", "pods", NS, label_selector="gantry.dev/optimize-for=pull")
    assert pods and never_started(pods), pods
    assert kube.get("apps/v1", "deployments", "pull-triton", NS) is None, "Triton without a model"
    kube.delete(API, "inferenceservices", "pull", NS)
