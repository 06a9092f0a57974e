"""Process-group set-up from torchrun's environment.

torchrun exports RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT to every
worker; without them (plain ``python train.py``) the same script runs as a single
process with no process group, so one code path serves a laptop and a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import NoReturn

import torch
import torch.distributed as dist

__all__ = ["DistributedContext", "current_rank", "init_distributed", "shutdown"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job. Use it as a context manager to shut down cleanly."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    backend: str | None
    """``"nccl"`` or ``"gloo"``; ``None`` when running single-process without a process group."""
    is_main: bool

    @property
    def distributed(self) -> bool:
        """True when a process group exists (collectives are available)."""
        return self.backend is not None

    def barrier(self) -> None:
        """Wait for every rank; a no-op without a process group."""
        if not self.distributed or not dist.is_initialized():
            return
        if self.backend == "nccl" and self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def __enter__(self) -> DistributedContext:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # A rank must not tear the group down while another still uses it (rank 0 exporting
        # the model, say): gloo aborts the process ("terminate called without an active
        # exception") when a peer's connections close under it, and torchrun then reports
        # a finished job as failed. So every rank leaves together. After an exception the
        # others may never arrive: leave at once and let torchrun stop the job.
        if exc_type is None:
            self.barrier()
        shutdown()


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def _launched_by_torchrun(env: Mapping[str, str]) -> bool:
    return all(env.get(k) for k in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"))


def current_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's global rank, also before (or without) ``init_distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int(os.environ if env is None else env, "RANK", 0)


def _pick_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available() and local_rank < torch.cuda.device_count():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(
    backend: str | None = None,
    *,
    timeout: timedelta = timedelta(minutes=10),
    env: Mapping[str, str] | None = None,
) -> DistributedContext:
    """Join the process group torchrun describes, or run single-process without one.

    The backend is nccl when this process has a CUDA device of its own (selected by
    LOCAL_RANK) and gloo otherwise; pass ``backend`` to force one. Calling it again
    after the group exists returns the same description.
    """
    env = os.environ if env is None else env
    local_rank = _env_int(env, "LOCAL_RANK", 0)
    device = _pick_device(local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    if not _launched_by_torchrun(env):
        return DistributedContext(
            rank=0, local_rank=0, world_size=1, device=device, backend=None, is_main=True
        )

    rank = _env_int(env, "RANK", 0)
    world_size = _env_int(env, "WORLD_SIZE", 1)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"inconsistent torchrun environment: RANK={rank} WORLD_SIZE={world_size}")
    chosen = backend or ("nccl" if device.type == "cuda" else "gloo")
    if not dist.is_initialized():
        dist.init_process_group(
            backend=chosen,
            init_method="env://",
            rank=rank,
            world_size=world_size,
            timeout=timeout,
            device_id=device if chosen == "nccl" else None,
        )
    return DistributedContext(
        rank=dist.get_rank(),
        local_rank=local_rank,
        world_size=dist.get_world_size(),
        device=device,
        backend=str(dist.get_backend()),
        is_main=dist.get_rank() == 0,
    )


def shutdown() -> None:
    """Destroy the process group if one exists; safe to call more than once."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(code: int) -> NoReturn:
    """End a worker process right after its orderly teardown, skipping C++ static
    destructors.

    A torchrun worker that finished cleanly (barrier passed, process group destroyed)
    has been seen to abort during interpreter shutdown with gloo's "terminate called
    without an active exception" (SIGABRT) — about once in 20–40 runs here; torchrun then
    reports the whole finished job as failed. Flushing and `os._exit` leave nothing
    unwritten: checkpoints and exports are written atomically before this point. The
    root cause in the C++ teardown is not found yet.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
