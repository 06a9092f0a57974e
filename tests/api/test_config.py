"""Operator configuration: defaults, file, environment, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from gantry.config import ConfigError, TritonBackend, load_config


def test_defaults_describe_a_gpu_cluster() -> None:
    config = load_config({})
    assert config.triton_image.startswith("nvcr.io/nvidia/tritonserver:")
    assert TritonBackend.TENSORRT in config.triton_backends
    assert config.watch_namespaces == ()
    assert config.scrape_interval_seconds == 5.0  # the issue asks for a default of at most 5 s


def test_file_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tritonBackends: [python]\nscrapeIntervalSeconds: 2\nwatchNamespaces: [ml]\n")
    config = load_config({"GANTRY_CONFIG": str(path), "GANTRY_WATCH_NAMESPACES": "ml,team-a"})
    assert config.triton_backends == (TritonBackend.PYTHON,)
    assert config.scrape_interval_seconds == 2
    assert config.watch_namespaces == ("ml", "team-a")


def test_environment_numbers_and_lists() -> None:
    config = load_config(
        {
            "GANTRY_SCRAPE_INTERVAL_SECONDS": "1.5",
            "GANTRY_TRITON_BACKENDS": "python, onnxruntime_onnx",
        }
    )
    assert config.scrape_interval_seconds == 1.5
    assert config.triton_backends == (TritonBackend.PYTHON, TritonBackend.ONNXRUNTIME)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"GANTRY_TRITON_BACKENDS": "tensorflow"}, "tritonBackends"),
        ({"GANTRY_SCRAPE_INTERVAL_SECONDS": "0"}, "scrapeIntervalSeconds"),
        ({"GANTRY_CONFIG": "/nonexistent/gantry.yaml"}, "cannot read operator configuration"),
    ],
)
def test_invalid_configuration_is_a_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(env)


def test_unknown_key_in_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tritonImagee: typo\n")
    with pytest.raises(ConfigError, match="tritonImagee"):
        load_config({"GANTRY_CONFIG": str(path)})
