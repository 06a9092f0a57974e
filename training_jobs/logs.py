"""Rank-aware logging: every line says which worker wrote it, and only rank 0 chatters.

With N workers printing the same INFO line N times, the pod logs of a TrainingJob
become unreadable; other ranks therefore log WARNING and above unless asked.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from training_jobs.distributed import current_rank

__all__ = ["get_logger"]

_FORMAT = "%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s"
_HANDLER_MARK = "_gantry_rank_handler"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is *now*, so replacing it (tests, notebooks) works."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def get_logger(
    name: str = "training_jobs",
    *,
    level: int | None = None,
    all_ranks: bool = False,
) -> logging.Logger:
    """A logger whose lines carry ``[rank N]``.

    ``level`` defaults to INFO on rank 0 (or on every rank with ``all_ranks``) and
    WARNING elsewhere. Calling it again re-reads the rank, so a logger made before
    ``init_distributed`` is corrected by calling it once more afterwards.
    """
    rank = current_rank()
    logger = logging.getLogger(name)
    if level is None:
        level = logging.INFO if rank == 0 or all_ranks else logging.WARNING
    logger.setLevel(level)
    formatter = logging.Formatter(_FORMAT.format(rank=rank))
    for handler in logger.handlers:
        if getattr(handler, _HANDLER_MARK, False):
            handler.setFormatter(formatter)
            break
    else:
        handler = _StderrHandler()
        setattr(handler, _HANDLER_MARK, True)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.propagate = False
    return logger


def ensure_configured() -> None:
    """Give the package's own logger a rank-prefixed handler unless one exists already."""
    logger = logging.getLogger("training_jobs")
    if not any(getattr(h, _HANDLER_MARK, False) for h in logger.handlers):
        get_logger("training_jobs")
