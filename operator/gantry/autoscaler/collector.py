"""Memory between scrapes: the last sample and recent windows of every pod of a service.

No I/O: the caller scrapes and hands over what each pod said. Pods that left the
service (no longer Ready, deleted) are forgotten; a pod whose scrape failed keeps its
last sample, so its next successful scrape yields one longer window instead of none.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from gantry.autoscaler.rates import (
    SUMMARY_AGE_SECONDS,
    PodSample,
    PodWindow,
    ServiceMetrics,
    aggregate,
    pod_window,
)
from gantry.autoscaler.triton_metrics import TritonCounters


class ServiceCollector:
    """Feeds scrapes of one service in, gets `ServiceMetrics` out."""

    def __init__(self, history_seconds: float = SUMMARY_AGE_SECONDS) -> None:
        self.history_seconds = history_seconds
        self._last: dict[str, PodSample] = {}
        self._history: dict[str, deque[PodWindow]] = {}

    @property
    def known_pods(self) -> frozenset[str]:
        return frozenset(self._last)

    def observe(
        self,
        samples: Mapping[str, TritonCounters | None],
        *,
        failed: Iterable[str] = (),
        at: float,
    ) -> ServiceMetrics:
        """Record one round of scrapes taken at `at` (monotonic seconds)."""
        failed_pods = sorted(set(failed) - set(samples))
        present = set(samples) | set(failed_pods)
        for gone in set(self._last) - present:
            self._last.pop(gone, None)
            self._history.pop(gone, None)
        windows: list[PodWindow] = []
        histories: dict[str, list[PodWindow]] = {}
        new_pods: list[str] = []
        new_pending = 0.0
        for pod in sorted(samples):
            counters = samples[pod] or TritonCounters()
            sample = PodSample(pod=pod, at=at, counters=counters)
            prev = self._last.get(pod)
            self._last[pod] = sample
            window = pod_window(prev, sample) if prev is not None else None
            if window is None:
                new_pods.append(pod)
                new_pending += counters.pending
                continue
            history = self._history.setdefault(pod, deque())
            histories[pod] = list(history)
            history.append(window)
            while history and history[0].end < at - self.history_seconds:
                history.popleft()
            windows.append(window)
        return aggregate(
            windows,
            histories=histories,
            new_pods=new_pods,
            failed_pods=failed_pods,
            new_pod_pending=new_pending,
        )
