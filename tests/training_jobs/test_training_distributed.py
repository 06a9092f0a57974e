"""init_distributed without and with torchrun, environment checks, rank-aware logging."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from training_jobs import get_logger, init_distributed, shutdown


def test_single_process_without_torchrun_has_no_process_group() -> None:
    with init_distributed(env={}) as ctx:
        assert (ctx.rank, ctx.local_rank, ctx.world_size) == (0, 0, 1)
        assert ctx.backend is None and not ctx.distributed and ctx.is_main
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert ctx.device.type == expected
        ctx.barrier()  # a no-op, not an error
    assert not dist.is_initialized()
    shutdown()  # idempotent


def test_the_context_is_frozen() -> None:
    ctx = init_distributed(env={})
    with pytest.raises(AttributeError):
        ctx.rank = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RANK": "x", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "RANK='x'"),
        ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "h", "MASTER_PORT": "1"}, "inconsistent"),
        ({"LOCAL_RANK": "one"}, "LOCAL_RANK='one' is not an integer"),
    ],
)
def test_a_broken_environment_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        init_distributed(env=env)


def test_shutdown_runs_on_exceptions(tmp_path: object) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    with pytest.raises(KeyError), init_distributed(env=env) as ctx:
        assert ctx.distributed and ctx.backend == "gloo"
        raise KeyError("boom")
    assert not dist.is_initialized()


def test_rank_zero_logs_info_with_its_rank(capsys: pytest.CaptureFixture[str]) -> None:
    log = get_logger(f"t-{uuid.uuid4().hex}")
    log.info("hello")
    assert "[rank 0] INFO" in capsys.readouterr().err and log.level == logging.INFO


def test_other_ranks_log_only_warnings_by_default(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RANK", "3")
    name = f"t-{uuid.uuid4().hex}"
    log = get_logger(name)
    log.info("chatty")
    log.warning("careful")
    err = capsys.readouterr().err
    assert "chatty" not in err and "[rank 3] WARNING" in err and "careful" in err
    get_logger(name, all_ranks=True).info("now heard")
    err = capsys.readouterr().err
    assert "[rank 3] INFO" in err and err.count("now heard") == 1  # one handler, no duplicates


LEAVE_TOGETHER = """
import sys, time
from training_jobs import init_distributed
log = sys.argv[1]
with init_distributed() as ctx:
    if ctx.rank == 0:
        time.sleep(2)  # e.g. exporting the model while rank 1 is already done
        with open(log, "a") as fh:
            fh.write("rank0 finished its work\\n")
with open(log, "a") as fh:
    fh.write(f"rank{ctx.rank} left\\n")
"""


@pytest.mark.slow
def test_ranks_leave_the_group_together(tmp_path: Path) -> None:
    """No rank tears the process group down while another still works in it."""
    script = tmp_path / "leave.py"
    script.write_text(LEAVE_TOGETHER)
    log = tmp_path / "order.log"
    torchrun = Path(sys.executable).parent / "torchrun"
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nnodes=1", "--nproc-per-node=2", str(script), str(log)],
        capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    lines = log.read_text().splitlines()
    assert lines[0] == "rank0 finished its work", lines
    assert sorted(lines[1:]) == ["rank0 left", "rank1 left"]


def test_exit_process_flushes_output_and_keeps_the_exit_code(tmp_path: Path) -> None:
    script = (
        "import logging, sys\n"
        "from training_jobs import exit_process, get_logger\n"
        "get_logger('t').warning('logged before exit')\n"
        "print('printed before exit', end='')\n"
        "exit_process(3)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert result.returncode == 3
    assert result.stdout == "printed before exit"
    assert "logged before exit" in result.stderr
