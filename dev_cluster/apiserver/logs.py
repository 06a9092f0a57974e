"""Where container logs live, shared by the node agent (writer) and ``pods/log`` (reader).

Layout under the server's logs root (``APIServer.logs_root``; ``<state_dir>/logs`` when the
server has a state directory, a temporary directory otherwise)::

    <root>/<namespace>/<pod>/<container>/<restartCount>.log

The agent appends a container's output to the file of its current restart count (0 for
the first run); ``?previous=true`` reads ``restartCount - 1``. Lines are written as the
container prints them; the server adds nothing.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path


def log_path(root: Path, namespace: str, pod: str, container: str, restart: int) -> Path:
    """The file holding one run (``restart``-th restart) of one container."""
    return Path(root) / namespace / pod / container / f"{int(restart)}.log"


def tail(data: bytes, lines: int | None) -> bytes:
    """The last ``lines`` lines of ``data`` (all of it when ``lines`` is None)."""
    if lines is None:
        return data
    if lines <= 0:
        return b""
    kept: deque[bytes] = deque(data.splitlines(keepends=True), maxlen=lines)
    return b"".join(kept)
