"""``python -m dev_cluster.apiserver`` / ``gantry dev api``: serve until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import click

from .kubeconfig import write_kubeconfig
from .server import running_apiserver


async def _serve(host: str, port: int, state_dir: Path | None, kubeconfig: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_apiserver(host, port, state_dir) as server:
        if kubeconfig is not None:
            write_kubeconfig(kubeconfig, server.url)
            click.echo(f"kubeconfig: {kubeconfig}", err=True)
        click.echo(server.url, nl=True)
        await stop.wait()
        click.echo("stopping", err=True)


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, type=int, help="Port (0 picks a free one).")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep objects here so a restart finds them again.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write a kubeconfig (context gantry-dev) pointing at the server.",
)
def api_command(host: str, port: int, state_dir: Path | None, kubeconfig: Path | None) -> None:
    """Serve the emulated Kubernetes API (plain HTTP, no auth, RBAC not enforced)."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(host, port, state_dir, kubeconfig))
