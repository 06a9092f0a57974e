"""Operator process wiring: settings, metrics, kopf credentials."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gantry.config import ConfigError, OperatorConfig, load_config
from gantry.controller import metrics
from gantry.controller.connection import _connection_info, _kubeconfig_configuration
from gantry.controller.settings import operator_kwargs


def test_observe_reconcile_counts_results_errors_and_durations() -> None:
    ok_before = metrics.sample("gantry_reconcile_total", kind="Test", result="ok")
    with metrics.observe_reconcile("Test"):
        pass
    with pytest.raises(KeyError), metrics.observe_reconcile("Test"):
        raise KeyError("x")
    assert metrics.sample("gantry_reconcile_total", kind="Test", result="ok") == ok_before + 1
    assert metrics.sample("gantry_reconcile_total", kind="Test", result="error") >= 1
    assert metrics.sample("gantry_reconcile_errors_total", kind="Test", reason="KeyError") >= 1
    assert metrics.sample("gantry_reconcile_duration_seconds_count", kind="Test") >= 2
    metrics.record_autoscaler_decision("up")
    metrics.record_scrape_failure()
    assert metrics.sample("gantry_autoscaler_decisions_total", direction="up") >= 1
    assert metrics.sample("gantry_metrics_scrape_failures_total") >= 1
    assert metrics.serve(0) is None, "port 0 turns the endpoint off"


def test_operator_settings_live_in_the_typed_configuration() -> None:
    """Resync, timeouts, ports, liveness and peering: one model, chart values or GANTRY_*."""
    defaults = load_config({})
    assert defaults.resync_seconds >= 60, "a slow resync: events drive reconciles"
    assert defaults.metrics_port == 8081 and defaults.peering is None
    assert defaults.liveness == "http://0.0.0.0:8080/healthz"
    env = {
        "GANTRY_RESYNC_SECONDS": "120",
        "GANTRY_METRICS_PORT": "0",
        "GANTRY_LIVENESS": "",
        "GANTRY_PEERING": "gantry",
        "GANTRY_SCRAPE_INTERVAL_SECONDS": "30",
    }
    config = load_config(env)
    assert config.resync_seconds == 120 and config.metrics_port == 0
    assert config.liveness is None and config.peering == "gantry"
    assert config.scrape_interval_seconds == 30, "kept as configured, not capped"
    with pytest.raises(ConfigError, match=r"metrics_port|metricsPort"):
        load_config({"GANTRY_METRICS_PORT": "99999"})
    with pytest.raises(ConfigError, match="resync"):
        load_config({"GANTRY_RESYNC_SECONDS": "soon"})
    assert operator_kwargs(OperatorConfig()) == {
        "clusterwide": True,
        "namespaces": [],
        "standalone": True,
        "peering_name": None,
    }
    scoped = operator_kwargs(OperatorConfig(watch_namespaces=("ml",), peering="gantry"))
    assert scoped == {
        "clusterwide": False,
        "namespaces": ["ml"],
        "standalone": False,
        "peering_name": "gantry",
    }


def test_kopf_credentials_from_a_kubeconfig(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://10.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: s3cr3t}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: ml}}]
current-context: x
"""
    )
    info = _connection_info(_kubeconfig_configuration(str(path)))
    assert info.server == "https://10.0.0.1:6443"
    assert info.token == "s3cr3t" and info.insecure is True
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _kubeconfig_configuration(str(tmp_path / "absent"))


def test_bad_configuration_stops_the_operator_with_a_message(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GANTRY_MASTER_PORT_RANGE": "[1, 2, 3]"}
    result = subprocess.run(
        [sys.executable, "-m", "gantry.controller"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid operator configuration" in result.stderr
