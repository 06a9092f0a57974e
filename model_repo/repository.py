"""Writing a Triton model repository: `<repo>/<model>/config.pbtxt` + numbered versions.

Versions follow content: the same source model built the same way (same model digest and
engine cache key) keeps its version, anything new gets the next number, and
`versions.json` remembers which digest each number holds. Files are staged and renamed
into place so a Triton polling the repository never sees half a version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from model_repo.errors import ModelError
from model_repo.signature import Signature
from model_repo.triton_config import MODEL_FILES, ServingOptions, parse_config, render_config

VERSIONS_FILE = "versions.json"


@dataclass(frozen=True)
class PublishedModel:
    name: str
    version: int
    model_dir: Path
    reused: bool  # the version already held this exact build


def choose_version(
    known: Mapping[int, Mapping[str, Any]],
    existing_dirs: set[int],
    model_digest: str,
    build_key: str,
) -> tuple[int, bool]:
    """Pure: (version, reused) — keep the latest version if it holds this build, else next.

    Only the latest version is reused: Triton serves the highest number (latest 1), so
    going back to an older build must become a new, higher version.
    """
    latest = max([0, *known, *existing_dirs])
    info = known.get(latest, {})
    if (
        latest in existing_dirs
        and info.get("modelDigest") == model_digest
        and info.get("buildKey") == build_key
    ):
        return latest, True
    return latest + 1, False


def python_backend_source() -> Path:
    """The packaged Python-backend model.py (data file, runs inside Triton's stub)."""
    return Path(str(resources.files("model_repo") / "python_backend" / "model.py"))


def _read_versions(model_dir: Path) -> dict[int, dict[str, Any]]:
    path = model_dir / VERSIONS_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {int(k): dict(v) for k, v in raw.get("versions", {}).items()}
    except (ValueError, AttributeError, TypeError) as err:
        raise ModelError(f"{path} is damaged: {err}", "CorruptModel") from err


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _stage_version(model_dir: Path, backend: str, artifact: Path) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    if backend == "python":
        shutil.copyfile(python_backend_source(), staging / "model.py")
        shutil.copyfile(artifact, staging / "model.onnx")
    else:
        shutil.copyfile(artifact, staging / MODEL_FILES[backend])
    return staging


def publish(
    repository: Path,
    sig: Signature,
    opts: ServingOptions,
    artifact: Path,
    model_digest: str,
    build_key: str,
    extra: Mapping[str, Any] | None = None,
) -> PublishedModel:
    """Place `artifact` as a version of `sig.name` and (re)write its config.pbtxt."""
    config_text = render_config(sig, opts)
    model_dir = repository / sig.name
    model_dir.mkdir(parents=True, exist_ok=True)
    known = _read_versions(model_dir)
    existing = {int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()}
    version, reused = choose_version(known, existing, model_digest, build_key)
    if not reused:
        staging = _stage_version(model_dir, opts.backend, artifact)
        target = model_dir / str(version)
        if target.exists():  # a stray directory without a versions.json record
            shutil.rmtree(target)
        os.rename(staging, target)
        known[version] = {"modelDigest": model_digest, "buildKey": build_key, **(extra or {})}
        versions = {"versions": {str(k): v for k, v in sorted(known.items())}}
        _write_atomic(model_dir / VERSIONS_FILE, json.dumps(versions, indent=2))
    _write_atomic(model_dir / "config.pbtxt", config_text)
    parse_config((model_dir / "config.pbtxt").read_text())
    return PublishedModel(sig.name, version, model_dir, reused)
