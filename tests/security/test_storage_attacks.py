"""An S3 listing that tries to write outside the model directory (a local moto server)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_repo.errors import ModelError
from model_repo.storage import fetch, s3_client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    from moto.server import ThreadedMotoServer  # the dev extra's moto[server]

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "never-in-a-message",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_REGION": "us-east-1",
        }
    finally:
        server.stop()


@pytest.mark.parametrize("key", ["models//etc/evil", "models/a/../../../evil"])
def test_an_s3_key_outside_the_destination_is_refused(
    s3_env: dict[str, str], tmp_path: Path, key: str
) -> None:
    client = s3_client(s3_env)
    client.create_bucket(Bucket="attacker-bkt")
    client.put_object(Bucket="attacker-bkt", Key="models/model.onnx", Body=b"onnx")
    client.put_object(Bucket="attacker-bkt", Key=key, Body=b"pwned")
    dest = tmp_path / "fetched" / "inner"
    try:
        with pytest.raises(ModelError, match="outside the model directory") as refused:
            fetch("s3://attacker-bkt/models", dest, client=client)
        assert "never-in-a-message" not in str(refused.value)
        written = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert all(p.is_relative_to(dest) for p in written)
        assert not [p for p in written if p.read_bytes() == b"pwned"]
    finally:
        for obj in client.list_objects_v2(Bucket="attacker-bkt").get("Contents", []):
            client.delete_object(Bucket="attacker-bkt", Key=obj["Key"])
        client.delete_bucket(Bucket="attacker-bkt")


@pytest.mark.parametrize(
    "uri", ["s3://id:key@bucket/m", "s3://bucket/$(AWS_SECRET_ACCESS_KEY)", "pvc://c/a b"]
)
def test_uris_with_credentials_or_expansions_are_refused_unechoed(uri: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError) as refused:
        fetch(uri, tmp_path)
    assert "id:key" not in str(refused.value) and "$(" not in str(refused.value)
