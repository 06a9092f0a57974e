"""Autoscaling InferenceServices by the latency and throughput Triton itself measures.

Modules, each with one job:

- `triton_metrics`: parse one pod's `/metrics` text into cumulative counters (pure);
- `rates`: turn two samples of a pod into per-window rates, merge pods into one
  service view, estimate p95 across pods (pure);
- `collector`: remember the previous sample of every pod between scrapes (no I/O);
- `scrape`: find the Ready Triton pods and fetch their `/metrics` concurrently (I/O);
- `decision`: the pure scaling decision, with tolerance, stabilization and step limits;
- `objects`: which HPA / KEDA objects should exist for a spec (pure builders);
- `prometheus_adapter`: the prometheus-adapter rules behind the `hpa` mode's metrics;
- `handlers`: the kopf daemon that scrapes, decides and actuates (thin).
"""
