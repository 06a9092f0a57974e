"""Helpers for the chart tests: run the real `helm`, pick rendered documents."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gantry"
RELEASE = "gantry"
NAMESPACE = "gantry-system"

# render(values=None, *, hooks=True) -> the rendered documents
Render = Callable[..., list[dict[str, Any]]]


def helm_binary() -> str | None:
    local = ROOT / ".tools" / "bin" / "helm"
    if local.is_file():
        return str(local)
    return shutil.which("helm")


def run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120, check=False)


def template(
    helm: str, values_file: Path | None = None, *, hooks: bool = True, namespace: str = NAMESPACE
) -> subprocess.CompletedProcess[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    if values_file is not None:
        args += ["--values", str(values_file)]
    if not hooks:
        args.append("--no-hooks")
    return run_helm(helm, *args)


def write_values(path: Path, values: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(dict(values)), encoding="utf-8")
    return path


def documents(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]
