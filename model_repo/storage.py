"""Resolving a model storage URI to a local directory.

`pvc://claim/path` is a PersistentVolumeClaim the pod mounts at `<pvc_root>/<claim>`;
`s3://bucket/prefix` is downloaded with boto3. S3 credentials come only from the
environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`,
`AWS_REGION`, filled from the InferenceService's Secret), never from the URI, files or
instance metadata, and are never logged. A URI holding credentials, `$`, whitespace or
control characters is refused without being echoed; an object key that would land outside
the destination directory (`models//etc/evil`, `a/../../x`) is refused.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from model_repo.errors import ModelError

DEFAULT_PVC_ROOT = Path("/mnt/pvc")
_UNSAFE = re.compile(r"[$\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StorageURI:
    scheme: str  # "pvc" | "s3"
    authority: str  # claim or bucket
    path: str  # relative, "/"-separated, no ".."


def parse_uri(uri: str) -> StorageURI:
    """Pure: split and validate a storage URI."""
    if _UNSAFE.search(uri):
        raise ModelError(
            "a storage URI must not contain '$', whitespace or control characters",
            "StorageError",
        )
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        raise ModelError(
            "a storage URI must not carry credentials (user:key@): use a Secret", "StorageError"
        )
    if parts.scheme not in ("pvc", "s3"):
        shown = parts.scheme or "(none)"
        raise ModelError(
            f"unsupported storage URI scheme '{shown}' in '{uri}': "
            "use pvc://claim/path or s3://bucket/path",
            "StorageError",
        )
    if not parts.netloc:
        kind = "claim" if parts.scheme == "pvc" else "bucket"
        raise ModelError(f"storage URI '{uri}' names no {kind}", "StorageError")
    path = PurePosixPath(parts.path.lstrip("/"))
    if ".." in path.parts:
        raise ModelError(f"storage URI '{uri}' must not contain '..'", "StorageError")
    text = "" if str(path) == "." else str(path)
    return StorageURI(parts.scheme, parts.netloc, text)


def pvc_path(uri: StorageURI, pvc_root: Path) -> Path:
    """Where the claim's sub-path is mounted in this pod."""
    path = pvc_root / uri.authority / uri.path
    if not path.exists():
        raise ModelError(
            f"pvc://{uri.authority}/{uri.path} is not available at {path} "
            f"(is claim '{uri.authority}' mounted under {pvc_root}?)",
            "ModelNotFound",
        )
    return path


def s3_client(env: Mapping[str, str] | None = None) -> Any:
    """A boto3 S3 client configured from the environment only (unsigned without keys)."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    env = os.environ if env is None else env
    key, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    session = boto3.session.Session(
        aws_access_key_id=key or None,
        aws_secret_access_key=secret or None,
        region_name=env.get("AWS_REGION") or "us-east-1",
    )
    config = Config(retries={"max_attempts": 3}, signature_version=None if key else UNSIGNED)
    return session.client("s3", endpoint_url=env.get("AWS_ENDPOINT_URL") or None, config=config)


def confined(root: Path, relative: str) -> Path | None:
    """`root/relative` when it resolves strictly inside `root` (a resolved root), else None.

    `relative` comes from an S3 key: an empty segment (`models//etc/evil` leaves `/etc/evil`),
    `..` or a symlink already under `root` could otherwise point anywhere.
    """
    rel = PurePosixPath(relative)
    if rel.is_absolute() or not rel.parts or ".." in rel.parts:
        return None
    target = root.joinpath(*rel.parts).resolve()
    return target if target != root and target.is_relative_to(root) else None


def download_s3(uri: StorageURI, dest: Path, client: Any) -> Path:
    """Download every object under the prefix into `dest`, keeping relative paths."""
    from botocore.exceptions import BotoCoreError, ClientError

    prefix = f"{uri.path.rstrip('/')}/" if uri.path else ""
    shown = f"s3://{uri.authority}/{uri.path}"
    root = dest.resolve()
    count = 0
    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=uri.authority, Prefix=prefix):
            for obj in page.get("Contents", []):
                key = str(obj["Key"])
                if key.endswith("/"):  # a folder marker
                    continue
                target = confined(root, key[len(prefix) :])
                if target is None:
                    raise ModelError(
                        f"object key '{key}' under {shown} would be written outside the "
                        "model directory; refused",
                        "StorageError",
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(uri.authority, obj["Key"], str(target))
                count += 1
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "error")
        raise ModelError(f"cannot read {shown}: S3 answered {code}", "StorageError") from err
    except BotoCoreError as err:
        raise ModelError(f"cannot read {shown}: {type(err).__name__}", "StorageError") from err
    if count == 0:
        raise ModelError(f"no objects under {shown}", "ModelNotFound")
    return dest


def resolve(
    uri: str, work_dir: Path, pvc_root: Path = DEFAULT_PVC_ROOT, client: Any = None
) -> Path:
    """A local directory holding the model: the mount itself for pvc://, a download for s3://."""
    parsed = parse_uri(uri)
    if parsed.scheme == "pvc":
        return pvc_path(parsed, pvc_root)
    work_dir.mkdir(parents=True, exist_ok=True)
    return download_s3(parsed, work_dir, client if client is not None else s3_client())


def fetch(uri: str, dest: Path, pvc_root: Path = DEFAULT_PVC_ROOT, client: Any = None) -> int:
    """Copy the model at `uri` into `dest` (init containers); returns the number of files."""
    parsed = parse_uri(uri)
    dest.mkdir(parents=True, exist_ok=True)
    if parsed.scheme == "pvc":
        source = pvc_path(parsed, pvc_root)
        if source.is_dir():
            shutil.copytree(source, dest, dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest / source.name)
    else:
        download_s3(parsed, dest, client if client is not None else s3_client())
    return sum(1 for p in dest.rglob("*") if p.is_file())


# protobuf cannot hold a model of 2 GiB or more in one message.
INLINE_LIMIT_BYTES = 1_900_000_000


def self_contained(model_dir: Path, work: Path, model_file: str = "model.onnx") -> Path:
    """`model_dir`, or a directory where `model_file` carries its weights inline.

    PyTorch's default exporter writes the weights of an ONNX model beside it
    (`model.onnx.data`); every later step (ONNX Runtime's optimized copy, quantization,
    TensorRT) writes new files elsewhere, where such references would dangle. The other
    files of `model_dir` are linked into the new directory unchanged.
    """
    import onnx
    from onnx.external_data_helper import uses_external_data

    source = model_dir / model_file
    header = onnx.load(str(source), load_external_data=False)
    external = [t for t in header.graph.initializer if uses_external_data(t)]
    if not external:
        return model_dir
    out = work / "self-contained"
    out.mkdir(parents=True, exist_ok=True)
    data_files = {
        entry.value for t in external for entry in t.external_data if entry.key == "location"
    }
    for item in model_dir.iterdir():
        if item.name != model_file and item.name not in data_files:
            (out / item.name).symlink_to(item.resolve())
    model = onnx.load(str(source), load_external_data=True)
    if model.ByteSize() < INLINE_LIMIT_BYTES:
        onnx.save_model(model, str(out / model_file))
    else:  # too large for one message: keep the weights external, next to this copy
        onnx.save_model(
            model,
            str(out / model_file),
            save_as_external_data=True,
            location=f"{model_file}.data",
        )
    return out
