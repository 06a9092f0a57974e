"""The digits data set (bundled with scikit-learn) split the same way everywhere.

Training, tests and inference clients all call these functions, so a client can
classify exactly the held-out digits the model never saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

__all__ = ["LABELS", "heldout_split", "load_splits"]

LABELS = tuple(str(digit) for digit in range(10))
SPLIT_SEED = 20261130
TEST_FRACTION = 0.2

Array = np.ndarray[Any, Any]


def load_splits() -> tuple[Array, Array, Array, Array]:
    """``(x_train, y_train, x_test, y_test)``: float32 (N, 1, 8, 8) in [0, 1], int64 labels.

    The split is stratified and seeded, so it is identical in every process.
    """
    digits = load_digits()
    x = (np.asarray(digits.images, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = np.asarray(digits.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_FRACTION, stratify=y, random_state=SPLIT_SEED
    )
    return x_train, y_train, x_test, y_test


def heldout_split() -> tuple[Array, Array]:
    """The held-out test digits ``(x_test, y_test)`` that training never sees."""
    _, _, x_test, y_test = load_splits()
    return x_test, y_test
