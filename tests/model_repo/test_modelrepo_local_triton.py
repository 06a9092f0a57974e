"""dev_cluster.local_triton: where the local tritonserver lives and how it must be run."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from dev_cluster import local_triton
from tests.conftest import require_triton


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tools = tmp_path / "tools"
    server = tools / "triton" / "bin" / "tritonserver"
    server.parent.mkdir(parents=True)
    server.write_text("#!/bin/sh\n")
    server.chmod(server.stat().st_mode | stat.S_IXUSR)
    backend = tools / "triton" / "backends" / "python"
    backend.mkdir(parents=True)
    (backend / "libtriton_python.so").write_bytes(b"")
    (tools / "triton" / "lib").mkdir()
    (tools / "triton" / "lib" / "libtritonserver-0.so").write_bytes(b"")
    stub_bin = tools / "stubenv" / "bin"
    stub_bin.mkdir(parents=True)
    home = tmp_path / "python" / "bin"
    (tools / "stubenv" / "pyvenv.cfg").write_text(f"home = {home}\nversion = 3.11.7\n")
    (stub_bin / "python3").write_text("#!/bin/false\n")  # not runnable: pyvenv.cfg fallback
    monkeypatch.setenv("GANTRY_TOOLS_DIR", str(tools))
    local_triton._libdir.cache_clear()
    return tools


def test_default_tools_dir_is_in_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANTRY_TOOLS_DIR", raising=False)
    assert local_triton.tools_dir() == Path(__file__).resolve().parents[2] / ".tools"


@pytest.mark.parametrize(
    "part",
    [
        "triton/bin/tritonserver",
        "triton/lib/libtritonserver-0.so",
        "triton/backends/python/libtriton_python.so",
        "stubenv/bin/python3",
    ],
)
def test_available_needs_every_part(fake_tools: Path, part: str) -> None:
    assert local_triton.triton_available()
    (fake_tools / part).unlink()
    assert not local_triton.triton_available()


def test_environment_puts_the_stub_python_first(fake_tools: Path, tmp_path: Path) -> None:
    env = local_triton.triton_environment(
        {"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/opt/x", "HOME": "/root"}
    )
    assert env["PATH"].split(os.pathsep) == [str(fake_tools / "stubenv" / "bin"), "/usr/bin"]
    assert env["LD_LIBRARY_PATH"].split(os.pathsep) == [
        str(tmp_path / "python" / "lib"),
        str(fake_tools / "triton" / "lib"),
        "/opt/x",
    ]
    assert env["HOME"] == "/root"


def test_environment_uses_the_real_interpreters_libdir() -> None:
    require_triton()
    libdir = Path(local_triton.triton_environment({})["LD_LIBRARY_PATH"].split(os.pathsep)[0])
    assert any(libdir.glob("libpython3*")), f"{libdir} holds no libpython"


def test_argv_adds_the_backend_directory_unless_given(fake_tools: Path) -> None:
    server = str(fake_tools / "triton" / "bin" / "tritonserver")
    assert local_triton.tritonserver_argv(["--model-repository=/r"]) == [
        server,
        "--model-repository=/r",
        f"--backend-directory={fake_tools / 'triton' / 'backends'}",
    ]
    given = ["--backend-directory=/b", "--model-repository=/r"]
    assert local_triton.tritonserver_argv(given) == [server, *given]
    assert local_triton.tritonserver_argv(["--backend-directory", "/b"]) == [
        server,
        "--backend-directory",
        "/b",
    ]
