"""How a container's image and command become a host command.

Images are never pulled: the dev node runs each container's command on the host.
The first word of the command picks what runs:

| command[0]                | runs on the host                                              |
| ------------------------- | ------------------------------------------------------------- |
| `tritonserver`            | `dev_cluster.local_triton.tritonserver_argv(rest)` with        |
|                           | `triton_environment(env)` (the local Triton 2.51 build)        |
| `python`, `python3`       | the Gantry virtual environment's interpreter                   |
| `torchrun`, `gantry`, ... | that venv's `bin/` entry point when it exists there            |
| anything else             | as written, found on PATH (venv `bin/` first, then the host's) |

When a container has no `command`, the image's usual entrypoint is assumed from the
image name: `*tritonserver*` → `tritonserver`, `python*` / `*pytorch*` → `python`,
anything else → the first of `args` (or a clear error when there are none).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

VENV_BIN = Path(sys.executable).parent

IMAGE_ENTRYPOINTS: tuple[tuple[str, str], ...] = (
    ("tritonserver", "tritonserver"),
    ("pytorch", "python"),
    ("python", "python"),
)


class ImageError(Exception):
    """No host command can be derived for the container."""


def entrypoint_for(image: str) -> str | None:
    name = image.rsplit("/", 1)[-1].lower()
    for needle, entry in IMAGE_ENTRYPOINTS:
        if needle in name:
            return entry
    return None


def host_command(
    image: str, argv: Sequence[str], env: Mapping[str, str]
) -> tuple[list[str], dict[str, str]]:
    """(argv, env) to run on the host for a container's image and expanded command."""
    words = list(argv)
    if not words:
        raise ImageError(f"container image {image!r} has no command and no args to run")
    head = os.path.basename(words[0])
    out_env = dict(env)
    if head == "tritonserver":
        from dev_cluster.local_triton import triton_environment, tritonserver_argv

        return tritonserver_argv(words[1:]), triton_environment(out_env)
    if head in ("python", "python3"):
        return [sys.executable, *words[1:]], out_env
    if "/" not in words[0] and (VENV_BIN / words[0]).exists():
        return [str(VENV_BIN / words[0]), *words[1:]], out_env
    return words, out_env


def with_entrypoint(image: str, command: Sequence[str], args: Sequence[str]) -> list[str]:
    """The full argv: command+args, or the image's assumed entrypoint + args."""
    if command:
        return [*command, *args]
    entry = entrypoint_for(image)
    if entry is not None:
        return [entry, *args]
    return list(args)
