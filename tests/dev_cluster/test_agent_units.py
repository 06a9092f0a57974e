"""Table tests for the node agent's pure parts."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path

import pytest

from dev_cluster.agent.container import Backoff
from dev_cluster.agent.deployments import (
    rolling_targets,
    scaled_value,
    surge_and_unavailable,
    template_hash,
)
from dev_cluster.agent.endpoints import cluster_ip_for, desired_slice
from dev_cluster.agent.envvars import ConfigError, container_argv, container_env, expand
from dev_cluster.agent.hosts import PodAddress, hosts_file, service_records
from dev_cluster.agent.images import entrypoint_for, host_command
from dev_cluster.agent.ips import IPAllocator
from dev_cluster.agent.jobs import INDEX_KEY, compress_indexes, failure_count, job_pod
from dev_cluster.agent.pdb import pdb_numbers
from dev_cluster.agent.podstatus import pod_phase
from dev_cluster.agent.process import Sandbox, wrapper_script
from dev_cluster.agent.quantity import parse_quantity
from dev_cluster.agent.scheduler import pod_requests, unschedulable_message, unschedulable_reasons
from dev_cluster.agent.volumes import Mount, container_mounts, prepare_volumes


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1Gi", Decimal(2**30)),
        ("1e3", Decimal(1000)),
        ("128974848", Decimal(128974848)),
        ("1.5k", Decimal(1500)),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


def test_bad_quantity_names_the_value() -> None:
    with pytest.raises(ValueError, match="invalid quantity '12xb'"):
        parse_quantity("12xb")


def _pod(containers: list[dict[str, object]], **spec: object) -> dict[str, object]:
    return {
        "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {"containers": containers, **spec},
    }


def test_limits_stand_in_for_requests_and_init_containers_take_the_max() -> None:
    pod = _pod(
        [
            {"resources": {"limits": {"nvidia.com/gpu": 1, "cpu": "1"}}},
            {"resources": {"requests": {"cpu": "500m"}}},
        ],
        initContainers=[{"resources": {"requests": {"cpu": "4"}}}],
    )
    assert pod_requests(pod) == {"nvidia.com/gpu": Decimal(1), "cpu": Decimal(4)}


def test_gpu_pod_on_gpu_less_node_gets_the_real_message() -> None:
    pod = _pod([{"resources": {"limits": {"nvidia.com/gpu": 1}}}])
    alloc = {
        "cpu": Decimal(2),
        "memory": Decimal(2**30),
        "pods": Decimal(110),
        "nvidia.com/gpu": Decimal(0),
    }
    reasons = unschedulable_reasons(pod, alloc, {}, 0, {})
    assert (
        unschedulable_message(reasons) == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    )
    alloc["nvidia.com/gpu"] = Decimal(1)
    assert unschedulable_reasons(pod, alloc, {}, 0, {}) == []
    assert unschedulable_reasons(pod, alloc, {"nvidia.com/gpu": Decimal(1)}, 1, {}) == [
        "Insufficient nvidia.com/gpu"
    ]


def test_selector_and_taints() -> None:
    alloc = {"pods": Decimal(110)}
    pod = _pod([{}], nodeSelector={"disk": "ssd"})
    assert unschedulable_reasons(pod, alloc, {}, 0, {"disk": "hdd"}) == [
        "node(s) didn't match Pod's node affinity/selector"
    ]
    taint = {"key": "gpu", "value": "yes", "effect": "NoSchedule"}
    plain = _pod([{}])
    assert unschedulable_reasons(plain, alloc, {}, 0, {}, [taint]) == [
        "node(s) had untolerated taint {gpu: yes}"
    ]
    tolerant = _pod([{}], tolerations=[{"key": "gpu", "operator": "Exists"}])
    assert unschedulable_reasons(tolerant, alloc, {}, 0, {}, [taint]) == []


def test_var_expansion_and_escaping() -> None:
    env = {"POD_IP": "127.0.1.3", "A": "x"}
    assert expand("--http-address=$(POD_IP)", env) == "--http-address=127.0.1.3"
    assert expand("$$(POD_IP) $(MISSING) $(A)$(A)", env) == "$(POD_IP) $(MISSING) xx"


def test_container_env_sources() -> None:
    pod = {
        "metadata": {
            "name": "p",
            "namespace": "ns",
            "uid": "u",
            "labels": {"app": "a"},
            "annotations": {"k": "v"},
        },
        "spec": {"nodeName": "dev-node", "serviceAccountName": "sa"},
        "status": {"podIP": "127.0.1.9", "hostIP": "127.0.0.1"},
    }
    cms = {("ns", "cm"): {"data": {"color": "blue", "size": "3"}}}
    secrets = {("ns", "s"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}}}
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "ANN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['k']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "color"}}},
            {"name": "URL", "value": "http://$(IP):8000"},
        ],
        "command": ["python", "-c", "print('$(C)')"],
    }
    env = container_env(pod, container, cms, secrets)
    assert (
        env["IP"] == "127.0.1.9"
        and env["APP"] == "a"
        and env["ANN"] == "v"
        and env["NODE"] == "dev-node"
    )
    assert (
        env["PW"] == "hunter2" and env["CM_size"] == "3" and env["URL"] == "http://127.0.1.9:8000"
    )
    assert container_argv(container, env) == ["python", "-c", "print('blue')"]
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        container_env(
            pod,
            {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]},
            cms,
            secrets,
        )


def test_image_mapping() -> None:
    assert entrypoint_for("nvcr.io/nvidia/tritonserver:24.10-py3") == "tritonserver"
    assert entrypoint_for("python:3.11-slim") == "python"
    assert entrypoint_for("busybox") is None
    argv, _ = host_command("python:3.11", ["python3", "-c", "pass"], {})
    assert Path(argv[0]).name.startswith("python") and argv[1:] == ["-c", "pass"]
    assert host_command("busybox", ["sh", "-c", "true"], {})[0] == ["sh", "-c", "true"]


def test_hosts_file_names() -> None:
    web = PodAddress("default", "web-1", "127.0.1.5", True, "", "")
    peer = PodAddress("default", "peer-pod", "127.0.1.6", True, "peer", "sub")
    idle = PodAddress("default", "idle", "127.0.1.7", False, "", "")
    services = [
        {"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.9"}},
        {"metadata": {"name": "sub", "namespace": "default"}, "spec": {"clusterIP": "None"}},
    ]
    endpoints = {("default", "web"): [idle, web], ("default", "sub"): [peer]}
    records = service_records(services, endpoints, [web, peer, idle])
    assert ("127.0.1.5", "web.default", "default") in records
    assert all(ip != "127.0.1.7" for ip, _, _ in records)
    text = hosts_file(idle, records)
    assert "127.0.1.5\tweb web.default web.default.svc web.default.svc.cluster.local" in text
    assert (
        "127.0.1.6\tpeer.sub peer.sub.default peer.sub.default.svc peer.sub.default.svc.cluster.local"
        in text
    )
    other_ns = hosts_file(PodAddress("other", "x", "127.0.1.8", True, "", ""), records)
    assert "\tweb web.default" not in other_ns and "web.default.svc" in other_ns


def test_rolling_update_never_drops_below_min_available() -> None:
    surge, unavailable = surge_and_unavailable({"spec": {"replicas": 1}})
    assert (surge, unavailable) == (1, 0)
    new, olds = rolling_targets(1, surge, unavailable, 0, 0, [(1, 1)])
    assert (new, olds) == (1, [1])  # surge first
    assert rolling_targets(1, surge, unavailable, 1, 0, [(1, 1)]) == (1, [1])  # new not ready yet
    assert rolling_targets(1, surge, unavailable, 1, 1, [(1, 1)]) == (1, [0])  # new ready: old goes
    assert scaled_value("25%", 10, True, "25%") == 3 and scaled_value("25%", 10, False, "25%") == 2
    assert surge_and_unavailable(
        {
            "spec": {
                "replicas": 4,
                "strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}},
            }
        }
    ) == (0, 1)


def test_template_hash_is_stable_and_label_safe() -> None:
    h = template_hash({"spec": {"containers": [{"name": "a"}]}})
    assert (
        h == template_hash({"spec": {"containers": [{"name": "a"}]}})
        and len(h) == 10
        and h.isalnum()
    )
    assert h != template_hash({"spec": {"containers": [{"name": "b"}]}})


def test_indexed_job_pods() -> None:
    job = {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "train", "namespace": "default", "uid": "j1"},
        "spec": {"completionMode": "Indexed", "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"subdomain": "train", "containers": [{"name": "w"}]}}},
    }  # fmt: skip
    pod = job_pod(job, 2)
    assert (
        pod["metadata"]["annotations"][INDEX_KEY] == "2"
        and pod["metadata"]["labels"][INDEX_KEY] == "2"
    )
    assert pod["spec"]["hostname"] == "train-2" and pod["spec"]["subdomain"] == "train"
    assert pod["spec"]["containers"][0]["env"][0]["name"] == "JOB_COMPLETION_INDEX"
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["uid"] == "j1" and ref["controller"] and ref["blockOwnerDeletion"]
    assert compress_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
    failed = [
        {"spec": {"restartPolicy": "Never"}, "status": {"phase": "Failed"}},
        {
            "spec": {"restartPolicy": "OnFailure"},
            "status": {"phase": "Running", "containerStatuses": [{"restartCount": 2}]},
        },
    ]
    assert failure_count(failed) == 3


def _ready_pod(name: str, ip: str, ready: bool, labels: dict[str, str]) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels},
        "spec": {
            "nodeName": "dev-node",
            "containers": [{"ports": [{"name": "http", "containerPort": 8000}]}],
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def test_endpoint_slice_marks_only_ready_pods_ready() -> None:
    svc = {
        "metadata": {"name": "web", "namespace": "default", "uid": "s1"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
    pods = [
        _ready_pod("a", "127.0.1.1", True, {"app": "web"}),
        _ready_pod("b", "127.0.1.2", False, {"app": "web"}),
        _ready_pod("c", "127.0.1.3", True, {"app": "db"}),
    ]
    s = desired_slice(svc, pods)
    assert [(e["addresses"], e["conditions"]["ready"]) for e in s["endpoints"]] == [
        (["127.0.1.1"], True),
        (["127.0.1.2"], False),
    ]
    assert s["ports"] == [{"protocol": "TCP", "port": 8000, "name": "http"}]
    assert s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
    assert (
        cluster_ip_for(svc).startswith("10.")
        and 96 <= int(cluster_ip_for(svc).split(".")[1]) <= 111
    )


def test_pdb_numbers() -> None:
    pods = [
        _ready_pod("a", "127.0.1.1", True, {"app": "w"}),
        _ready_pod("b", "127.0.1.2", True, {"app": "w"}),
        _ready_pod("c", "127.0.1.3", False, {"app": "w"}),
    ]
    pdb = {"spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "w"}}}}
    assert pdb_numbers(pdb, pods) == {
        "expectedPods": 3,
        "currentHealthy": 2,
        "desiredHealthy": 2,
        "disruptionsAllowed": 0,
    }
    pdb = {"spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "w"}}}}
    assert pdb_numbers(pdb, pods)["disruptionsAllowed"] == 0


def test_pod_phase_rules() -> None:
    running = {"state": {"running": {}}}
    ok = {"state": {"terminated": {"exitCode": 0}}}
    bad = {"state": {"terminated": {"exitCode": 1}}}
    assert pod_phase("Never", True, False, [ok, ok], [False, False]) == "Succeeded"
    assert pod_phase("Never", True, False, [ok, bad], [False, False]) == "Failed"
    assert pod_phase("Always", True, False, [running, bad], [True, True]) == "Running"
    assert pod_phase("Always", False, False, [], []) == "Pending"
    assert pod_phase("Never", False, True, [], []) == "Failed"


def test_ip_allocator_never_hands_out_127_0_0_x(tmp_path: Path) -> None:
    ips = IPAllocator(tmp_path)
    first, second = ips.allocate("a"), ips.allocate("b")
    assert (first, second) == ("127.0.1.1", "127.0.1.2")
    ips.release("a")
    assert ips.allocate("c") == "127.0.1.1"
    assert ips.allocate("d", wanted="127.0.0.5") == "127.0.1.3"
    other = IPAllocator(tmp_path)  # a second cluster on the host gets its own block
    assert other.allocate("a") == "127.0.2.1"
    ips.close()
    assert IPAllocator(tmp_path).allocate("x") == "127.0.1.1"


def test_backoff_doubles_to_the_cap() -> None:
    b = Backoff(10, 300)
    assert [b.delay(n) for n in range(7)] == [10, 20, 40, 80, 160, 300, 300]


def test_volumes_and_mounts(tmp_path: Path) -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
        "spec": {
            "volumes": [
                {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}},
                {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "a", "path": "sub/a.txt"}], "defaultMode": 0o600}},
                {"name": "info", "projected": {"sources": [{"serviceAccountToken": {"path": "tok"}}, {"downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}]}},
            ],
            "containers": [],
        },
    }  # fmt: skip
    cms = {("ns", "cm"): {"data": {"a": "hello", "b": "x"}}}
    pvcs = {("ns", "claim"): {"metadata": {"name": "claim"}}}
    vols = prepare_volumes(pod, tmp_path / "pod", tmp_path / "state", cms, {}, pvcs)
    assert vols["data"] == tmp_path / "state" / "pvc" / "ns" / "claim"
    assert (vols["cfg"] / "sub" / "a.txt").read_text() == "hello" and not (
        vols["cfg"] / "b"
    ).exists()
    assert (vols["cfg"] / "sub" / "a.txt").stat().st_mode & 0o777 == 0o600
    assert (vols["info"] / "name").read_text() == "p" and (vols["info"] / "tok").exists()
    container = {
        "volumeMounts": [
            {"name": "data", "mountPath": "/data", "subPath": "run1"},
            {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True},
        ]
    }
    mounts = container_mounts(container, vols, automount=True)
    assert Mount(vols["data"] / "run1", "/data") in mounts
    assert Mount(vols["cfg"], "/etc/cfg", True) in mounts
    assert any(m.target == "/var/run/secrets/kubernetes.io/serviceaccount" for m in mounts)
    with pytest.raises(ConfigError, match="persistentvolumeclaim"):
        prepare_volumes(pod, tmp_path / "pod", tmp_path / "state", cms, {}, {})


def test_wrapper_script_mounts_then_execs(tmp_path: Path) -> None:
    box = Sandbox((Mount(tmp_path, "/data", True),), "web-0", "/data", tmp_path)
    script = wrapper_script(box)
    assert f"mount --bind {tmp_path} /data" in script and "remount,bind,ro /data" in script
    assert "hostname web-0" in script and script.endswith('exec "$@"')


def test_mounts_that_hide_sources_go_last_and_runtime_paths_are_protected(tmp_path: Path) -> None:
    from dev_cluster.agent.process import hidden_paths, mount_order

    tmp_mount = Mount(Path("/state/pod/volumes/tmp"), "/tmp")
    hosts = Mount(Path("/tmp/state/pod/etc-hosts"), "/etc/hosts")
    data, sub = Mount(Path("/x"), "/data"), Mount(Path("/y"), "/data/sub")
    assert mount_order((tmp_mount, sub, hosts, data)) == [data, sub, hosts, tmp_mount]
    venv = Path("/work/main/.venv")
    assert hidden_paths(["/work", "/data", "/"], [venv]) == [("/work", venv), ("/", venv)]
    assert hidden_paths(["/workspace"], [venv]) == []


def test_unmountable_path_falls_back_to_an_env_var(tmp_path: Path) -> None:
    import subprocess

    from dev_cluster.agent.process import sandboxed_argv

    (tmp_path / "vol").mkdir()
    (tmp_path / "vol" / "f").write_text("content")
    target = str(tmp_path / "mnt")
    box = Sandbox(
        (Mount(tmp_path / "vol", target, True), Mount(tmp_path / "vol", "/proc/gantry/x")),
        "box", target, tmp_path,
    )  # fmt: skip
    code = 'cat f; echo " $(pwd) $(hostname) $GANTRY_DEV_MOUNT_PROC_GANTRY_X"; touch g'
    run = subprocess.run(
        sandboxed_argv(["sh", "-c", code], box), capture_output=True, text=True, timeout=30
    )
    assert run.stdout == f"content {target} box {tmp_path / 'vol'}\n"
    assert "cannot mount at /proc/gantry/x" in run.stderr and "Read-only file system" in run.stderr
    assert not (tmp_path / "vol" / "g").exists()


def test_tritonserver_runs_the_local_build() -> None:
    from dev_cluster.local_triton import tools_dir

    argv, env = host_command(
        "nvcr.io/nvidia/tritonserver:24.10-py3",
        ["tritonserver", "--model-repository=/models"],
        {"PATH": "/usr/bin"},
    )
    assert argv[0] == str(tools_dir() / "triton" / "bin" / "tritonserver")
    assert argv[1] == "--model-repository=/models" and any(
        a.startswith("--backend-directory=") for a in argv
    )
    assert env["PATH"].startswith(str(tools_dir() / "stubenv" / "bin"))


def test_operator_defaults_bind_nothing_on_the_wildcard_address() -> None:
    from dev_cluster.cluster import operator_defaults

    env = operator_defaults("http://127.0.0.1:1234")
    assert (
        env["GANTRY_TRITON_BACKENDS"] == "python"
        and env["GANTRY_API_URL"] == "http://127.0.0.1:1234"
    )
    assert (
        env["GANTRY_LIVENESS"].startswith("http://127.0.0.1:") and env["GANTRY_METRICS_PORT"] == "0"
    )
