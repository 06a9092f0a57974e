"""`python -m model_repo.fetch --uri URI --dest DIR`: fill a model directory (init containers)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from model_repo.errors import ModelError
from model_repo.storage import DEFAULT_PVC_ROOT, fetch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_repo.fetch", description=__doc__)
    parser.add_argument("--uri", required=True, help="pvc://claim/path or s3://bucket/path")
    parser.add_argument("--dest", required=True, type=Path, help="directory to fill")
    parser.add_argument(
        "--pvc-root",
        type=Path,
        default=DEFAULT_PVC_ROOT,
        help="where claims are mounted (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    try:
        files = fetch(args.uri, args.dest, args.pvc_root)
    except ModelError as err:
        print(json.dumps({"error": str(err), "reason": err.reason}))
        return 2
    except OSError as err:
        print(
            json.dumps(
                {"error": f"cannot write {args.dest}: {err.strerror}", "reason": "StorageError"}
            )
        )
        return 2
    print(json.dumps({"uri": args.uri, "dest": str(args.dest), "files": files}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
