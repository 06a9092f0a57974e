"""`python -m dev_cluster.agent --kubeconfig PATH --state-dir DIR [--gpus N]`."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from .agent import AgentConfig, NodeAgent
from .api import server_from_kubeconfig
from .node import NodeCapacity, host_capacity
from .quantity import parse_quantity


async def _serve(config: AgentConfig) -> None:
    agent = NodeAgent(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await agent.start()
    click.echo(f"node agent running against {config.server} (state in {config.state_dir})")
    try:
        await stop.wait()
    finally:
        await agent.stop()


@click.command()
@click.option(
    "--kubeconfig", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True
)
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option(
    "--logs-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="where container logs go (default: <state-dir>/logs, as the dev API reads them)",
)
@click.option("--gpus", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--cpu", default=None, help="CPU capacity (default: the host's)")
@click.option("--memory", default=None, help="memory capacity, e.g. 16Gi (default: the host's)")
@click.option("--backoff-base", type=float, default=10.0, show_default=True)
@click.option("-v", "--verbose", is_flag=True)
def main(
    kubeconfig: Path,
    state_dir: Path,
    logs_root: Path | None,
    gpus: int,
    cpu: str | None,
    memory: str | None,
    backoff_base: float,
    verbose: bool,
) -> None:
    """Run the dev node agent against the API server named in KUBECONFIG."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    try:
        server = server_from_kubeconfig(kubeconfig)
        capacity = node_capacity(gpus, cpu, memory)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    config = AgentConfig(
        server=server,
        state_dir=state_dir.resolve(),
        logs_root=logs_root,
        capacity=capacity,
        backoff_base=backoff_base,
    )
    asyncio.run(_serve(config))


def node_capacity(gpus: int, cpu: str | None, memory: str | None) -> NodeCapacity:
    host = host_capacity(gpus)
    return NodeCapacity(
        cpu=parse_quantity(cpu) if cpu else host.cpu,
        memory=parse_quantity(memory) if memory else host.memory,
        gpus=gpus,
        pods=host.pods,
    )


__all__ = ["main", "node_capacity"]

if __name__ == "__main__":
    main()
