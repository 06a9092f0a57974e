"""The one error type the optimizer reports to users.

Every failure an InferenceService owner can act on becomes a `ModelError` with a
machine-readable `reason` (it lands in the termination message the operator turns into a
status condition) and a message that says what to fix.
"""

from __future__ import annotations

from typing import Literal

Reason = Literal[
    "ModelNotFound",
    "CorruptModel",
    "AccuracyGateFailed",
    "Unsupported",
    "StorageError",
    "DigestMismatch",  # model.onnx is not the file its TrainingJob recorded
    "InternalError",  # a bug or an unexpected library failure: reported, never a bare traceback
]


class ModelError(Exception):
    """A user-facing failure: `str(err)` is the message, `err.reason` the category."""

    def __init__(self, message: str, reason: Reason = "CorruptModel") -> None:
        super().__init__(message)
        self.reason: Reason = reason
