"""Handler loading: every reconciler module is imported, and a missing one stops startup."""

from __future__ import annotations

from pathlib import Path

import pytest

from gantry.controller.handlers import HANDLER_MODULES, load_handlers


def test_every_handler_module_loads() -> None:
    assert load_handlers() == list(HANDLER_MODULES)


def test_a_missing_or_broken_handler_module_stops_startup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "gantry_fake_ok.py").write_text("LOADED = True\n")
    (tmp_path / "gantry_fake_broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_handlers(("gantry_fake_ok",)) == ["gantry_fake_ok"]
    with pytest.raises(ModuleNotFoundError, match="gantry_fake_absent"):
        load_handlers(("gantry_fake_ok", "gantry_fake_absent"))
    with pytest.raises(ModuleNotFoundError, match=r"gantry\.nothing"):
        load_handlers(("gantry.nothing.here",))
    with pytest.raises(RuntimeError, match="broken on purpose"):
        load_handlers(("gantry_fake_broken",))
