"""Train a small CNN on scikit-learn's bundled 8x8 digits with DDP, then export it.

Run as a TrainingJob command, locally under torchrun, or as plain Python:

    torchrun --standalone --nnodes=1 --nproc-per-node=2 -m training_jobs.examples.digits
    python -m training_jobs.examples.digits --epochs 12 --lr 0.01 --batch-size 64

It resumes from the newest checkpoint in ``$GANTRY_CHECKPOINT_DIR``, reports progress
to the TrainingJob's status and exports to ``$GANTRY_OUTPUT_DIR``. ``--fail-at-epoch``
makes one worker crash on the first attempt, to demonstrate recovery.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from training_jobs import (
    Checkpointer,
    DistributedContext,
    ProgressReporter,
    exit_process,
    export_model,
    get_logger,
    init_distributed,
)
from training_jobs.examples.digits_data import LABELS, load_splits

CALIBRATION_SAMPLES = 256


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions and a small classifier head: ~40k parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x))
        return logits


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=_positive_int, default=12)
    parser.add_argument("--lr", type=_non_negative_float, default=0.01)
    parser.add_argument("--batch-size", type=_positive_int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fail-at-epoch",
        type=_positive_int,
        default=os.environ.get("GANTRY_FAIL_AT_EPOCH") or None,
        help="on attempt 1 (GANTRY_ATTEMPT), rank 1 (rank 0 when alone) exits with code 1 "
        "when this epoch starts (env GANTRY_FAIL_AT_EPOCH)",
    )
    parser.add_argument(
        "--epoch-sleep",
        type=_non_negative_float,
        default=0.0,
        help="seconds to pause after each epoch, to make a run observable",
    )
    parser.add_argument(
        "--report-interval",
        type=_non_negative_float,
        default=5.0,
        help="least seconds between progress updates",
    )
    parser.add_argument(
        "--output-dir", default=None, help="export directory (default: $GANTRY_OUTPUT_DIR)"
    )
    args = parser.parse_args(argv)
    attempt = os.environ.get("GANTRY_ATTEMPT") or "1"
    if not attempt.isdigit():
        parser.error(f"GANTRY_ATTEMPT={attempt!r} is not a positive integer")
    args.attempt = int(attempt)
    return args


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predicted = model(x).argmax(dim=1)
    model.train()
    return float((predicted == y).float().mean())


def _mean_across_ranks(ctx: DistributedContext, total: float, count: int) -> float:
    if ctx.distributed:
        pair = torch.tensor([total, float(count)], dtype=torch.float64, device=ctx.device)
        dist.all_reduce(pair)
        total, count = float(pair[0]), int(pair[1])
    return total / max(count, 1)


def _maybe_fail(ctx: DistributedContext, args: argparse.Namespace, epoch: int) -> None:
    """Simulate a worker crash (like an OOM kill) on the first attempt only."""
    failing_rank = 1 if ctx.world_size > 1 else 0
    if args.fail_at_epoch == epoch and args.attempt == 1 and ctx.rank == failing_rank:
        get_logger("digits", all_ranks=True).error(
            "failing on purpose at epoch %d (--fail-at-epoch, attempt %d)", epoch, args.attempt
        )
        sys.stderr.flush()
        os._exit(1)


def train(ctx: DistributedContext, args: argparse.Namespace) -> float:
    """Train (resuming if a checkpoint exists), export, and return the test accuracy."""
    log = get_logger("digits")
    log.info(
        "%d worker(s), backend %s, device %s", ctx.world_size, ctx.backend or "none", ctx.device
    )
    _seed_everything(args.seed)
    x_train, y_train, x_test, y_test = load_splits()
    test_x = torch.from_numpy(x_test).to(ctx.device)
    test_y = torch.from_numpy(y_test).to(ctx.device)

    model = DigitsCNN().to(ctx.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    checkpointer = Checkpointer(context=ctx)
    resumed = checkpointer.resume(model, optimizer, scheduler)
    done_epochs, step = (resumed.epoch, resumed.step) if resumed else (0, 0)
    if resumed and done_epochs >= args.epochs:
        log.info("checkpoint %s already covers all %d epochs", resumed.path.name, args.epochs)
    elif resumed:
        log.info(
            "resumed from checkpoint %s: starting at epoch %d/%d (step %d)",
            resumed.path.name,
            done_epochs + 1,
            args.epochs,
            step,
        )

    ddp: nn.Module = model
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        ddp = DistributedDataParallel(model, device_ids=ids)
    dataset = TensorDataset(torch.from_numpy(x_train), torch.from_numpy(y_train))
    sampler: DistributedSampler[tuple[torch.Tensor, ...]] = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=args.seed
    )
    loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler)
    reporter = ProgressReporter(
        total_epochs=args.epochs,
        total_steps=args.epochs * len(loader),
        initial_step=step,
        min_interval=args.report_interval,
        context=ctx,
    )
    loss_fn = nn.CrossEntropyLoss()
    accuracy = _evaluate(model, test_x, test_y)
    for epoch in range(done_epochs + 1, args.epochs + 1):
        _maybe_fail(ctx, args, epoch)
        sampler.set_epoch(epoch)
        total, count = 0.0, 0
        for inputs, targets in loader:
            inputs, targets = inputs.to(ctx.device), targets.to(ctx.device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(ddp(inputs), targets)
            loss.backward()
            optimizer.step()
            step += 1
            total += loss.item() * len(targets)
            count += len(targets)
            reporter.report(epoch=epoch - 1, step=step, loss=total / count)
        scheduler.step()
        epoch_loss = _mean_across_ranks(ctx, total, count)
        accuracy = _evaluate(model, test_x, test_y)
        log.info(
            "epoch %d/%d loss %.4f test_accuracy %.4f", epoch, args.epochs, epoch_loss, accuracy
        )
        checkpointer.save(
            ddp, optimizer, scheduler, epoch=epoch, step=step, extras={"test_accuracy": accuracy}
        )
        reporter.report(
            epoch=epoch,
            step=step,
            loss=epoch_loss,
            metrics={"test_accuracy": accuracy},
            final=epoch == args.epochs,
        )
        if args.epoch_sleep:
            time.sleep(args.epoch_sleep)

    output_dir = args.output_dir or os.environ.get("GANTRY_OUTPUT_DIR")
    if not output_dir:
        log.warning("no --output-dir and GANTRY_OUTPUT_DIR is not set: skipping the export")
    else:
        export_model(
            model,
            torch.from_numpy(x_test[:8]),
            output_dir,
            labels=LABELS,
            calibration_samples=x_test[:CALIBRATION_SAMPLES],
            metrics={"test_accuracy": accuracy},
            name="digits-cnn",
            context=ctx,
        )
    log.info("done: test_accuracy %.4f", accuracy)
    return accuracy


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with init_distributed() as ctx:
        train(ctx, args)
    return 0


if __name__ == "__main__":
    exit_process(main())
