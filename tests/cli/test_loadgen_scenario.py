"""The step-load scenario's Triton pods probe and drain exactly as the operator's do: a
benchmark of scale-ups and scale-downs measures the pods users get, not a copy that drifted
(it once had a 3 s preStop against a 5 s connection age, and 1 s readiness probes)."""

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


def _comings_and_goings(pod: dict[str, Any]) -> dict[str, Any]:
    """What decides when a Triton pod takes requests and how it lets its clients go."""
    triton = next(c for c in pod["containers"] if c["name"] == "triton")
    flags = ("--exit-timeout-secs=", "--grpc-max-connection-age", "--grpc-keepalive")
    return {
        "probes": {k: v for k, v in triton.items() if k.endswith("Probe")},
        "lifecycle": triton["lifecycle"],
        "grace": pod["terminationGracePeriodSeconds"],
        "flags": sorted(a for a in triton["args"] if a.startswith(flags)),
    }


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_scenario_pods_probe_and_drain_like_the_operators(config: OperatorConfig) -> None:
    spec = InferenceServiceSpec.model_validate({"model": {"storageUri": "pvc://models/m"}})
    operator_pod = pod_template(
        "m", spec, ServedVersion(version=1, digest="d", job="j", report={}), config
    )["spec"]
    objects = manifests("m", "default", Path("/repo"), {"mode": "builtin"}, config)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    scenario_pod = deployment["spec"]["template"]["spec"]
    assert _comings_and_goings(scenario_pod) == _comings_and_goings(operator_pod)
    assert len(_comings_and_goings(scenario_pod)["probes"]) == 3


def test_a_connection_age_lengthens_the_drain_past_it() -> None:
    objects = manifests("m", "default", Path("/repo"), {}, CONFIGS["age-5s"])
    pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    prestop = int(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"][1])
    assert prestop > 5 * 1.1  # every connection reaches its age (+10 % jitter) first
