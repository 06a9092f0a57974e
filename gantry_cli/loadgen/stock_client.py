"""A long-lived stock `tritonclient` as users run it: one channel, open for the whole run.

    python -m gantry_cli.loadgen.stock_client \\
        --url dns:///NAME-headless.NS.svc.cluster.local:8001 --model NAME \\
        --profile "0:5rps,10:30rps,40:0" --start-at EPOCH [--input NAME:FP32:1x4]

Unlike `gantry bench load`, which re-reads the Ready pods every second and so spreads
over new replicas at once, this is a plain `tritonclient.grpc.InferenceServerClient` with
the documented channel configuration (`gantry_cli.grpc_client.channel_args`): which pods it
reaches is up to gRPC's name resolution, round_robin and Triton's connection age — what
a user's client experiences. It sends the profile's rate open loop (`async_infer`), so a
slow server does not slow the offered load, and at the end prints one JSON line: requests
sent, answered, errors by message, and every request's (send time, latency) for
percentiles over any window. Run as pods (`stock_client_pod`), several clients with the
same `--start-at` send a step together.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

RESULT_PREFIX = "STOCK-CLIENT-RESULT "


def _input(spec: str) -> tuple[str, str, list[int]]:
    name, datatype, shape = spec.split(":")
    return name, datatype, [int(d) for d in shape.split("x")]


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import tritonclient.grpc as grpcclient

    from gantry_cli.grpc_client import channel_args
    from gantry_cli.loadgen.profile import parse_profile

    profile = parse_profile(args.profile)
    client = grpcclient.InferenceServerClient(url=args.url, channel_args=channel_args())
    inputs = []
    for spec in args.input:
        name, datatype, shape = _input(spec)
        tensor = grpcclient.InferInput(name, shape, datatype)
        tensor.set_data_from_numpy(np.zeros(shape, dtype=np.float32).astype(_NUMPY[datatype]))
        inputs.append(tensor)
    lock = threading.Lock()
    samples: list[tuple[float, float]] = []
    errors: Counter[str] = Counter()
    error_times: list[float] = []
    outstanding = [0]
    done = threading.Event()

    def callback(sent: float, result: Any, error: Any) -> None:
        latency = time.time() - sent
        with lock:
            outstanding[0] -= 1
            if error is not None:
                errors[str(error)[:200]] += 1
                error_times.append(round(sent - args.start_at, 3))
            else:
                samples.append((round(sent - args.start_at, 3), round(latency * 1000, 2)))
            if outstanding[0] == 0 and done.is_set():
                finished.set()

    finished = threading.Event()
    # Connect (and have the model answer once) before the common start, as a client that
    # has been running for a while has; then send on the profile's schedule (open loop).
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if client.is_model_ready(args.model, client_timeout=5):
                break
        except Exception:  # not resolvable or not ready yet
            pass
        time.sleep(0.5)
    late = max(0.0, time.time() - args.start_at)
    while time.time() < args.start_at:
        time.sleep(min(0.05, args.start_at - time.time()))
    sent_count = 0
    next_at = args.start_at
    while True:
        t = next_at - args.start_at
        if t >= profile.end or (args.stop_file and os.path.exists(args.stop_file)):
            break
        rate = profile.load_at(t) / args.clients
        if rate <= 0:
            next_at += 0.05
            continue
        delay = next_at - time.time()
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # started late (or stalled): skip what is past, do not burst
            next_at = time.time()
            continue
        sent = time.time()
        with lock:
            outstanding[0] += 1
        client.async_infer(
            args.model,
            inputs,
            callback=lambda result, error, sent=sent: callback(sent, result, error),
            client_timeout=args.timeout,
        )
        sent_count += 1
        next_at += 1.0 / rate
    done.set()
    with lock:
        if outstanding[0] == 0:
            finished.set()
    finished.wait(args.timeout + 10)
    client.close()
    return {
        "late_start_s": round(late, 3),
        "sent": sent_count,
        "ok": len(samples),
        "errors": dict(errors),
        "error_times": error_times,
        "samples": samples,
    }


_NUMPY = {"FP32": "float32", "FP16": "float16", "INT64": "int64", "INT32": "int32"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True, help="gRPC target, e.g. dns:///svc-headless…:8001")
    p.add_argument("--model", required=True)
    p.add_argument("--profile", required=True, help="total load of all clients, as `bench load`")
    p.add_argument("--clients", type=int, default=1, help="clients sharing the profile")
    p.add_argument("--start-at", type=float, required=True, help="Unix time of t=0")
    p.add_argument("--input", action="append", default=[], help="NAME:DATATYPE:DIMxDIM")
    p.add_argument("--timeout", type=float, default=30.0, help="per-request deadline (s)")
    p.add_argument("--stop-file", help="stop sending once this path exists (tests)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
