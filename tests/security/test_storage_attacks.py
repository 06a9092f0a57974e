"""An S3 listing that tries to write outside the model directory (a local moto server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_repo.errors import ModelError
from model_repo.storage import fetch, s3_client


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
        assert s3_env["AWS_SECRET_ACCESS_KEY"] not in str(refused.value)
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
