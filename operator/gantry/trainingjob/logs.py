"""Worker log tails for failure messages, without torchrun's own report (pure).

When a training process fails, torchrun prints its own traceback and a "Root Cause"
block after the user's output; in a 20-line tail that report would hide the lines that
explain the failure. We drop it and keep the exit code it names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FETCH_LINES = 80
KEEP_LINES = 20

_LAUNCHER_LOG = re.compile(r"^[EWID]\d{4} \d\d:\d\d:\d\d\.\d+ +\d+ torch/distributed/")
_CHILD_EXIT = re.compile(r"failed \(exitcode: (-?\d+)\) local_rank: (\d+)")
_LAUNCHER_FRAMES = ("bin/torchrun", "torch/distributed/run.py", "torch/distributed/launcher")


@dataclass(frozen=True)
class LogTail:
    lines: list[str]
    child_exit_code: int | None = None
    local_rank: int | None = None


def _is_launcher_traceback(lines: list[str], start: int) -> bool:
    window = "\n".join(lines[start : start + 6])
    return any(frame in window for frame in _LAUNCHER_FRAMES)


def worker_log_tail(text: str, keep: int = KEEP_LINES) -> LogTail:
    """The last `keep` meaningful lines of a worker's log and the failing child's exit code."""
    lines = text.splitlines()
    exit_code: int | None = None
    local_rank: int | None = None
    kept: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("Traceback (most recent call last):") and _is_launcher_traceback(
            lines, index
        ):
            break  # torchrun's traceback and report run to the end of the log
        if _LAUNCHER_LOG.match(line):
            found = _CHILD_EXIT.search(line)
            if found and exit_code is None:
                exit_code, local_rank = int(found.group(1)), int(found.group(2))
        elif line.strip():
            kept.append(line.rstrip())
        index += 1
    return LogTail(kept[-keep:], exit_code, local_rank)
