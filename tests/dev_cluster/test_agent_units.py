"""Table tests for the node agent's pure parts."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path

import pytest

from dev_cluster.agent.container import Backoff
from dev_cluster.agent.envvars import ConfigError, container_argv, container_env, expand
from dev_cluster.agent.hosts import PodAddress, hosts_file, service_records
from dev_cluster.agent.images import (
    entrypoint_for,
    host_command,
    pull_error,
    registry_host,
    with_entrypoint,
)
from dev_cluster.agent.ips import IPAllocator, addresses_on_lo, can_add_addresses
from dev_cluster.agent.kubelet import qos_class
from dev_cluster.agent.podstatus import pod_phase
from dev_cluster.agent.process import Sandbox, wrapper_script
from dev_cluster.agent.quantity import parse_quantity
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
    assert entrypoint_for("python:3.11-slim") is None  # python images have a CMD, not an ENTRYPOINT
    assert with_entrypoint("python:3.11", [], ["python", "-c", "pass"]) == ["python", "-c", "pass"]
    assert with_entrypoint("python:3.11", [], []) == ["python"]
    assert with_entrypoint("nvcr.io/nvidia/tritonserver:24.08-py3", [], ["--x"]) == [
        "tritonserver",
        "--x",
    ]
    assert entrypoint_for("busybox") is None
    argv, _ = host_command("python:3.11", ["python3", "-c", "pass"], {})
    assert Path(argv[0]).name.startswith("python") and argv[1:] == ["-c", "pass"]
    assert host_command("busybox", ["sh", "-c", "true"], {})[0] == ["sh", "-c", "true"]


@pytest.mark.parametrize(
    ("image", "host"),
    [
        ("registry.invalid/trainer:1", "registry.invalid"),
        ("Registry.Invalid:5000/team/trainer@sha256:ab", "registry.invalid"),
        ("localhost/x", "localhost"),
        ("[::1]:5000/x:1", "[::1]"),
        ("nvcr.io/nvidia/tritonserver:24.10-py3", "nvcr.io"),
        ("python:3.12", None),  # Docker Hub
        ("library/python:3.12", None),
        ("trainer.invalid", None),  # one component: a Docker Hub name, not a host
    ],
)
def test_registry_host(image: str, host: str | None) -> None:
    assert registry_host(image) == host


@pytest.mark.parametrize(
    "image",
    ["registry.invalid/trainer:1", "r.test/a/b:2", "x.example:443/y", "REGISTRY.INVALID./t"],
)
def test_an_image_from_a_registry_that_cannot_exist_cannot_be_pulled(image: str) -> None:
    error = pull_error(image)
    assert error is not None
    assert f'failed to pull and unpack image "{image}"' in error
    assert "no such host" in error and registry_host(image) in error


@pytest.mark.parametrize(
    "image",
    [
        "python:3.12",
        "ghcr.io/gantry-dev/gantry-trainer:0.1.0",
        "example.com/x:1",  # RFC 2606 reserves it, but it resolves
        "invalid/x:1",  # a Docker Hub organisation
        "registry.invalid",  # no "/": a Docker Hub name
        "",
    ],
)
def test_every_other_image_is_present(image: str) -> None:
    assert pull_error(image) is None


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
    ips = IPAllocator(tmp_path, routable=False)
    first, second = ips.allocate("a"), ips.allocate("b")
    assert (first, second) == ("127.0.1.1", "127.0.1.2")
    ips.release("a")
    assert ips.allocate("c") == "127.0.1.1"
    assert ips.allocate("d", wanted="127.0.0.5") == "127.0.1.3"
    other = IPAllocator(tmp_path, routable=False)  # a second cluster on the host gets its own block
    assert other.allocate("a") == "127.0.2.1"
    ips.close()
    assert IPAllocator(tmp_path, routable=False).allocate("x") == "127.0.1.1"


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
    pvcs = {("ns", "claim"): {"metadata": {"name": "claim"}, "spec": {"volumeName": "pv-1"}}}
    pvs = {("", "pv-1"): {"spec": {"hostPath": {"path": str(tmp_path / "pv-1")}}}}
    tokens = {("info", "tok"): b"a-bound-token"}
    vols = prepare_volumes(pod, tmp_path / "pod", cms, {}, pvcs, pvs, tokens)
    assert vols["data"] == tmp_path / "pv-1"
    assert (vols["cfg"] / "sub" / "a.txt").read_text() == "hello" and not (
        vols["cfg"] / "b"
    ).exists()
    assert (vols["cfg"] / "sub" / "a.txt").stat().st_mode & 0o777 == 0o600
    assert (vols["info"] / "name").read_text() == "p"
    assert (vols["info"] / "tok").read_bytes() == b"a-bound-token"
    container = {
        "volumeMounts": [
            {"name": "data", "mountPath": "/data", "subPath": "run1"},
            {"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True},
        ]
    }
    mounts = container_mounts(container, vols)
    assert Mount(vols["data"] / "run1", "/data") in mounts
    assert Mount(vols["cfg"], "/etc/cfg", True) in mounts
    with pytest.raises(ConfigError, match="not found"):
        prepare_volumes(pod, tmp_path / "pod", cms, {}, {}, pvs, tokens)
    unbound = {("ns", "claim"): {"metadata": {"name": "claim"}, "spec": {}}}
    with pytest.raises(ConfigError, match="not bound"):
        prepare_volumes(pod, tmp_path / "pod", cms, {}, unbound, pvs, tokens)
    with pytest.raises(ConfigError, match="token"):
        prepare_volumes(pod, tmp_path / "pod", cms, {}, pvcs, pvs, {})


def test_qos_classes() -> None:
    both = {"cpu": "1", "memory": "1Gi"}
    assert qos_class({"containers": [{}]}) == "BestEffort"
    assert qos_class({"containers": [{"resources": {"limits": both}}]}) == "Guaranteed"
    assert (
        qos_class({"containers": [{"resources": {"requests": both, "limits": both}}]})
        == "Guaranteed"
    )
    assert qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"
    # only cpu and memory count (the API server sets qosClass at creation; it is immutable)
    gpu = {"limits": {"nvidia.com/gpu": "1"}}
    assert qos_class({"containers": [{"resources": gpu}]}) == "BestEffort"
    same = {
        "requests": {"cpu": "1000m", "memory": "1Gi"},
        "limits": {"cpu": "1", "memory": "1024Mi"},
    }
    assert qos_class({"containers": [{"resources": same}]}) == "Guaranteed"
    sidecar = {"containers": [{"resources": {"limits": both}}, {}]}
    assert qos_class(sidecar) == "Burstable"


def test_wrapper_script_mounts_then_execs(tmp_path: Path) -> None:
    box = Sandbox((Mount(tmp_path, "/data", True),), "web-0", "/data", tmp_path)
    script = wrapper_script(box)
    assert f"mount --bind {tmp_path} /data" in script and "remount,bind,ro /data" in script
    assert "hostname web-0" in script and script.endswith('"$@"')
    assert "exec " in script and "--pdeathsig KILL" in script  # the container dies with the node


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


@pytest.mark.skipif(
    not can_add_addresses(), reason="adding addresses to lo needs root or CAP_NET_ADMIN"
)
def test_routable_pod_addresses_live_on_lo_while_allocated() -> None:
    # the host's shared lock directory: a block a running dev cluster holds is never taken
    ips = IPAllocator(routable=True)
    try:
        ip = ips.allocate("pod-a")
        assert ip.startswith("198.18.") and ip in addresses_on_lo("198.18")
        ips.release("pod-a")
        assert ip not in addresses_on_lo("198.18")
        kept = ips.allocate("pod-b")
    finally:
        ips.close()
    assert kept not in addresses_on_lo("198.18")


# ---- the kubelet's newer parts: provisioner, kubelet API, tokens, Lease ----------------


def _claim(**meta: object) -> dict[str, object]:
    annotations = {"volume.kubernetes.io/storage-provisioner": "gantry.dev/local-path"}
    return {
        "metadata": {"name": "data", "namespace": "ml", "uid": "c-1", "annotations": annotations, **meta},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "5Gi"}}},
        "status": {"phase": "Pending"},
    }  # fmt: skip


def test_provisioner_takes_only_pending_claims_handed_to_it() -> None:
    from dev_cluster.agent.provisioner import wants_volume

    assert wants_volume(_claim())
    legacy = _claim(
        annotations={"volume.beta.kubernetes.io/storage-provisioner": "gantry.dev/local-path"}
    )
    assert wants_volume(legacy)
    assert not wants_volume(
        _claim(annotations={"volume.kubernetes.io/storage-provisioner": "ebs.csi.aws.com"})
    )
    assert not wants_volume(_claim(annotations={}))  # the PV controller has not handed it over
    assert not wants_volume(_claim(deletionTimestamp="2026-01-01T00:00:00Z"))
    bound = _claim()
    bound["spec"] = {"volumeName": "pvc-c-1"}
    assert not wants_volume(bound)
    done = _claim()
    done["status"] = {"phase": "Bound"}
    assert not wants_volume(done)


def test_provisioned_volume_is_a_directory_pre_bound_to_its_claim(tmp_path: Path) -> None:
    from dev_cluster.agent.provisioner import STORAGE_CLASS, is_released_ours, volume_for

    volume = volume_for(_claim(), tmp_path)
    spec = volume["spec"]
    assert volume["metadata"]["name"] == "pvc-c-1"
    assert spec["hostPath"]["path"] == str(tmp_path / "pvc" / "ml" / "data")
    assert spec["claimRef"] == {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "ml", "name": "data", "uid": "c-1",
    }  # fmt: skip
    assert (spec["capacity"], spec["accessModes"]) == ({"storage": "5Gi"}, ["ReadWriteMany"])
    assert (spec["storageClassName"], spec["persistentVolumeReclaimPolicy"]) == (
        STORAGE_CLASS,
        "Delete",
    )
    assert not is_released_ours(volume)  # no status yet: still in use
    for phase, ours in (
        ("Bound", False),
        ("Available", False),
        ("Released", True),
        ("Failed", True),
    ):
        assert is_released_ours({**volume, "status": {"phase": phase}}) is ours
    retained = {**volume, "spec": {**spec, "persistentVolumeReclaimPolicy": "Retain"}}
    assert not is_released_ours({**retained, "status": {"phase": "Released"}})
    foreign = {**volume, "metadata": {"name": "pv-x", "annotations": {}}}
    assert not is_released_ours({**foreign, "status": {"phase": "Released"}})


def test_log_tail_keeps_the_last_lines() -> None:
    from dev_cluster.agent.kubelet_server import tail

    data = b"a\nb\nc\n"
    assert tail(data, None) == data
    assert tail(data, 2) == b"b\nc\n"
    assert tail(data, 10) == data
    assert tail(data, 0) == b""
    assert tail(b"a\nno newline", 1) == b"no newline"


def test_a_followed_run_is_over_when_it_ends_restarts_or_the_pod_goes() -> None:
    from dev_cluster.agent.kubelet_server import run_is_over

    def pod(state: str, restarts: int = 0) -> dict[str, object]:
        status = {"name": "main", "restartCount": restarts, "state": {state: {}}}
        return {"status": {"containerStatuses": [status]}}

    assert not run_is_over(pod("running"), "main", 0)
    assert run_is_over(pod("terminated"), "main", 0)
    assert run_is_over(pod("running", restarts=1), "main", 0)  # a new run began
    assert run_is_over(None, "main", 0)
    assert not run_is_over(pod("running"), "sidecar", 0)  # not reported yet
    init = {"status": {"initContainerStatuses": [{"name": "seed", "state": {"terminated": {}}}]}}
    assert run_is_over(init, "seed", 0)


def test_token_sources_of_projected_volumes() -> None:
    from dev_cluster.agent.volumes import DEFAULT_TOKEN_SECONDS, TokenSource, token_sources

    pod = {"spec": {"volumes": [
        {"name": "kube-api-access-x", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt"}},
        ]}},
        {"name": "vault", "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]}},
        {"name": "scratch", "emptyDir": {}},
    ]}}  # fmt: skip
    assert token_sources(pod) == [
        TokenSource("kube-api-access-x", "token", None, 3607),
        TokenSource("vault", "t", "vault", DEFAULT_TOKEN_SECONDS),
    ]
    assert token_sources({"spec": {}}) == []


def test_node_lease_body() -> None:
    from datetime import UTC, datetime

    from dev_cluster.agent.lease import DURATION_S, NAMESPACE, NodeLease

    before = datetime.now(UTC)
    body = NodeLease(None, "dev-node").body()  # type: ignore[arg-type]  # body() needs no client
    assert body["metadata"] == {"name": "dev-node", "namespace": NAMESPACE}
    assert NAMESPACE == "kube-node-lease"
    spec = body["spec"]
    assert (spec["holderIdentity"], spec["leaseDurationSeconds"]) == ("dev-node", DURATION_S)
    renewed = datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before <= renewed <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("image", "command", "args", "argv"),
    [
        ("python:3.11", ["python", "-c", "pass"], [], ["python", "-c", "pass"]),
        ("python:3.11", ["python"], ["-c", "pass"], ["python", "-c", "pass"]),
        ("python:3.11", [], ["python", "-m", "http.server"], ["python", "-m", "http.server"]),
        ("python:3.11", [], [], ["python"]),
        ("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", [], [], ["python"]),
        ("nvcr.io/nvidia/tritonserver:24.10-py3", [], ["--model-repository=/m"], ["tritonserver", "--model-repository=/m"]),
        ("nvcr.io/nvidia/tritonserver:24.10-py3", ["sh", "-c"], ["x"], ["sh", "-c", "x"]),
        ("busybox", [], ["sleep", "1"], ["sleep", "1"]),
        ("busybox", [], [], []),
    ],
)  # fmt: skip
def test_with_entrypoint(image: str, command: list[str], args: list[str], argv: list[str]) -> None:
    assert with_entrypoint(image, command, args) == argv


def test_a_failed_init_container_leaves_the_pod_not_initialized() -> None:
    from dev_cluster.agent.podstatus import pod_conditions

    failed = {c["type"]: c["status"] for c in pod_conditions([], "Failed", False, [])}
    assert (failed["Initialized"], failed["Ready"]) == ("False", "False")
    done = {c["type"]: c["status"] for c in pod_conditions([], "Succeeded", True, [{}])}
    assert (done["Initialized"], done["Ready"]) == ("True", "False")


def test_sidecars_are_init_containers_that_always_restart() -> None:
    from dev_cluster.agent.kubelet import is_sidecar

    assert is_sidecar({"name": "proxy", "restartPolicy": "Always"})
    assert not is_sidecar({"name": "seed"})


def test_service_names_resolve_to_selected_ready_pods_without_endpoint_slices(
    tmp_path: Path,
) -> None:
    """Loopback pod IPs never reach an EndpointSlice; the hosts files read the pods."""
    from dev_cluster.agent import api
    from dev_cluster.agent.dns import HostsWriter
    from dev_cluster.agent.informer import Informer

    def informer(resource: api.Resource, *objects: dict[str, object]) -> Informer:
        made = Informer(None, resource)  # type: ignore[arg-type]  # a filled cache, no API
        for obj in objects:
            made.upsert(obj)
        return made

    pods = informer(
        api.PODS,
        _ready_pod("web-1", "127.0.1.5", True, {"app": "web"}),
        _ready_pod("web-2", "127.0.1.6", False, {"app": "web"}),
        _ready_pod("other", "127.0.1.7", True, {"app": "other"}),
    )
    web = {"metadata": {"name": "web", "namespace": "default"}, "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.9"}}  # fmt: skip
    headless = {"metadata": {"name": "all", "namespace": "default"}, "spec": {"selector": {"app": "web"}, "clusterIP": "None", "publishNotReadyAddresses": True}}  # fmt: skip
    writer = HostsWriter(
        informer(api.SERVICES, web, headless),
        informer(api.ENDPOINTSLICES),
        pods,
        list,
        tmp_path / "hosts",
    )
    assert sorted(writer.records()) == [
        ("127.0.1.5", "all.default", "default"),
        ("127.0.1.5", "web.default", "default"),
        ("127.0.1.6", "all.default", "default"),
    ]
