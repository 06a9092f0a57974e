"""Training progress in the TrainingJob's status, for ``kubectl get`` and dashboards.

``build_progress`` is the pure part (numbers in, status fields out); ``ProgressReporter``
adds rate limiting and a best-effort PATCH that never stops training.
"""

from __future__ import annotations

import logging
import math
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from training_jobs.distributed import DistributedContext, current_rank
from training_jobs.kube import ApiError, ApiTarget, discover_api, merge_patch
from training_jobs.logs import ensure_configured

__all__ = ["ProgressReporter", "build_progress", "estimate_eta", "rfc3339"]

log = logging.getLogger(__name__)


def rfc3339(moment: datetime) -> str:
    """``2026-11-30T04:00:00Z``: UTC, whole seconds, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _finite(value: float | None) -> float | None:
    """JSON has no NaN/Infinity and the API rejects them: leave such values out."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def estimate_eta(steps_done: int, steps_remaining: int, elapsed_seconds: float) -> int | None:
    """Seconds left at the rate observed so far; None until there is a rate."""
    if steps_remaining <= 0:
        return 0
    if steps_done <= 0 or elapsed_seconds <= 0:
        return None
    return round(steps_remaining * elapsed_seconds / steps_done)


def build_progress(
    *,
    epoch: int,
    total_epochs: int,
    step: int,
    total_steps: int | None,
    loss: float | None,
    metrics: Mapping[str, float] | None,
    eta_seconds: int | None,
    now: datetime,
) -> dict[str, Any]:
    """The ``status.progress`` object; keys follow the TrainingJob API (camelCase)."""
    if total_steps:
        fraction = step / total_steps
    else:
        fraction = epoch / total_epochs if total_epochs > 0 else 0.0
    percent = max(0, min(100, math.floor(fraction * 100)))
    finite_loss = _finite(loss)
    clean_metrics = {
        str(name): v for name, raw in (metrics or {}).items() if (v := _finite(raw)) is not None
    }
    summary = f"epoch {epoch}/{total_epochs}"
    if finite_loss is not None:
        summary += f" loss {finite_loss:.3f}"
    progress: dict[str, Any] = {
        "epoch": int(epoch),
        "totalEpochs": int(total_epochs),
        "step": int(step),
        "metrics": clean_metrics,
        "percent": percent,
        "summary": summary,
        "updatedAt": rfc3339(now),
    }
    if total_steps is not None:
        progress["totalSteps"] = int(total_steps)
    if finite_loss is not None:
        progress["loss"] = finite_loss
    if eta_seconds is not None:
        progress["etaSeconds"] = int(eta_seconds)
    return progress


def status_path(namespace: str, name: str) -> str:
    quote = urllib.parse.quote
    return (
        f"/apis/gantry.dev/v1alpha1/namespaces/{quote(namespace, safe='')}"
        f"/trainingjobs/{quote(name, safe='')}/status"
    )


class ProgressReporter:
    """Report progress to ``status.progress`` of this TrainingJob (rank 0 only).

    At most one PATCH per ``min_interval`` seconds (backing off up to ``max_backoff``
    while the API fails, so a hung API costs little time); ``final=True`` always sends.
    Failures are logged once per outage and never raised. Outside a cluster (no
    ``GANTRY_JOB_NAME`` or no API) the latest progress is only kept in ``latest``.
    """

    def __init__(
        self,
        *,
        total_epochs: int,
        total_steps: int | None = None,
        initial_step: int = 0,
        min_interval: float = 5.0,
        timeout: float = 5.0,
        max_backoff: float = 60.0,
        job_name: str | None = None,
        namespace: str | None = None,
        api: ApiTarget | None = None,
        context: DistributedContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        if total_steps is not None and total_steps < 1:
            raise ValueError(f"total_steps must be >= 1 or None, got {total_steps}")
        ensure_configured()
        self.total_epochs = total_epochs
        self.total_steps = total_steps
        self.min_interval = min_interval
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.latest: dict[str, Any] | None = None
        self._clock = clock
        self._started = clock()
        self._initial_step = initial_step
        self._last_sent: float | None = None
        self._failures = 0
        self.is_main = context.is_main if context is not None else current_rank() == 0
        self._api = api if api is not None else discover_api()
        self._name = job_name or os.environ.get("GANTRY_JOB_NAME") or None
        self._namespace = (
            namespace
            or os.environ.get("GANTRY_JOB_NAMESPACE")
            or (self._api.namespace if self._api else None)
        )
        if self.is_main and not self.enabled:
            log.info("progress reporting to the TrainingJob status is off (%s)", self._why_off())

    @property
    def enabled(self) -> bool:
        return self.is_main and bool(self._api and self._name and self._namespace)

    def _why_off(self) -> str:
        if not self._name:
            return "GANTRY_JOB_NAME is not set"
        if not self._api:
            return "no Kubernetes API: set KUBERNETES_SERVICE_HOST or GANTRY_API_URL"
        return "no namespace: set GANTRY_JOB_NAMESPACE"

    def report(
        self,
        *,
        epoch: int,
        step: int,
        loss: float | None = None,
        metrics: Mapping[str, float] | None = None,
        final: bool = False,
    ) -> bool:
        """Record progress; PATCH it unless rate-limited. True when the API accepted it."""
        now = self._clock()
        remaining = (self.total_steps - step) if self.total_steps is not None else 0
        eta = (
            estimate_eta(step - self._initial_step, remaining, now - self._started)
            if self.total_steps is not None
            else None
        )
        self.latest = build_progress(
            epoch=epoch,
            total_epochs=self.total_epochs,
            step=step,
            total_steps=self.total_steps,
            loss=loss,
            metrics=metrics,
            eta_seconds=eta,
            now=datetime.now(UTC),
        )
        if not self.enabled:
            return False
        if not final and self._last_sent is not None and now - self._last_sent < self._interval():
            return False
        self._last_sent = now
        return self._send(self.latest)

    def _interval(self) -> float:
        if self._failures == 0:
            return self.min_interval
        return min(self.max_backoff, self.min_interval * 2.0**self._failures)

    def _send(self, progress: dict[str, Any]) -> bool:
        assert self._api is not None and self._name and self._namespace
        try:
            merge_patch(
                self._api,
                status_path(self._namespace, self._name),
                {"status": {"progress": progress}},
                timeout=self.timeout,
            )
        except ApiError as exc:
            if self._failures == 0:
                log.warning("could not report progress (training continues): %s", exc)
            self._failures += 1
            return False
        if self._failures:
            log.info("progress reporting works again")
        self._failures = 0
        return True
