"""Storage URIs: pvc:// mounts, s3:// downloads (against a local moto S3 server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model_repo import fetch as fetch_cli
from model_repo.errors import ModelError
from model_repo.storage import StorageURI, fetch, parse_uri, resolve, s3_client


@pytest.mark.parametrize(
    ("uri", "parsed"),
    [
        ("pvc://models/digits/v1", StorageURI("pvc", "models", "digits/v1")),
        ("pvc://models", StorageURI("pvc", "models", "")),
        ("s3://bucket/exports/digits/", StorageURI("s3", "bucket", "exports/digits")),
    ],
)
def test_parse_uri(uri: str, parsed: StorageURI) -> None:
    assert parse_uri(uri) == parsed


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (
            "http://host/model",
            "unsupported storage URI scheme 'http' in 'http://host/model': "
            "use pvc://claim/path or s3://bucket/path",
        ),
        ("/just/a/path", "unsupported storage URI scheme '(none)'"),
        ("pvc:///path", "names no claim"),
        ("s3:///path", "names no bucket"),
        ("pvc://claim/../etc", "must not contain '..'"),
    ],
)
def test_bad_uris(uri: str, message: str) -> None:
    with pytest.raises(ModelError) as err:
        parse_uri(uri)
    assert message in str(err.value)
    assert err.value.reason == "StorageError"


def test_pvc_resolves_to_the_mount(tmp_path: Path) -> None:
    mounted = tmp_path / "pvc" / "models" / "digits"
    mounted.mkdir(parents=True)
    (mounted / "model.onnx").write_bytes(b"m")
    assert resolve("pvc://models/digits", tmp_path / "work", pvc_root=tmp_path / "pvc") == mounted
    with pytest.raises(ModelError, match="is claim 'other' mounted") as err:
        resolve("pvc://other/digits", tmp_path / "work", pvc_root=tmp_path / "pvc")
    assert err.value.reason == "ModelNotFound"
    assert fetch("pvc://models/digits", tmp_path / "dest", pvc_root=tmp_path / "pvc") == 1
    assert (tmp_path / "dest" / "model.onnx").read_bytes() == b"m"


@pytest.fixture
def bucket(s3_env: dict[str, str]) -> Any:
    client = s3_client(s3_env)
    client.create_bucket(Bucket="exports")
    client.put_object(Bucket="exports", Key="digits/v1/model.onnx", Body=b"onnx-bytes")
    client.put_object(Bucket="exports", Key="digits/v1/metadata.json", Body=b"{}")
    client.put_object(Bucket="exports", Key="digits/v1/sub/calibration.npy", Body=b"npy")
    client.put_object(Bucket="exports", Key="digits/v10/model.onnx", Body=b"other")
    yield client
    for obj in client.list_objects_v2(Bucket="exports").get("Contents", []):
        client.delete_object(Bucket="exports", Key=obj["Key"])
    client.delete_bucket(Bucket="exports")


@pytest.mark.slow
def test_s3_download_keeps_layout_and_prefix_boundaries(bucket: Any, tmp_path: Path) -> None:
    local = resolve("s3://exports/digits/v1", tmp_path / "work", client=bucket)
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert files == ["metadata.json", "model.onnx", "sub/calibration.npy"]  # not v10's
    assert (local / "model.onnx").read_bytes() == b"onnx-bytes"


@pytest.mark.slow
def test_s3_errors_are_clear_and_secret_free(
    bucket: Any, s3_env: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match="no objects under s3://exports/nothing") as err:
        resolve("s3://exports/nothing", tmp_path, client=bucket)
    assert err.value.reason == "ModelNotFound"
    with pytest.raises(ModelError, match="S3 answered NoSuchBucket") as err:
        resolve("s3://missing-bucket/x", tmp_path, client=bucket)
    assert err.value.reason == "StorageError"
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in str(err.value)


@pytest.mark.slow
def test_fetch_cli_reads_credentials_from_env(
    bucket: Any,
    s3_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    assert fetch_cli.main(["--uri", "s3://exports/digits/v1", "--dest", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["files"] == 3
    assert s3_env["AWS_SECRET_ACCESS_KEY"] not in out
    assert fetch_cli.main(["--uri", "ftp://x/y", "--dest", str(tmp_path / "e")]) == 2
    assert json.loads(capsys.readouterr().out)["reason"] == "StorageError"


def test_a_model_with_its_weights_beside_it_is_made_self_contained(tmp_path: Path) -> None:
    """PyTorch's default exporter writes model.onnx.data: later steps copy model.onnx alone."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import uses_external_data

    from model_repo import ort_optimize
    from model_repo.storage import self_contained

    weight = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [weight],
    )
    exported = tmp_path / "exported"
    exported.mkdir()
    onnx.save_model(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
        str(exported / "model.onnx"),
        save_as_external_data=True,
        location="model.onnx.data",
        size_threshold=0,
    )
    (exported / "notes.txt").write_text("kept")
    assert (exported / "model.onnx.data").is_file()
    inline = self_contained(exported, tmp_path / "work")
    assert inline != exported and (inline / "notes.txt").read_text() == "kept"
    assert not (inline / "model.onnx.data").exists()
    loaded = onnx.load(str(inline / "model.onnx"), load_external_data=False)
    assert not any(uses_external_data(t) for t in loaded.graph.initializer)
    # ONNX Runtime's optimized copy, written elsewhere, runs on its own
    optimized = tmp_path / "elsewhere" / "model.onnx"
    optimized.parent.mkdir()
    ort_optimize.graph_optimize(inline / "model.onnx", optimized)
    import onnxruntime as ort

    session = ort.InferenceSession(str(optimized), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    assert y.tolist() == [[4.0, 4.0, 4.0]]
    assert self_contained(inline, tmp_path / "again") == inline, "already self-contained"
