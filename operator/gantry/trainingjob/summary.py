"""The model summary rank 0 leaves in its termination message, and how it is read back.

The operator cannot mount every output volume, so worker 0 condenses metadata.json
(file digests, signature, metrics) — or, for a plain export without it, the model files'
digests — into the container's termination message after a successful run; the
operator reads it from `status.containerStatuses[].state.terminated.message` of that
pod. Kubernetes caps termination messages at 4 KB, so the summary drops the class
labels, then the signature, when it would not fit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gantry.api.trainingjob import ExportedModel

MAX_SUMMARY_BYTES = 4000

# Runs inside the worker image with only the standard library:
# argv[1] = output directory holding metadata.json, argv[2] = termination-message path.
SUMMARY_SCRIPT = """\
import hashlib, json, os, sys
out, dst = sys.argv[1].rstrip('/'), sys.argv[2]
def digest(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()
if os.path.exists(out + '/metadata.json'):
    with open(out + '/metadata.json', encoding='utf-8') as f:
        meta = json.load(f)
    def tensors(key):
        return [{'name': t.get('name'), 'dtype': t.get('dtype'), 'shape': t.get('shape')}
                for t in meta.get(key) or []]
    summary = {
        'gantrySummary': 1,
        'files': {n: (e or {}).get('sha256') for n, e in (meta.get('files') or {}).items()},
        'signature': {'inputs': tensors('inputs'), 'outputs': tensors('outputs'),
                      'labels': [str(x) for x in meta.get('labels') or []]},
        'metrics': {k: v for k, v in (meta.get('metrics') or {}).items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)},
    }
else:
    # A plain export (torch.onnx.export, torch.jit.save) without Gantry's metadata: the
    # model files and their digests; the optimizer reads the signature from the model.
    files = {n: digest(out + '/' + n) for n in sorted(os.listdir(out))
             if n.endswith(SUFFIXES) and os.path.isfile(out + '/' + n)}
    if not files:
        sys.exit('no metadata.json and no model file in ' + out)
    summary = {'gantrySummary': 1, 'files': files, 'metrics': {}}
text = json.dumps(summary, separators=(',', ':'))
if len(text) > LIMIT and 'signature' in summary:
    summary['signature']['labels'] = []
    text = json.dumps(summary, separators=(',', ':'))
if len(text) > LIMIT:
    summary.pop('signature', None)
    text = json.dumps(summary, separators=(',', ':'))
with open(dst, 'w', encoding='utf-8') as f:
    f.write(text[:LIMIT])
""".replace("LIMIT", str(MAX_SUMMARY_BYTES))

_FORMATS = {".onnx": "onnx", ".pt": "torchscript", ".pth": "torchscript", ".plan": "tensorrt"}
SUMMARY_SCRIPT = SUMMARY_SCRIPT.replace("SUFFIXES", repr(tuple(_FORMATS)))


def _format_of(file_name: str) -> str | None:
    for suffix, fmt in _FORMATS.items():
        if file_name.endswith(suffix):
            return fmt
    return None


def parse_summary(message: str | None, uri: str) -> dict[str, Any] | None:
    """status.model (camelCase) from a termination message; None if it holds no summary.

    The message is written by the user's container, so it is validated against the
    status model: a signature that does not fit it (a tensor without a dtype, …) is
    dropped — the optimizer reads the signature from the model file instead — rather
    than making every status write of the job fail.
    """
    if not message:
        return None
    try:
        doc = json.loads(message)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("gantrySummary") != 1:
        return None
    raw_files = doc.get("files")
    files: Mapping[str, Any] = raw_files if isinstance(raw_files, Mapping) else {}
    formats = sorted({fmt for name in files if (fmt := _format_of(str(name)))})
    model: dict[str, Any] = {
        "uri": uri,
        "formats": formats,
        "sha256": {str(k): str(v) for k, v in files.items() if isinstance(v, str)},
        "metrics": {
            str(k): float(v)
            for k, v in (doc.get("metrics") or {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
    }
    signature = doc.get("signature")
    if isinstance(signature, Mapping):
        model["signature"] = {
            "inputs": list(signature.get("inputs") or []),
            "outputs": list(signature.get("outputs") or []),
            "labels": list(signature.get("labels") or []),
        }
    try:
        ExportedModel.model_validate(model)
    except ValidationError:
        model.pop("signature", None)
    return model
