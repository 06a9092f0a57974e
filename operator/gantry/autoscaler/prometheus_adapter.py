"""prometheus-adapter rules that turn Triton's series into the `hpa` mode's Pods metrics.

The `hpa` mode's HorizontalPodAutoscaler asks the custom metrics API for three per-pod
metrics; prometheus-adapter answers from Prometheus with these rules. Prometheus must
scrape the Triton pods' metrics port (8002) with `namespace` and `pod` labels (a
PodMonitor or the usual Kubernetes service discovery relabelling). The Helm chart ships
`RULES_YAML` as the adapter's rules ConfigMap.

- `gantry_triton_requests_per_second`: finished requests per second of each pod;
- `gantry_triton_request_p95_ms`: each pod's p95 from its summary
  (`--metrics-config summary_latencies=true`), the HPA averages it over pods;
- `gantry_triton_queue_time_ms`: each pod's mean queue time over the last minute.
"""

from __future__ import annotations

from typing import Any

import yaml

METRIC_REQUESTS_PER_SECOND = "gantry_triton_requests_per_second"
METRIC_REQUEST_P95_MS = "gantry_triton_request_p95_ms"
METRIC_QUEUE_TIME_MS = "gantry_triton_queue_time_ms"

_RESOURCES = {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}

RULES: dict[str, Any] = {
    "rules": [
        {
            "seriesQuery": 'nv_inference_request_success{namespace!="",pod!=""}',
            "resources": _RESOURCES,
            "name": {
                "matches": "^nv_inference_request_success$",
                "as": METRIC_REQUESTS_PER_SECOND,
            },
            "metricsQuery": (
                "sum(rate(nv_inference_request_success{<<.LabelMatchers>>}[1m]) + "
                "rate(nv_inference_request_failure{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)"
            ),
        },
        {
            "seriesQuery": (
                'nv_inference_request_summary_us{namespace!="",pod!="",quantile="0.95"}'
            ),
            "resources": _RESOURCES,
            "name": {"matches": "^nv_inference_request_summary_us$", "as": METRIC_REQUEST_P95_MS},
            "metricsQuery": (
                'max(<<.Series>>{<<.LabelMatchers>>,quantile="0.95"}) by (<<.GroupBy>>) / 1000'
            ),
        },
        {
            "seriesQuery": 'nv_inference_queue_duration_us{namespace!="",pod!=""}',
            "resources": _RESOURCES,
            "name": {"matches": "^nv_inference_queue_duration_us$", "as": METRIC_QUEUE_TIME_MS},
            "metricsQuery": (
                "sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>) / "
                "clamp_min(sum(rate(nv_inference_request_success{<<.LabelMatchers>>}[1m])) "
                "by (<<.GroupBy>>), 1e-9) / 1000"
            ),
        },
    ]
}

RULES_YAML: str = yaml.safe_dump(RULES, sort_keys=False, width=200)
