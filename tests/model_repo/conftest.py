"""The model_repo tests' fixtures: a digits export shared by the session, and a private
copy of it. The models themselves are built by model_testkit.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.model_repo.model_testkit import export_digits_cnn


@pytest.fixture(scope="session")
def digits_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported digits CNN with calibration samples and metadata.json (read-only!)."""
    return export_digits_cnn(tmp_path_factory.mktemp("export") / "digits")


@pytest.fixture
def digits_dir(digits_export: Path, tmp_path: Path) -> Path:
    """A private copy of the export a test may modify."""
    return Path(shutil.copytree(digits_export, tmp_path / "model"))
