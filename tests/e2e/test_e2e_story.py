"""The whole story on the dev cluster, through the operator, as `make demo` tells it.

TrainingJob (2 torchrun workers, gloo) → its exported model → InferenceService by
`trainingJobRef` → optimize Job → Triton → held-out digits classified over gRPC with
accuracy ≥ 0.90 → a load step scales the service up and back down. Real processes all
the way; each step fails with the reason it could not finish.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dev_cluster.cluster import DevCluster
from gantry_cli.demo_story import OPERATOR_VALUES, Story
from tests.conftest import require_triton

pytestmark = pytest.mark.slow


def test_train_serve_predict_and_autoscale(tmp_path: Path) -> None:
    require_triton()
    with DevCluster(
        tmp_path / "cluster", operator=True, backoff_base=2.0, operator_values=OPERATOR_VALUES
    ) as cluster:
        story = Story(cluster)
        job = story.train()
        assert job["status"]["attempts"] == 1
        assert job["status"]["model"]["metrics"]["test_accuracy"] >= 0.9
        exported = tmp_path / "cluster" / "pvc" / "ml" / "ml-models" / "digits-cnn"
        assert {"model.onnx", "model.pt", "metadata.json"} <= {p.name for p in exported.iterdir()}

        svc = story.serve()
        model = svc["status"]["model"]
        assert model["uri"] == "pvc://ml-models/digits-cnn"
        assert model["backend"] == "python"
        assert (
            model["digest"].removeprefix("sha256:")
            == job["status"]["model"]["sha256"]["model.onnx"]
        )

        story.predict()  # raises unless held-out accuracy ≥ 0.90
        story.load_and_autoscale()  # raises unless replicas rise and return to minReplicas
