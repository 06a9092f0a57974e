"""Checkpointer: atomic writes, keep-last-K, resume past corrupt files, RNG restore."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from training_jobs import Checkpointer, CheckpointError, DistributedContext, init_distributed
from training_jobs.checkpoint import checkpoint_name, parse_checkpoint_name

SINGLE = DistributedContext(
    rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None, is_main=True
)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Log records of the runtime's own loggers (they do not propagate to the root)."""
    captured: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("training_jobs")
    logger.addHandler(handler)
    yield captured
    logger.removeHandler(handler)


def _setup(
    seed: int = 0,
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    loss = model(torch.randn(5, 4)).sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_names_sort_by_step_and_parse_back() -> None:
    assert checkpoint_name(3, 120) == "ckpt-e00003-s000000120.pt"
    assert parse_checkpoint_name("ckpt-e00003-s000000120.pt") == (3, 120)
    assert parse_checkpoint_name(".ckpt-e00003-s000000120.pt.tmp-12") is None
    assert parse_checkpoint_name("notes.txt") is None
    assert sorted([checkpoint_name(10, 100), checkpoint_name(9, 90)])[0] == checkpoint_name(9, 90)


def test_save_keeps_last_k_and_leaves_no_temporaries(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup()
    ckpt = Checkpointer(tmp_path, keep_last=3, context=SINGLE)
    for epoch in range(1, 6):
        path = ckpt.save(model, optimizer, scheduler, epoch=epoch, step=epoch * 10)
        assert path == tmp_path / checkpoint_name(epoch, epoch * 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        checkpoint_name(3, 30),
        checkpoint_name(4, 40),
        checkpoint_name(5, 50),
    ]


def test_failed_write_keeps_the_previous_checkpoint_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, optimizer, _ = _setup()
    ckpt = Checkpointer(tmp_path, context=SINGLE)
    first = ckpt.save(model, optimizer, epoch=1, step=10)
    assert first is not None
    before = first.read_bytes()

    real_save = torch.save

    def crash_midway(obj: object, f: Any, *args: object, **kwargs: object) -> None:
        real_save(obj, f)  # some bytes reach the temporary file...
        raise OSError(28, "No space left on device")  # ...then the disk fills up

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(CheckpointError, match="No space left on device"):
        ckpt.save(model, optimizer, epoch=2, step=20)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]
    assert first.read_bytes() == before


def test_stale_temporary_from_a_killed_writer_is_ignored_and_cleaned(tmp_path: Path) -> None:
    model, optimizer, _ = _setup()
    ckpt = Checkpointer(tmp_path, context=SINGLE)
    ckpt.save(model, optimizer, epoch=1, step=10)
    stale = tmp_path / f".{checkpoint_name(2, 20)}.tmp-99999"
    stale.write_bytes(b"half a checkpoi")
    state = ckpt.resume(model, optimizer)
    assert state is not None and state.epoch == 1
    ckpt.save(model, optimizer, epoch=2, step=20)
    assert not stale.exists()


def test_resume_restores_model_optimizer_scheduler_and_extras(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup(seed=1)
    ckpt = Checkpointer(tmp_path, context=SINGLE)
    ckpt.save(model, optimizer, scheduler, epoch=4, step=40, extras={"best": 0.9, "tags": ["a"]})

    fresh, fresh_opt, fresh_sched = _setup(seed=2)
    assert not _same_weights(model, fresh)
    state = ckpt.resume(fresh, fresh_opt, fresh_sched)
    assert state is not None
    assert (state.epoch, state.step, state.path.name) == (4, 40, checkpoint_name(4, 40))
    assert state.extras == {"best": 0.9, "tags": ["a"]}
    assert _same_weights(model, fresh)
    assert fresh_sched.state_dict() == scheduler.state_dict()
    saved_state = optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(fresh_opt.state_dict()["state"][0]["exp_avg"], saved_state)


def test_resume_skips_truncated_and_corrupt_files(
    tmp_path: Path, records: list[logging.LogRecord]
) -> None:
    model, optimizer, _ = _setup()
    ckpt = Checkpointer(tmp_path, context=SINGLE)
    ckpt.save(model, optimizer, epoch=1, step=10)
    second = ckpt.save(model, optimizer, epoch=2, step=20)
    assert second is not None
    data = second.read_bytes()
    second.write_bytes(data[: len(data) // 2])  # truncated by a crash outside our control
    (tmp_path / checkpoint_name(3, 30)).write_bytes(b"\x00garbage" * 100)
    torch.save({"not": "a checkpoint"}, tmp_path / checkpoint_name(4, 40))

    state = ckpt.resume(model, optimizer)
    assert state is not None and (state.epoch, state.step) == (1, 10)
    skipped = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(skipped) == 3
    assert all("skipping unreadable checkpoint" in m for m in skipped)


def test_resume_with_nothing_returns_none(tmp_path: Path) -> None:
    model, optimizer, _ = _setup()
    assert Checkpointer(tmp_path / "empty", context=SINGLE).resume(model, optimizer) is None


def test_rng_streams_continue_exactly_after_resume(tmp_path: Path) -> None:
    model, optimizer, _ = _setup()
    ckpt = Checkpointer(tmp_path, context=SINGLE)
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    ckpt.save(model, optimizer, epoch=1, step=1)
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])

    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    assert ckpt.resume(model, optimizer) is not None
    actual = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(actual[0], expected[0])
    assert np.array_equal(actual[1], expected[1])
    assert actual[2] == expected[2]


def test_model_that_does_not_fit_is_a_clear_error(tmp_path: Path) -> None:
    model, optimizer, _ = _setup()
    ckpt = Checkpointer(tmp_path, context=SINGLE)
    ckpt.save(model, optimizer, epoch=1, step=1)
    other = nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match="does not fit"):
        ckpt.resume(other)


def test_extras_that_cannot_be_loaded_safely_are_refused(tmp_path: Path) -> None:
    model, _, _ = _setup()
    ckpt = Checkpointer(tmp_path, context=SINGLE)
    with pytest.raises(CheckpointError, match=r"extras\['arr'\] is a ndarray"):
        ckpt.save(model, epoch=1, step=1, extras={"arr": np.zeros(2)})
    assert list(tmp_path.iterdir()) == []


def test_without_a_directory_checkpointing_is_a_logged_no_op(
    monkeypatch: pytest.MonkeyPatch, records: list[logging.LogRecord]
) -> None:
    monkeypatch.delenv("GANTRY_CHECKPOINT_DIR", raising=False)
    model, optimizer, _ = _setup()
    ckpt = Checkpointer(context=SINGLE)
    assert not ckpt.enabled
    assert ckpt.save(model, optimizer, epoch=1, step=1) is None
    assert ckpt.resume(model, optimizer) is None
    assert any("GANTRY_CHECKPOINT_DIR is not set" in r.getMessage() for r in records)


def test_directory_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANTRY_CHECKPOINT_DIR", str(tmp_path / "ck"))
    model, _, _ = _setup()
    path = Checkpointer(context=SINGLE).save(model, epoch=1, step=2)
    assert path == tmp_path / "ck" / checkpoint_name(1, 2)


def test_ddp_wrapped_model_in_a_process_group(tmp_path: Path) -> None:
    """The collective paths (gather RNG, broadcast outcome and bytes) with a 1-rank gloo group."""
    store = tmp_path / "store"
    env = {
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "x",
        "MASTER_PORT": "1",
    }
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    try:
        ctx = init_distributed(env=env)
        assert ctx.distributed and ctx.backend == "gloo" and ctx.world_size == 1
        model, optimizer, _ = _setup(seed=3)
        ddp = nn.parallel.DistributedDataParallel(model)
        ckpt = Checkpointer(tmp_path / "ck", context=ctx)
        ckpt.save(ddp, optimizer, epoch=2, step=8)
        fresh, fresh_opt, _ = _setup(seed=4)
        state = ckpt.resume(nn.parallel.DistributedDataParallel(fresh), fresh_opt)
        assert state is not None and state.step == 8
        assert _same_weights(model, fresh)
        # the saved state dict has the plain module's keys, not DDP's "module." prefix
        assert all(not k.startswith("module.") for k in torch.load(state.path)["model"])
    finally:
        dist.destroy_process_group()
