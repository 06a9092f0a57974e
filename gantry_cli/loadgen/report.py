"""Results of a load run: the JSON document and the plot of RPS, p95 and replicas."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gantry_cli.loadgen.runner import LoadResult
from gantry_cli.loadgen.stats import pod_share, summary, timeline


def results_document(
    result: LoadResult, *, target: str, model: str, profile: str, kind: str
) -> dict[str, Any]:
    seconds = len(result.target_load)
    return {
        "target": target,
        "model": model,
        "profile": profile,
        "kind": kind,
        "summary": summary(result.records, result.duration),
        "errors": result.errors,
        "pod_share": pod_share(result.records),
        "pods_first_ready_s": result.first_seen,
        "timeline": timeline(
            result.records, seconds, target_load=result.target_load, replicas=result.replicas
        ),
    }


def write_json(document: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def plot(
    document: Mapping[str, Any],
    path: Path,
    *,
    slo_ms: float | None = None,
    title: str | None = None,
    extra_replicas: Mapping[str, list[tuple[float, int]]] | None = None,
) -> Path:
    """RPS (offered and answered), p50/p95 and replicas over time, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = document["timeline"]
    t = [r["t"] for r in rows]
    fig, (ax_rps, ax_lat, ax_rep) = plt.subplots(3, 1, sharex=True, figsize=(9, 8))
    if document.get("kind") == "rate":
        ax_rps.plot(t, [r["target_load"] for r in rows], "--", color="grey", label="offered")
    ax_rps.plot(t, [r["ok"] for r in rows], label="ok / s")
    ax_rps.plot(t, [r["errors"] for r in rows], color="red", label="errors / s")
    ax_rps.set_ylabel("requests / s")
    ax_rps.legend(loc="upper left")
    ax_lat.plot(t, [r["p95_ms"] for r in rows], label="p95 (client)")
    ax_lat.plot(t, [r["p50_ms"] for r in rows], alpha=0.6, label="p50 (client)")
    if slo_ms is not None:
        ax_lat.axhline(slo_ms, color="red", linestyle=":", label=f"target {slo_ms:g} ms")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_yscale("log")
    ax_lat.set_ylim(bottom=1)
    ax_lat.legend(loc="upper left")
    ax_rep.step(t, [r["replicas"] for r in rows], where="post", label="replicas")
    for label, points in (extra_replicas or {}).items():
        ax_rep.step([p[0] for p in points], [p[1] for p in points], where="post", label=label)
    ax_rep.set_ylabel("replicas")
    ax_rep.set_xlabel("seconds")
    ax_rep.legend(loc="upper left")
    fig.suptitle(title or f"{document['model']} @ {document['target']}: {document['profile']}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
