"""The layer contracts in pyproject.toml's [tool.importlinter], checked by `lint-imports`.

The real tree keeps every contract; a copy of it with one forbidden import added breaks
exactly the contract that forbids it (so the contracts are live, not vacuous). Import-linter
sees the imports a module writes, not the package `__init__` modules Python runs on the
way, so the pure reconcilers are also imported in a fresh interpreter here and must not
load kopf or the Kubernetes client at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG: dict[str, Any] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"][
    "importlinter"
]
CONTRACTS = {c["name"]: c for c in CONFIG["contracts"]}
PURE = next(c for c in CONFIG["contracts"] if "gantry.autoscaler.decision" in c["source_modules"])
# Where each root package lives in the tree.
ROOTS = {"gantry": Path("operator") / "gantry"} | {
    name: Path(name) for name in CONFIG["root_packages"] if name != "gantry"
}


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "lint-imports"
    if not executable.exists():
        pytest.fail(f"{executable} is missing: install the dev extra (import-linter)")
    env = {**os.environ, "PYTHONPATH": f"{root / 'operator'}{os.pathsep}{root}"}
    return subprocess.run(
        [str(executable), "--config", str(root / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=root,
        env=env,
    )


def _squeezed(text: str) -> str:
    """`text` without whitespace: lint-imports wraps and pads its report."""
    return "".join(text.split())


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS:
        assert _squeezed(f"{name} KEPT") in _squeezed(result.stdout)


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "model_repo/optimize.py",
            "from gantry.api.common import API_VERSION",
            "Training runtime and optimizer never import operator or CLI",
        ),
        (
            "operator/gantry/crdgen.py",
            "from gantry_cli.loadgen.profile import parse_profile",
            "The operator never imports the dev cluster, the CLI or bench",
        ),
        (
            "operator/gantry/autoscaler/decision.py",
            "from gantry.k8s.client import KubeClient",
            "Pure reconcilers never import kopf or a Kubernetes client",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    assert contract in CONTRACTS
    shutil.copy2(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for path in ROOTS.values():
        shutil.copytree(REPO / path, tmp_path / path, ignore=ignore)
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # a forbidden import, on purpose\n")
    result = lint_imports(tmp_path)
    output = _squeezed(result.stdout)
    assert result.returncode != 0, result.stdout
    assert _squeezed(f"{contract} BROKEN") in output
    assert _squeezed("Contracts: 2 kept, 1 broken.") in output


def _loaded_clients(module: str, *, skip_k8s_init: bool) -> list[str]:
    """Which forbidden modules a fresh interpreter holds after importing `module`.

    With `skip_k8s_init`, the package gantry.k8s is registered without running its
    `__init__`, so only what `module` and its own imports load counts.
    """
    script = (
        "import importlib, importlib.util, json, sys, types\n"
        f"if {skip_k8s_init!r}:\n"
        "    spec = importlib.util.find_spec('gantry.k8s')\n"
        "    package = types.ModuleType('gantry.k8s')\n"
        "    package.__path__ = list(spec.submodule_search_locations)\n"
        "    sys.modules['gantry.k8s'] = package\n"
        f"importlib.import_module({module!r})\n"
        f"print(json.dumps([m for m in {PURE['forbidden_modules']!r} if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd=REPO,
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize("module", PURE["source_modules"])
def test_a_pure_reconciler_loads_no_kubernetes_client(module: str) -> None:
    assert _loaded_clients(module, skip_k8s_init=True) == [], f"importing {module} loads them"


def test_the_kubernetes_kit_package_loads_no_client() -> None:
    assert _loaded_clients("gantry.k8s.conditions", skip_k8s_init=False) == []
