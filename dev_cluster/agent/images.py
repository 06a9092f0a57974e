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

When a container has no `command`, the image's usual ENTRYPOINT/CMD is assumed from the
image name, as a container runtime would apply them: `*tritonserver*` has the entrypoint
`tritonserver` (args follow it); `python*` / `*pytorch*` have no entrypoint and the CMD
`python` (args replace it, as `kubectl run --image=python:3.11 -- python -c ...` expects);
anything else runs its args (or fails with a clear error when there are none).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

VENV_BIN = Path(sys.executable).parent

IMAGE_ENTRYPOINTS: tuple[tuple[str, str], ...] = (("tritonserver", "tritonserver"),)
IMAGE_DEFAULT_COMMANDS: tuple[tuple[str, str], ...] = (("pytorch", "python"), ("python", "python"))


class ImageError(Exception):
    """No host command can be derived for the container."""


def _lookup(image: str, table: tuple[tuple[str, str], ...]) -> str | None:
    name = image.rsplit("/", 1)[-1].lower()
    for needle, entry in table:
        if needle in name:
            return entry
    return None


def entrypoint_for(image: str) -> str | None:
    """The image's ENTRYPOINT (args are appended to it)."""
    return _lookup(image, IMAGE_ENTRYPOINTS)


def default_command_for(image: str) -> str | None:
    """The image's CMD (used only when the container has neither command nor args)."""
    return _lookup(image, IMAGE_DEFAULT_COMMANDS)


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
    if args:
        return list(args)
    default = default_command_for(image)
    return [default] if default else []
