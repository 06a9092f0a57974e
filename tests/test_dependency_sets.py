"""Each dependency group is enough for the code that runs with it (slow: real pip installs).

Gantry is built into a wheel from a copy of the source tree, then installed into fresh
virtual environments from the package index, one per group:

- `operator`: `python -m gantry.controller --help` runs, every handler module loads, every
  module of the package `gantry` imports, and none of the CLI's or the training stack's
  heavy dependencies came along;
- each console script in `[project.scripts]` runs `--help`, and so does every one of its
  sub-commands, in an environment with only that script's group (`gantry`: `cli`), where
  every module of its package imports as well.

The tests skip only when pip cannot reach the package index, and say so.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
import venv
from collections.abc import Sequence
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("operator", "gantry_cli", "training_jobs", "model_repo", "dev_cluster")
# The group each console script ships in; a new script must be added here.
SCRIPT_EXTRAS = {"gantry": "cli"}
# Packages the controller image must not carry (the CLI's, the training and optimizer
# stacks'): their presence means the operator group grew beyond the controller.
NOT_IN_OPERATOR = ("tritonclient", "matplotlib", "rich", "numpy", "torch", "onnx")
PIP_NETWORK = ("--timeout", "60", "--retries", "5", "--disable-pip-version-check")


def _run(argv: Sequence[str | Path], *, timeout: float, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(str(a) for a in argv)} exited {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result.stdout


@pytest.fixture(scope="module")
def index_reachable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip the module when pip cannot download from the package index."""
    probe = tmp_path_factory.mktemp("probe")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-cache-dir",
            *PIP_NETWORK,
            "--dest",
            str(probe),
            "pyyaml",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.skip(f"pip cannot reach the package index: {last}")


@pytest.fixture(scope="module")
def wheel(index_reachable: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of Gantry built from a copy of the sources (the tree itself stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".mypy_cache")
    for name in SOURCES:
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = tmp_path_factory.mktemp("wheels")
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *PIP_NETWORK, "-w", out, src],
        timeout=900,
    )
    (built,) = out.glob("gantry-*.whl")
    return built


def _venv_with(wheel: Path, extra: str, where: Path) -> Path:
    """A fresh virtual environment with `gantry[extra]` from the index; its bin/."""
    venv.EnvBuilder(with_pip=True, clear=True).create(where)
    python = where / "bin" / "python"
    _run(
        [python, "-m", "pip", "install", "-q", *PIP_NETWORK, f"{wheel}[{extra}]"],
        timeout=1800,
    )
    return where / "bin"


def _import_all(python: Path, package: str, cwd: Path) -> list[str]:
    """Import every module of `package` in that environment; the names imported."""
    script = (
        "import importlib, json, pkgutil\n"
        f"root = importlib.import_module({package!r})\n"
        "names = [root.__name__]\n"
        "for info in pkgutil.walk_packages(root.__path__, root.__name__ + '.'):\n"
        "    if info.name.rsplit('.', 1)[-1] == '__main__':\n"
        "        continue\n"
        "    importlib.import_module(info.name)\n"
        "    names.append(info.name)\n"
        "print(json.dumps(names))\n"
    )
    names: list[str] = json.loads(_run([python, "-c", script], timeout=300, cwd=cwd))
    return names


def test_the_operator_group_runs_the_controller(wheel: Path, tmp_path: Path) -> None:
    bin_dir = _venv_with(wheel, "operator", tmp_path / "venv")
    python = bin_dir / "python"
    # Outside the source tree, so only the installed wheel is importable.
    usage = _run([python, "-m", "gantry.controller", "--help"], timeout=300, cwd=tmp_path)
    assert "usage: python -m gantry.controller" in usage
    loaded = _run(
        [python, "-c", "from gantry.controller.handlers import load_handlers as l; print(l())"],
        timeout=300,
        cwd=tmp_path,
    )
    assert "gantry.trainingjob.handlers" in loaded and "gantry.autoscaler.handlers" in loaded
    modules = _import_all(python, "gantry", tmp_path)
    assert "gantry.controller.settings" in modules and "gantry.crdgen" in modules
    present = _run(
        [
            python,
            "-c",
            "import importlib.util, sys; "
            "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))",
            *NOT_IN_OPERATOR,
        ],
        timeout=120,
        cwd=tmp_path,
    ).split()
    assert present == [], f"the operator group pulls in {present}"


def _command_paths(python: Path, cwd: Path) -> list[list[str]]:
    """Every sub-command path of the `gantry` click group, e.g. ['bench', 'load']."""
    script = (
        "import json, click\n"
        "from gantry_cli.main import main\n"
        "def walk(group, prefix):\n"
        "    for name, command in sorted(group.commands.items()):\n"
        "        yield prefix + [name]\n"
        "        if isinstance(command, click.Group):\n"
        "            yield from walk(command, prefix + [name])\n"
        "print(json.dumps(list(walk(main, []))))\n"
    )
    paths: list[list[str]] = json.loads(_run([python, "-c", script], timeout=300, cwd=cwd))
    return paths


def test_every_console_script_runs_in_its_own_group(wheel: Path, tmp_path: Path) -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) == set(SCRIPT_EXTRAS), "name the group of every console script"
    for script, extra in SCRIPT_EXTRAS.items():
        bin_dir = _venv_with(wheel, extra, tmp_path / f"venv-{extra}")
        executable = bin_dir / script
        assert "Usage:" in _run([executable, "--help"], timeout=300, cwd=tmp_path)
        package = scripts[script].split(":")[0].split(".")[0]
        _import_all(bin_dir / "python", package, tmp_path)
        if script == "gantry":
            paths = _command_paths(bin_dir / "python", tmp_path)
            assert ["bench", "load"] in paths and ["predict"] in paths and ["dev", "up"] in paths
            for path in paths:
                assert "Usage:" in _run([executable, *path, "--help"], timeout=300, cwd=tmp_path)
