"""Checkpoints that survive a killed pod: atomic writes, newest complete one wins on resume.

Rank 0 writes (every rank holds the same DDP weights); RNG states are gathered from
all ranks so each resumes its own stream. On resume rank 0 picks the newest file
that loads and broadcasts its bytes, so the other workers need not see the volume.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from training_jobs._files import atomic_write, remove_stale_temps
from training_jobs.distributed import DistributedContext, init_distributed
from training_jobs.logs import ensure_configured
from training_jobs.rng import capture_rng_state, restore_rng_state

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "ResumeState",
    "checkpoint_name",
    "parse_checkpoint_name",
    "unwrap_model",
]

CHECKPOINT_FORMAT = 1
CHECKPOINT_DIR_ENV = "GANTRY_CHECKPOINT_DIR"
_NAME_RE = re.compile(r"^ckpt-e(\d{5,})-s(\d{9,})\.pt$")
_REQUIRED_KEYS = ("format", "epoch", "step", "model", "rng")

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or does not fit the model it is loaded into."""


class _Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state_dict: Any, /) -> Any: ...


@dataclass(frozen=True)
class ResumeState:
    """What a resumed run continues from; ``epoch`` counts *completed* epochs."""

    epoch: int
    step: int
    path: Path
    extras: dict[str, Any] = field(default_factory=dict)


def checkpoint_name(epoch: int, step: int) -> str:
    """File name that sorts by step, e.g. ``ckpt-e00003-s000000120.pt``."""
    if epoch < 0 or step < 0:
        raise ValueError(f"epoch and step must be >= 0, got epoch={epoch} step={step}")
    return f"ckpt-e{epoch:05d}-s{step:09d}.pt"


def parse_checkpoint_name(name: str) -> tuple[int, int] | None:
    """``(epoch, step)`` from a checkpoint file name, or None for any other file."""
    match = _NAME_RE.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's module inside DDP/DataParallel or ``torch.compile`` wrappers."""
    while True:
        inner = None
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            inner = model.module
        else:
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def _check_extras(value: Any, where: str = "extras") -> None:
    """Refuse values ``torch.load(weights_only=True)`` could not read back later."""
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_extras(item, f"{where}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; use str or int")
            _check_extras(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; checkpoint extras may hold only None, bool, "
        "int, float, str, torch.Tensor and lists/tuples/dicts of those"
    )


def _validate_payload(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise ValueError(f"not a checkpoint (top level is {type(payload).__name__})")
    missing = [k for k in _REQUIRED_KEYS if k not in payload]
    if missing:
        raise ValueError(f"not a checkpoint (missing {', '.join(missing)})")
    if payload["format"] != CHECKPOINT_FORMAT:
        raise ValueError(f"unsupported checkpoint format {payload['format']!r}")
    return payload


class Checkpointer:
    """Save and resume training state in ``directory`` (default ``$GANTRY_CHECKPOINT_DIR``).

    Without a directory every call is a no-op (logged once), so a script runs unchanged
    where no checkpoint volume is mounted.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        keep_last: int = 3,
        context: DistributedContext | None = None,
    ) -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        ensure_configured()
        if directory is None:
            directory = os.environ.get(CHECKPOINT_DIR_ENV) or None
        self.directory: Path | None = Path(directory) if directory is not None else None
        self.keep_last = keep_last
        self.context = context or init_distributed()
        if self.directory is None:
            log.warning("%s is not set: checkpointing is disabled", CHECKPOINT_DIR_ENV)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first (by step, then epoch)."""
        if self.directory is None or not self.directory.is_dir():
            return []
        found: list[tuple[int, int, Path]] = []
        for entry in self.directory.iterdir():
            parsed = parse_checkpoint_name(entry.name)
            if parsed is not None and entry.is_file():
                found.append((parsed[1], parsed[0], entry))
        return [path for _, _, path in sorted(found)]

    # -- saving ---------------------------------------------------------------

    def save(
        self,
        model: nn.Module,
        optimizer: _Stateful | None = None,
        scheduler: _Stateful | None = None,
        *,
        epoch: int,
        step: int,
        extras: Mapping[str, Any] | None = None,
    ) -> Path | None:
        """Write a checkpoint after ``epoch`` completed epochs and ``step`` global steps.

        Every rank must call it (RNG states are gathered); rank 0 writes, then all
        ranks wait until the file is in place. Returns its path, or None when disabled.
        """
        if self.directory is None:
            return None
        ctx = self.context
        rng_states: list[Any] = [capture_rng_state()]
        if ctx.distributed:
            gathered: list[Any] = [None] * ctx.world_size
            dist.all_gather_object(gathered, rng_states[0])
            rng_states = gathered
        path = self.directory / checkpoint_name(epoch, step)
        error: str | None = None
        if ctx.is_main:
            try:
                self._write(path, model, optimizer, scheduler, epoch, step, extras, rng_states)
            except Exception as exc:  # reported to every rank below
                error = f"could not write checkpoint {path}: {exc}"
        if ctx.distributed:
            outcome: list[str | None] = [error]
            dist.broadcast_object_list(outcome, src=0)
            error = outcome[0]
        if error is not None:
            raise CheckpointError(error)
        return path

    def _write(
        self,
        path: Path,
        model: nn.Module,
        optimizer: _Stateful | None,
        scheduler: _Stateful | None,
        epoch: int,
        step: int,
        extras: Mapping[str, Any] | None,
        rng_states: list[Any],
    ) -> None:
        extras_dict = dict(extras or {})
        _check_extras(extras_dict)
        payload = {
            "format": CHECKPOINT_FORMAT,
            "epoch": int(epoch),
            "step": int(step),
            "world_size": self.context.world_size,
            "model": unwrap_model(model).state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_states,
            "extras": extras_dict,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path.parent, "ckpt-")
        atomic_write(path, lambda fh: torch.save(payload, fh))
        for old in self.checkpoints()[: -self.keep_last]:
            old.unlink(missing_ok=True)
        log.info("saved checkpoint %s", path.name)

    # -- resuming -------------------------------------------------------------

    def resume(
        self,
        model: nn.Module,
        optimizer: _Stateful | None = None,
        scheduler: _Stateful | None = None,
    ) -> ResumeState | None:
        """Load the newest complete checkpoint into the given objects and restore RNGs.

        Unreadable files (truncated, corrupt, foreign) are skipped with a warning.
        Returns None when there is nothing to resume from. Every rank must call it.
        """
        if self.directory is None:
            return None
        ctx = self.context
        blob: bytes | None = None
        payload: dict[str, Any] | None = None
        chosen: Path | None = None
        if ctx.is_main:
            chosen, blob, payload = self._newest_loadable()
        if ctx.distributed:
            shared: list[Any] = [(str(chosen) if chosen else None, blob)]
            dist.broadcast_object_list(shared, src=0)
            name, blob = shared[0]
            chosen = Path(name) if name else None
            if not ctx.is_main and blob is not None:
                payload = self._load(io.BytesIO(blob))
        if payload is None or chosen is None:
            return None
        self._apply(chosen, payload, model, optimizer, scheduler)
        log.info(
            "resumed from %s (epoch %d, step %d)", chosen.name, payload["epoch"], payload["step"]
        )
        return ResumeState(
            epoch=int(payload["epoch"]),
            step=int(payload["step"]),
            path=chosen,
            extras=dict(payload.get("extras") or {}),
        )

    def _load(self, source: Path | io.BytesIO) -> dict[str, Any]:
        loaded = torch.load(source, map_location=self.context.device, weights_only=True)
        return _validate_payload(loaded)

    def _newest_loadable(self) -> tuple[Path | None, bytes | None, dict[str, Any] | None]:
        for path in reversed(self.checkpoints()):
            try:
                blob = path.read_bytes()
                payload = self._load(io.BytesIO(blob))
            except Exception as exc:
                log.warning("skipping unreadable checkpoint %s: %s", path.name, exc)
                continue
            return path, blob, payload
        return None, None, None

    def _apply(
        self,
        path: Path,
        payload: dict[str, Any],
        model: nn.Module,
        optimizer: _Stateful | None,
        scheduler: _Stateful | None,
    ) -> None:
        try:
            unwrap_model(model).load_state_dict(payload["model"])
            if optimizer is not None and payload.get("optimizer") is not None:
                optimizer.load_state_dict(payload["optimizer"])
            if scheduler is not None and payload.get("scheduler") is not None:
                scheduler.load_state_dict(payload["scheduler"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(
                f"checkpoint {path.name} does not fit this model/optimizer: {exc}"
            ) from exc
        states = payload["rng"]
        if states:
            rank = self.context.rank
            restore_rng_state(states[rank] if rank < len(states) else states[0])
