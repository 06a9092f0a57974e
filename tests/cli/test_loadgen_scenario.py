"""The step-load scenario's Triton pods drain exactly as the operator's do: a benchmark of
scale-downs and rolls measures the Deployment users get, not a copy that drifted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.config import OperatorConfig
from gantry.inferenceservice.triton import ServedVersion, pod_template
from gantry_cli.loadgen.scenario import PLAIN_TRITON, manifests

CONFIGS = {
    "defaults": OperatorConfig(),
    "age-5s": OperatorConfig(triton_grpc_max_connection_age_seconds=5),
    "plain": PLAIN_TRITON,
}


def _drain(pod: dict[str, Any]) -> dict[str, Any]:
    """What decides how a terminating Triton pod lets its clients go."""
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    flags = ("--exit-timeout-secs=", "--grpc-max-connection-age", "--grpc-keepalive")
    return {
        "lifecycle": triton["lifecycle"],
        "grace": pod["terminationGracePeriodSeconds"],
        "flags": sorted(a for a in triton["args"] if a.startswith(flags)),
    }


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_scenario_pods_drain_like_the_operators(config: OperatorConfig) -> None:
    spec = InferenceServiceSpec.model_validate({"model": {"storageUri": "pvc://models/m"}})
    operator_pod = pod_template(
        "m", spec, ServedVersion(version=1, digest="d", job="j", report={}), config
    )["spec"]
    objects = manifests("m", "default", Path("/repo"), {"mode": "builtin"}, config)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert _drain(deployment["spec"]["template"]["spec"]) == _drain(operator_pod)


def test_a_connection_age_lengthens_the_drain_past_it() -> None:
    objects = manifests("m", "default", Path("/repo"), {}, CONFIGS["age-5s"])
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    prestop = int(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert prestop > 5 * 1.1  # every connection reaches its age (+10 % jitter) first
