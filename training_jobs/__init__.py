"""Gantry's training runtime: what a PyTorch script inside a TrainingJob pod imports.

A plain DDP script works without it; with it, process-group set-up, checkpoints that
resume after a restart, progress in the TrainingJob's status and a verified export
for serving are one call each.
"""

from training_jobs.checkpoint import Checkpointer, CheckpointError, ResumeState
from training_jobs.distributed import DistributedContext, exit_process, init_distributed, shutdown
from training_jobs.export import ExportError, export_model
from training_jobs.logs import get_logger
from training_jobs.metadata import MetadataError, read_metadata
from training_jobs.progress import ProgressReporter

__all__ = [
    "CheckpointError",
    "Checkpointer",
    "DistributedContext",
    "ExportError",
    "MetadataError",
    "ProgressReporter",
    "ResumeState",
    "exit_process",
    "export_model",
    "get_logger",
    "init_distributed",
    "read_metadata",
    "shutdown",
]
