"""The dev cluster's local stand-in for the Triton image: tritonserver under `.tools/`.

`scripts/install-tools.sh` unpacks tritonserver 2.51 with its Python backend and creates
the backend's own Python environment (`.tools/stubenv`: numpy<2 + onnxruntime). The stub
takes its packages from the first `python3` on PATH and must load the libpython of that
same interpreter, hence the environment below.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

_REPO_ROOT = Path(__file__).resolve().parents[1]


def tools_dir() -> Path:
    """`$GANTRY_TOOLS_DIR`, or `<repo root>/.tools`."""
    configured = os.environ.get("GANTRY_TOOLS_DIR")
    return Path(configured) if configured else _REPO_ROOT / ".tools"


def _server(tools: Path) -> Path:
    return tools / "triton" / "bin" / "tritonserver"


def _stub_python(tools: Path) -> Path:
    return tools / "stubenv" / "bin" / "python3"


def triton_available() -> bool:
    """Whether tritonserver, its bundled libraries, the Python backend and the stub env
    are all present (without the libraries in triton/lib the server cannot even load)."""
    tools = tools_dir()
    server = _server(tools)
    return (
        server.is_file()
        and os.access(server, os.X_OK)
        and any((tools / "triton" / "lib").glob("libtritonserver*.so*"))
        and (tools / "triton" / "backends" / "python" / "libtriton_python.so").is_file()
        and _stub_python(tools).exists()
    )


@functools.lru_cache(maxsize=8)
def _libdir(python: Path) -> str:
    """LIBDIR of the interpreter behind the stub env (asked once, then cached)."""
    try:
        out = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        # pyvenv.cfg's `home` is the base interpreter's bin/; LIBDIR is its sibling lib/.
        cfg = python.parent.parent / "pyvenv.cfg"
        for line in cfg.read_text().splitlines() if cfg.is_file() else ():
            key, _, value = line.partition("=")
            if key.strip() == "home":
                return str(Path(value.strip()).parent / "lib")
        return ""


def triton_environment(base_env: Mapping[str, str]) -> dict[str, str]:
    """`base_env` with the stub env's bin/ first on PATH and its Python's LIBDIR first in
    LD_LIBRARY_PATH (the stub must load the libpython of the interpreter it runs)."""
    tools = tools_dir()
    env = dict(base_env)
    stub_bin = str(tools / "stubenv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in (stub_bin, env.get("PATH", "")) if p)
    # The server's bundled libraries (triton/lib) serve the Python backend and its stub,
    # whose own RPATH points into the original wheel layout.
    bundled = tools / "triton" / "lib"
    paths = [_libdir(_stub_python(tools)), str(bundled) if bundled.is_dir() else ""]
    paths.append(env.get("LD_LIBRARY_PATH", ""))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in paths if p)
    return env


def tritonserver_argv(args: Sequence[str]) -> list[str]:
    """`[<tools>/triton/bin/tritonserver, *args]`, plus the backend directory unless given."""
    tools = tools_dir()
    argv = [str(_server(tools)), *args]
    if not any(a == "--backend-directory" or a.startswith("--backend-directory=") for a in args):
        argv.append(f"--backend-directory={tools / 'triton' / 'backends'}")
    return argv


def loopback_args(repository: Path | str, http: int, grpc: int, metrics: int) -> list[str]:
    """tritonserver options serving `repository` on 127.0.0.1 only, at the given ports."""
    return [
        f"--model-repository={repository}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
        "--allow-gpu-metrics=false",
    ]
