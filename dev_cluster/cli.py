"""`gantry dev up | down | logs`: the embedded dev cluster from the command line."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import click

from .cluster import DevCluster, operator_available

DEFAULT_STATE = Path(".gantry") / "dev"
PID_FILE = "dev.pid"


def _state_option(f: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_STATE,
        show_default=True,
        help="PVC data, logs, pid file and kubeconfig live here",
    )(f)


@click.group()
def dev() -> None:
    """The embedded dev cluster (real control plane + local node + Gantry operator)."""


@dev.command()
@_state_option
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="where to write the kubeconfig (default: <state-dir>/kubeconfig)",
)
@click.option(
    "--gpus",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="fake nvidia.com/gpu devices the node advertises",
)
@click.option("--cpu", default=None, help="node CPU capacity (default: the host's, at least 8)")
@click.option(
    "--memory",
    default=None,
    help="node memory capacity, e.g. 16Gi (default: the host's, at least 16Gi)",
)
@click.option("--port", type=int, default=0, help="API server port (default: any free port)")
@click.option("--no-operator", is_flag=True, help="do not install the Gantry chart (operator)")
@click.option(
    "--backoff-base",
    type=float,
    default=10.0,
    show_default=True,
    help="first crash-loop back-off in seconds (doubles up to 5 minutes)",
)
def up(
    state_dir: Path,
    kubeconfig: Path | None,
    gpus: int,
    cpu: str | None,
    memory: str | None,
    port: int,
    no_operator: bool,
    backoff_base: float,
) -> None:
    """Start the dev cluster and run until interrupted (Ctrl-C stops everything)."""
    state_dir = state_dir.resolve()
    pid_file = state_dir / PID_FILE
    if _running_pid(pid_file) is not None:
        raise click.ClickException(
            f"a dev cluster is already running from {state_dir} (gantry dev down)"
        )
    from .agent.quantity import parse_quantity

    for label, value in (("--cpu", cpu), ("--memory", memory)):
        if value is not None:
            try:
                parse_quantity(value)
            except ValueError as exc:
                raise click.BadParameter(str(exc), param_hint=label) from exc
    want_operator = not no_operator
    if want_operator and not operator_available():
        click.echo(
            "note: gantry.controller or helm is missing; starting without the operator", err=True
        )
        want_operator = False
    from .controlplane import binaries_available

    if not binaries_available():
        raise click.ClickException(
            "the control plane is not built: run `make tools` first (it builds kube-apiserver, "
            "kube-controller-manager, kube-scheduler and etcd from their Go modules)"
        )
    cluster = DevCluster(
        state_dir,
        gpus=gpus,
        cpu=cpu,
        memory=memory,
        operator=want_operator,
        kubeconfig=kubeconfig,
        backoff_base=backoff_base,
        port=port,
    )

    def ready(c: DevCluster) -> None:
        pid_file.write_text(f"{os.getpid()}\n")
        cap = c.capacity().as_strings()
        click.echo(f"API server:  {c.url}")
        click.echo(f"kubeconfig:  {c.kubeconfig}  (cluster admin)")
        click.echo(f"state dir:   {c.state_dir}  (PVCs: pvc/, logs: logs/, hosts file: hosts)")
        click.echo(
            f"node:        dev-node (cpu {cap['cpu']}, memory {cap['memory']}, "
            f"{gpus} nvidia.com/gpu; requests are not enforced)"
        )
        click.echo(f"CRDs:        {', '.join(c.crds) or 'none found'}")
        if c.operator:
            click.echo(
                "operator:    Helm release gantry in gantry-system "
                "(kubectl -n gantry-system logs deploy/gantry)"
            )
        else:
            click.echo("operator:    not installed")
        click.echo(f"try:         kubectl --kubeconfig {c.kubeconfig} get nodes")
        click.echo("ready; Ctrl-C stops the cluster", nl=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, cluster.request_stop)
        await cluster.serve(ready)

    try:
        asyncio.run(main())
    finally:
        pid_file.unlink(missing_ok=True)
    click.echo("dev cluster stopped")


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


@dev.command()
@_state_option
@click.option("--timeout", type=float, default=60, show_default=True)
def down(state_dir: Path, timeout: float) -> None:
    """Stop the dev cluster started from STATE_DIR."""
    pid_file = state_dir.resolve() / PID_FILE
    pid = _running_pid(pid_file)
    if pid is None:
        click.echo(f"no dev cluster is running from {state_dir}")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _running_pid(pid_file) is None:
            click.echo("dev cluster stopped")
            return
        time.sleep(0.2)
    os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    click.echo(f"dev cluster (pid {pid}) did not stop within {timeout:g}s and was killed")


@dev.command()
@click.argument("pod")
@click.option("-c", "--container", default=None)
@click.option("-n", "--namespace", default="default", show_default=True)
@click.option("-p", "--previous", is_flag=True, help="the previous run of a restarted container")
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None)
@_state_option
def logs(
    pod: str,
    container: str | None,
    namespace: str,
    previous: bool,
    kubeconfig: Path | None,
    state_dir: Path,
) -> None:
    """Print a pod's container logs (through the API server, like kubectl logs)."""
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    path = kubeconfig or state_dir / "kubeconfig"
    if not path.exists():
        raise click.ClickException(f"no kubeconfig at {path}: is the dev cluster up?")
    api_client = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    api = client.CoreV1Api(api_client)
    try:
        text = api.read_namespaced_pod_log(pod, namespace, container=container, previous=previous)
    except ApiException as exc:
        raise click.ClickException(f"{exc.status} {exc.reason}: {exc.body}") from exc
    click.echo(text, nl=False)
