"""Fixtures for the Helm chart tests: the real `helm` binary renders the chart."""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from chart_testkit import Render, documents, helm_binary, template, write_values


@pytest.fixture(scope="session")
def helm() -> str:
    binary = helm_binary()
    if binary is None:
        pytest.fail("helm is not installed: run `make tools` (it puts helm in .tools/bin)")
    return binary


@pytest.fixture(scope="session")
def render(helm: str, tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Render the chart with `values` merged over values.yaml; returns the documents.

    Renders are cached per values for the session (each is a `helm template` process).
    """
    cache: dict[str, list[dict[str, Any]]] = {}
    tmp: Path = tmp_path_factory.mktemp("values")

    def _render(
        values: Mapping[str, Any] | None = None, *, hooks: bool = True
    ) -> list[dict[str, Any]]:
        key = json.dumps([values or {}, hooks], sort_keys=True)
        if key not in cache:
            values_file = write_values(tmp / f"{len(cache)}.yaml", values) if values else None
            result = template(helm, values_file, hooks=hooks)
            assert result.returncode == 0, result.stderr
            cache[key] = documents(result.stdout)
        return copy.deepcopy(cache[key])

    return _render
