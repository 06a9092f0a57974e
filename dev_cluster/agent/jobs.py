"""The Job controller (batch/v1): pods per completion, retries, deadlines, suspension."""

from __future__ import annotations

from typing import Any

from . import api as k8s
from .api import APIClient, APIError
from .events import Recorder
from .informer import Informer
from .podstatus import is_ready, now
from .selectors import owned_by
from .workloads import condition_true, is_active, pod_from_template, seconds_since, set_condition

Obj = dict[str, Any]
INDEX_KEY = "batch.kubernetes.io/job-completion-index"


def compress_indexes(indexes: set[int]) -> str:
    """{0,1,2,4} → "0-2,4" (the completedIndexes format)."""
    parts: list[str] = []
    ordered = sorted(indexes)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def pod_index(pod: Obj) -> int | None:
    value = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def job_pod(job: Obj, index: int | None) -> Obj:
    meta, spec = job["metadata"], job["spec"]
    name, uid = meta["name"], meta["uid"]
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    prefix = f"{name}-" if index is None else f"{name}-{index}-"
    if index is not None:
        labels[INDEX_KEY] = str(index)
    pod = pod_from_template(job, spec.get("template") or {}, prefix, labels)
    if index is not None:
        pod["metadata"]["annotations"][INDEX_KEY] = str(index)
        pod["spec"]["hostname"] = f"{name}-{index}"
        env = {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_KEY}']"}},
        }
        for kind in ("initContainers", "containers"):
            for c in pod["spec"].get(kind) or []:
                c["env"] = [env, *[e for e in c.get("env") or [] if e.get("name") != env["name"]]]
    return pod


def failure_count(pods: list[Obj]) -> int:
    """Failed pods, plus container restarts of OnFailure pods (both count toward backoffLimit)."""
    failed = 0
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") == "Failed":
            failed += 1
        if (pod.get("spec") or {}).get("restartPolicy") == "OnFailure":
            failed += sum(
                int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or []
            )
    return failed


def matching_fail_rule(job: Obj, pods: list[Obj]) -> Obj | None:
    """The first podFailurePolicy rule with action FailJob matched by a failed pod."""
    rules = ((job["spec"].get("podFailurePolicy") or {}).get("rules")) or []
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") != "Failed":
            continue
        for rule in rules:
            on_exit = rule.get("onExitCodes")
            if not on_exit or rule.get("action") != "FailJob":
                continue
            codes = [
                (c.get("state") or {}).get("terminated", {}).get("exitCode")
                for c in status.get("containerStatuses") or []
                if not on_exit.get("containerName") or c.get("name") == on_exit.get("containerName")
            ]
            values = set(on_exit.get("values") or [])
            hit = [c for c in codes if c not in (None, 0)]
            if on_exit.get("operator") == "In" and any(c in values for c in hit):
                return {"pod": pod, "rule": rule}
            if on_exit.get("operator") == "NotIn" and any(c not in values for c in hit):
                return {"pod": pod, "rule": rule}
    return None


class JobController:
    def __init__(self, client: APIClient, jobs: Informer, pods: Informer) -> None:
        self.client = client
        self.jobs = jobs
        self.pods = pods
        self.record = Recorder(client, "job-controller")

    async def reconcile(self) -> None:
        for job in self.jobs.items():
            if not job["metadata"].get("deletionTimestamp"):
                await self.sync(job)

    async def _delete_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            answer = await self.client.delete(k8s.PODS, meta.get("namespace"), meta["name"])
        except APIError as exc:
            if exc.status != 404:
                raise
            self.pods.remove(pod)
            return
        if answer.get("kind") == "Pod" and answer.get("metadata", {}).get("deletionTimestamp"):
            self.pods.upsert(answer)
        else:
            self.pods.remove(pod)

    async def _write_status(self, job: Obj, status: Obj) -> None:
        current = job.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        meta = job["metadata"]
        answer = await self.client.patch(
            k8s.JOBS, meta.get("namespace"), meta["name"], {"status": status}, sub="status"
        )
        self.jobs.upsert(answer)

    async def sync(self, job: Obj) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        ns, uid = str(meta.get("namespace") or "default"), str(meta["uid"])
        status = dict(job.get("status") or {})
        pods = [p for p in self.pods.items(ns) if owned_by(p, uid)]
        active = [p for p in pods if is_active(p)]
        succeeded = [p for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"]
        conditions = list(status.get("conditions") or [])

        if condition_true(job, "Complete") or condition_true(job, "Failed"):
            if condition_true(job, "Failed"):
                for p in active:
                    await self._delete_pod(p)
            ttl = spec.get("ttlSecondsAfterFinished")
            finished_at = status.get("completionTime") or next(
                (c.get("lastTransitionTime") for c in conditions if c.get("type") == "Failed"), None
            )
            if ttl is not None and seconds_since(finished_at) >= float(ttl):
                try:
                    await self.client.delete(k8s.JOBS, ns, meta["name"], propagation="Background")
                except APIError as exc:
                    if exc.status != 404:
                        raise
            return

        if spec.get("suspend"):
            for p in active:
                await self._delete_pod(p)
            if not condition_true(job, "Suspended"):
                conditions = set_condition(
                    conditions, "Suspended", "True", "JobSuspended", "Job suspended"
                )
            await self._write_status(
                job, {"active": 0, "ready": 0, "conditions": conditions, "startTime": None}
            )
            return
        if condition_true(job, "Suspended"):
            conditions = set_condition(
                conditions, "Suspended", "False", "JobResumed", "Job resumed"
            )
            status["startTime"] = None

        start = status.get("startTime") or now()
        failed = failure_count(pods)
        limit = int(spec.get("backoffLimit", 6))
        indexed = spec.get("completionMode") == "Indexed"
        done_indexes = {i for p in succeeded if (i := pod_index(p)) is not None}
        base: Obj = {
            "startTime": start,
            "failed": failed,
            "succeeded": len(done_indexes) if indexed else len(succeeded),
            "terminating": len([p for p in pods if p["metadata"].get("deletionTimestamp")]),
            "uncountedTerminatedPods": {},
        }
        if indexed:
            base["completedIndexes"] = compress_indexes(done_indexes)

        failure: tuple[str, str] | None = None
        rule = matching_fail_rule(job, pods)
        if rule is not None:
            failure = (
                "PodFailurePolicy",
                f"Pod {ns}/{rule['pod']['metadata']['name']} has condition matching a FailJob rule",
            )
        elif failed > limit:
            failure = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif spec.get("activeDeadlineSeconds") is not None and seconds_since(start) >= float(
            spec["activeDeadlineSeconds"]
        ):
            failure = ("DeadlineExceeded", "Job was active longer than specified deadline")
        if failure is not None:
            for p in active:
                await self._delete_pod(p)
            conditions = set_condition(conditions, "FailureTarget", "True", *failure)
            conditions = set_condition(conditions, "Failed", "True", *failure)
            self.record(job, "Job", failure[0], failure[1], warning=True)
            await self._write_status(
                job, {**base, "active": 0, "ready": 0, "conditions": conditions}
            )
            return

        parallelism = int(spec.get("parallelism", 1))
        completions = spec.get("completions")
        complete = False
        if indexed:
            total = int(completions or 1)
            complete = len(done_indexes) >= total
            busy = {pod_index(p) for p in active}
            missing = [i for i in range(total) if i not in done_indexes and i not in busy]
            for index in missing[: max(parallelism - len(active), 0)] if not complete else []:
                await self._create(job, index, active)
        else:
            if completions is None:
                complete = bool(succeeded) and not active
                want = 0 if succeeded else parallelism
            else:
                complete = len(succeeded) >= int(completions)
                want = min(parallelism, int(completions) - len(succeeded))
            for _ in range(max(want - len(active), 0)) if not complete else []:
                await self._create(job, None, active)
        if complete:
            for p in active:
                await self._delete_pod(p)
            conditions = set_condition(
                conditions,
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
            conditions = set_condition(
                conditions,
                "Complete",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            )
            base["completionTime"] = now()
            self.record(job, "Job", "Completed", "Job completed")
            active = []
        base["active"] = len(active)
        base["ready"] = len([p for p in active if is_ready(p)])
        base["conditions"] = conditions
        await self._write_status(job, base)

    async def _create(self, job: Obj, index: int | None, active: list[Obj]) -> None:
        ns = job["metadata"].get("namespace") or "default"
        answer = await self.client.create(k8s.PODS, ns, job_pod(job, index))
        self.pods.upsert(answer)
        self.record(job, "Job", "SuccessfulCreate", f"Created pod: {answer['metadata']['name']}")
        active.append(answer)
