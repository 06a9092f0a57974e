"""Pod resources shared by the optimize Job and the Triton Deployment."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gantry.api.common import ResourceRequirements
from gantry.api.inferenceservice import GPU_RESOURCE
from gantry.config import PodResources
from gantry.k8s.resources import resource_requirements


def resources_with_gpus(defaults: PodResources, gpus: int) -> dict[str, Any]:
    """The operator's default resources plus `gpus` GPU limits (GPUs are never requested
    without being limited, as the device plugin requires)."""
    limits = dict(defaults.limits)
    if gpus > 0:
        limits[GPU_RESOURCE] = str(gpus)
    return resource_requirements(defaults.requests, limits)


def serving_resources(
    spec_resources: ResourceRequirements | None, defaults: PodResources
) -> dict[str, Any]:
    """The spec's resources when given (GPU requests mirrored into limits), else defaults."""
    if spec_resources is None:
        return resources_with_gpus(defaults, 0)
    requests = {k: str(v) for k, v in spec_resources.requests.items()}
    limits = {k: str(v) for k, v in spec_resources.limits.items()}
    if GPU_RESOURCE in requests and GPU_RESOURCE not in limits:
        limits[GPU_RESOURCE] = requests[GPU_RESOURCE]
    return resource_requirements(requests, limits)


def without_gpus(resources: Mapping[str, Any]) -> dict[str, Any]:
    """`resources` minus GPUs, for an init container that only copies files.

    It still names the cpu and memory of the main container: a namespace ResourceQuota on
    requests or limits refuses a pod with any container that names none, and an init
    container no larger than the main one does not raise the pod's effective request.
    """
    return resource_requirements(
        {k: v for k, v in (resources.get("requests") or {}).items() if k != GPU_RESOURCE},
        {k: v for k, v in (resources.get("limits") or {}).items() if k != GPU_RESOURCE},
    )
