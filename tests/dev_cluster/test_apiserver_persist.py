"""State directory persistence, the command line and the kubeconfig."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client, config
from test_apiserver_helpers import GROUP, PLURAL, api_client, trainingjob, trainingjob_crd

from dev_cluster.apiserver import write_kubeconfig
from dev_cluster.apiserver.testing import start_in_thread


def test_restart_keeps_objects(tmp_path: Path) -> None:
    with start_in_thread(state_dir=tmp_path) as first:
        api = api_client(first.url)
        client.ApiextensionsV1Api(api).create_custom_resource_definition(trainingjob_crd())
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, "v1alpha1", "default", PLURAL, trainingjob("kept")
        )
        cm = client.CoreV1Api(api).create_namespaced_config_map(
            "default", {"metadata": {"name": "kept"}, "data": {"a": "1"}}
        )
        api.close()
    assert first.server is not None and first.server.logs_root == tmp_path / "logs"
    with start_in_thread(state_dir=tmp_path) as second:
        api = api_client(second.url)
        again = client.CoreV1Api(api).read_namespaced_config_map("kept", "default")
        assert again.data == {"a": "1"} and again.metadata.uid == cm.metadata.uid
        obj = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, "v1alpha1", "default", PLURAL, "kept"
        )
        assert obj["spec"]["workers"] == 2
        new = client.CoreV1Api(api).create_namespaced_config_map(
            "default", {"metadata": {"name": "after"}}
        )
        assert int(new.metadata.resource_version) > int(cm.metadata.resource_version)
        api.close()


def test_kubeconfig_works_with_the_client(tmp_path: Path) -> None:
    with start_in_thread() as srv:
        path = write_kubeconfig(tmp_path / "kc" / "config", srv.url, namespace="kube-system")
        doc = yaml.safe_load(path.read_text())
        assert doc["current-context"] == "gantry-dev"
        assert doc["contexts"][0]["context"]["namespace"] == "kube-system"
        api = config.new_client_from_config(str(path))
        assert client.VersionApi(api).get_code().git_version.startswith("v1.33")
        api.close()


@pytest.mark.slow
def test_command_serves_until_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dev_cluster.apiserver",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "state"),
            "--kubeconfig",
            str(kubeconfig),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == url
        api = api_client(url)
        client.CoreV1Api(api).create_namespaced_config_map("default", {"metadata": {"name": "c"}})
        api.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / "state" / "state.json").exists()
