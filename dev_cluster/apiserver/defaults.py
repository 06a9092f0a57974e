"""Server-side defaults and status resets of built-in kinds on create.

Only what clients of the dev cluster read back: pod phase, restart policy and grace
period, service cluster IPs, namespace phase, secret ``stringData``, job selectors and
CRD conditions.
"""

from __future__ import annotations

import base64
import itertools
from typing import Any

from .meta import now
from .resources import ResourceInfo

JSON = dict[str, Any]

_cluster_ips = itertools.count(10)


def _pod_spec(spec: JSON) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("serviceAccountName", spec.get("serviceAccount", "default"))
    for container in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        if isinstance(container, dict):
            container.setdefault("terminationMessagePath", "/dev/termination-log")
            container.setdefault("terminationMessagePolicy", "File")
            container.setdefault(
                "imagePullPolicy",
                "Always" if str(container.get("image", "")).endswith(":latest") else "IfNotPresent",
            )
            for port in container.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")


def _template(spec: JSON) -> None:
    template = spec.get("template")
    if isinstance(template, dict) and isinstance(template.get("spec"), dict):
        _pod_spec(template["spec"])


def _service(spec: JSON) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec.get("clusterIP") != "None" and not spec.get("clusterIP"):
        n = next(_cluster_ips)
        spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
    if spec.get("clusterIP"):
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))


def _job(obj: JSON) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    uid = obj["metadata"]["uid"]
    if not spec.get("manualSelector"):
        labels = {
            "batch.kubernetes.io/controller-uid": uid,
            "controller-uid": uid,
            "batch.kubernetes.io/job-name": obj["metadata"]["name"],
            "job-name": obj["metadata"]["name"],
        }
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    template = spec.get("template") or {}
    if isinstance(template.get("spec"), dict):
        template["spec"].setdefault("restartPolicy", "Never")
    _template(spec)


def _secret(obj: JSON) -> None:
    obj.setdefault("type", "Opaque")
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def crd_status(crd: JSON) -> JSON:
    """What the apiextensions controller writes once a CRD's names are accepted."""
    stamp = now()
    names = dict(crd["spec"]["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    stored = [v["name"] for v in crd["spec"].get("versions", []) if v.get("storage")]
    return {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": stamp,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": stamp,
            },
        ],
        "storedVersions": stored,
    }


def on_create(info: ResourceInfo, obj: JSON) -> None:
    """Defaults a real server fills in on create (status of subresource kinds is reset)."""
    if info.status and (info.group, info.plural) != ("", "nodes"):
        obj.pop("status", None)
    gr = (info.group, info.plural)
    spec = obj.get("spec")
    if gr == ("", "pods"):
        _pod_spec(obj.setdefault("spec", {}))
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif gr == ("", "namespaces"):
        obj.setdefault("spec", {})["finalizers"] = ["kubernetes"]
        obj["status"] = {"phase": "Active"}
    elif gr == ("", "services"):
        _service(obj.setdefault("spec", {}))
        obj["status"] = {"loadBalancer": {}}
    elif gr == ("", "secrets"):
        _secret(obj)
    elif gr in {("apps", "deployments"), ("apps", "replicasets"), ("apps", "statefulsets")}:
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if gr == ("apps", "deployments"):
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault(
                "strategy",
                {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
                },
            )
        _template(spec)
        # ReplicaSetStatus/StatefulSetStatus.replicas are not omitempty: always present.
        obj["status"] = {} if gr == ("apps", "deployments") else {"replicas": 0}
    elif gr == ("batch", "jobs"):
        _job(obj)
        obj["status"] = {}
    elif gr == ("apiextensions.k8s.io", "customresourcedefinitions"):
        obj["status"] = crd_status(obj)
    elif gr == ("autoscaling", "horizontalpodautoscalers"):
        obj["status"] = {"currentReplicas": 0, "desiredReplicas": 0}
    elif gr == ("policy", "poddisruptionbudgets"):
        obj["status"] = {
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "disruptionsAllowed": 0,
            "expectedPods": 0,
        }
    elif isinstance(spec, dict) and gr == ("", "persistentvolumeclaims"):
        spec.setdefault("volumeMode", "Filesystem")
        obj["status"] = {"phase": "Pending"}
