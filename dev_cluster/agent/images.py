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

Since nothing is pulled, every image is "present" — except one whose registry cannot
exist: a host under a top-level domain that RFC 2606 / RFC 6761 reserve so that it never
resolves (`.invalid`, `.test`, `.example`; e.g. `registry.invalid/trainer:1`). The agent
fails such an image's pull as a kubelet fails a pull from a registry that is not there
(`pull_error` words the runtime's error): the container's `state.waiting` shows
`ErrImagePull` with that error, then `ImagePullBackOff` with `Back-off pulling image "…"`
while the back-off runs (10 s, doubling to 300 s, as the kubelet's), and again; Events
`Pulling`, `Failed` (`Failed to pull image "…": …`, `Error: ErrImagePull`), `BackOff` and
`Failed` (`Error: ImagePullBackOff`) tell the story; no container of the pod starts and
the pod stays Pending until it is deleted. Unlike a kubelet, the pod's other containers
do not start either.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

VENV_BIN = Path(sys.executable).parent

IMAGE_ENTRYPOINTS: tuple[tuple[str, str], ...] = (("tritonserver", "tritonserver"),)
IMAGE_DEFAULT_COMMANDS: tuple[tuple[str, str], ...] = (("pytorch", "python"), ("python", "python"))


# Top-level domains that never resolve (RFC 2606 §2, RFC 6761 §6): no registry lives there.
UNREACHABLE_TLDS = frozenset({"invalid", "test", "example"})


class ImageError(Exception):
    """No host command can be derived for the container."""


def registry_host(image: str) -> str | None:
    """The registry host of an image reference (no port), or None for Docker Hub.

    As a container runtime reads a reference: the first path component names a registry
    when it holds a `.` or a `:` or is `localhost`; `trainer:1` and `library/python` are
    Docker Hub's.
    """
    first, slash, _ = image.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return None
    host = first.lower()
    if host.startswith("["):  # an IPv6 literal, [::1]:5000
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]


def pull_error(image: str) -> str | None:
    """Why `image` cannot be pulled, worded as containerd reports a registry host that
    does not resolve; None for every image the dev node treats as present."""
    host = registry_host(image)
    if host is None or host.rstrip(".").rsplit(".", 1)[-1] not in UNREACHABLE_TLDS:
        return None
    return (
        f'failed to pull and unpack image "{image}": failed to resolve reference '
        f'"{image}": dial tcp: lookup {host}: no such host'
    )


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
