"""Atomic file writes: a reader (or a restarted pod) never sees half a file.

Each write goes to a temporary name in the destination directory (so the final
``os.replace`` stays on one filesystem and is atomic), is fsynced, then renamed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TMP_MARKER = ".tmp-"


def temp_path_for(final: Path) -> Path:
    """A hidden sibling of ``final`` unique to this process."""
    return final.with_name(f".{final.name}{TMP_MARKER}{os.getpid()}")


def fsync_dir(directory: Path) -> None:
    """Persist a rename: the directory entry lives in the directory's inode."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems (e.g. certain network mounts) refuse fsync on a directory
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path to fill; on success it is fsynced and renamed to ``final``.

    For writers that insist on a path (``torch.onnx.export``, ``torch.jit.save``).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(final)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        fsync_dir(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(final: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``final`` atomically through ``write(file_object)``."""
    with atomic_path(final) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()


def atomic_write_bytes(final: Path, data: bytes) -> None:
    atomic_write(final, lambda fh: fh.write(data))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temps(directory: Path, prefix: str) -> None:
    """Delete temporaries left behind by a process that was killed mid-write."""
    if not directory.is_dir():
        return
    for entry in directory.glob(f".{prefix}*{TMP_MARKER}*"):
        entry.unlink(missing_ok=True)
