"""Failure messages keep the user's last log lines, not torchrun's report."""

from __future__ import annotations

from gantry.trainingjob.logs import worker_log_tail

TORCHRUN_FAILURE = """\
epoch 1 loss 0.9
loading shard 7
ValueError: corrupt shard 7
E1130 04:34:48.495000 29216 torch/distributed/elastic/multiprocessing/api.py:1002] \
failed (exitcode: 3) local_rank: 0 (pid: 29343) of binary: python
Traceback (most recent call last):
  File "/venv/bin/torchrun", line 8, in <module>
    sys.exit(main())
  File "/venv/lib/python3.11/site-packages/torch/distributed/run.py", line 1028, in main
    run(args)
torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
python FAILED
Root Cause (first observed failure):
  exitcode  : 3 (pid: 29343)
============================================================
"""


def test_torchrun_report_is_dropped_and_exit_code_kept() -> None:
    tail = worker_log_tail(TORCHRUN_FAILURE)
    assert tail.lines == ["epoch 1 loss 0.9", "loading shard 7", "ValueError: corrupt shard 7"]
    assert tail.child_exit_code == 3 and tail.local_rank == 0


def test_user_tracebacks_are_kept_and_tail_is_bounded() -> None:
    user = "\n".join(f"line {i}" for i in range(50))
    user += '\nTraceback (most recent call last):\n  File "train.py", line 3\nKeyError: x\n'
    tail = worker_log_tail(user, keep=5)
    assert tail.lines == [
        "line 48",
        "line 49",
        "Traceback (most recent call last):",
        '  File "train.py", line 3',
        "KeyError: x",
    ]
    assert tail.child_exit_code is None


def test_empty_log() -> None:
    assert worker_log_tail("").lines == []
