"""Classify the held-out digits with a served model over gRPC and print the accuracy.

    python examples/digits_grpc_client.py --service digits [--namespace default]
    python examples/digits_grpc_client.py --target 127.0.1.5:8001 --model digits

The held-out digits are the ones training never saw (`training_jobs.examples.digits_data`).
With `--service`, the endpoint is found through the Kubernetes API like `gantry predict`
does. Inside a cluster, a long-lived client should instead open one channel on the
headless Service, `dns:///<name>-headless.<ns>.svc.cluster.local:8001`, with the
`round_robin` policy so its requests spread over every Triton replica.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gantry_cli.predict import PredictError, find_target, model_signature, predict


def heldout_digits() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from training_jobs.examples.digits_data import heldout_split

    return heldout_split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--service", help="InferenceService name (resolved through the API)")
    where.add_argument("--target", help="host:port of a Triton gRPC endpoint")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--kubeconfig", type=Path, default=None)
    parser.add_argument("--model", default=None, help="Triton model name (default: service)")
    parser.add_argument("--batch-size", type=int, default=8, help="≤ the model's maxBatchSize")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)

    try:
        target = find_target(
            args.service or args.target, args.namespace, args.kubeconfig, args.model, args.timeout
        )
        assert target.model is not None
        signature = model_signature(target.url, target.model, timeout=args.timeout)
        (image_input,) = signature.inputs[:1]
        images, labels = heldout_digits()
        correct = 0
        latencies: list[float] = []
        for start in range(0, len(images), args.batch_size):
            batch = images[start : start + args.batch_size].astype(np.float32)
            outputs, latency_ms = predict(
                target.url, target.model, {image_input.name: batch}, timeout=args.timeout
            )
            logits = outputs[signature.outputs[0].name]
            correct += int((logits.argmax(axis=1) == labels[start : start + len(batch)]).sum())
            latencies.append(latency_ms)
    except (PredictError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    accuracy = correct / len(images)
    print(f"model {target.model} at {target.url}")
    print(f"held-out digits: {len(images)}, correct: {correct}, accuracy: {accuracy:.4f}")
    print(
        f"requests: {len(latencies)} of ≤{args.batch_size}, "
        f"latency p50 {np.percentile(latencies, 50):.2f} ms, "
        f"p95 {np.percentile(latencies, 95):.2f} ms (client round trip)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
