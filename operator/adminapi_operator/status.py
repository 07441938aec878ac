"""Pure status logic: what a Deployment's state means for the AdminApi, as Kubernetes API conventions want it."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from .builders import TEMPLATE_HASH_LABEL


def now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message,
            "observedGeneration": generation}


def merge_conditions(old: list[dict[str, Any]] | None, new: list[dict[str, Any]], now: str) -> list[dict[str, Any]]:
    """New conditions replace old ones of the same type; lastTransitionTime moves only when the status flips."""
    previous = {c["type"]: c for c in old or ()}
    merged = []
    for c in new:
        before = previous.pop(c["type"], None)
        changed = before is None or before.get("status") != c["status"]
        merged.append({**c, "lastTransitionTime": now if changed else before.get("lastTransitionTime", now)})
    return merged + list(previous.values())


def pod_ready(pod: dict[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


@dataclass(frozen=True)
class Progress:
    """How far a Deployment has got with its current template, and what its pods show."""

    replicas: int
    current: int  # pods the Deployment counts (not terminating ones)
    ready: int  # ready pods of the Deployment's current template (the new ReplicaSet) only
    updated: int
    available: int  # available pods of any template
    observed: bool  # the Deployment controller has seen its latest spec
    deadline_exceeded: bool
    pods: int = 0  # API pods of the instance that exist, terminating ones included (listed)

    @classmethod
    def of(cls, deployment: dict[str, Any] | None, pods: list[dict[str, Any]] | None = None,
           template_hash: str | None = None) -> Progress:
        """`pods`: the instance's API pods; `template_hash`: the template the Deployment runs (its pods say)."""
        pods = list(pods or ())
        if deployment is None:
            return cls(0, 0, 0, 0, 0, False, False, len(pods))
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or ()}
        progressing = conditions.get("Progressing") or {}
        observed = int(status.get("observedGeneration") or 0) >= int(deployment["metadata"].get("generation") or 0)
        updated = int(status.get("updatedReplicas") or 0)
        if template_hash is not None:
            ready = sum(1 for p in pods if pod_ready(p) and _pod_template(p) == template_hash)
        else:
            ready = min(int(status.get("readyReplicas") or 0), updated)
        return cls(
            replicas=int(spec.get("replicas", 1)),
            current=int(status.get("replicas") or 0),
            ready=ready,
            updated=updated,
            available=int(status.get("availableReplicas") or 0),
            observed=observed,
            # Until the controller has seen the latest template, a deadline reported is the previous one's.
            deadline_exceeded=observed and progressing.get("reason") == "ProgressDeadlineExceeded",
            pods=len(pods),
        )

    @property
    def complete(self) -> bool:
        """All replicas run the current template and are available, as `kubectl rollout status` means it."""
        total = self.replicas
        return (self.observed and self.current == total and self.updated == total
                and self.available >= total and self.ready >= total)

    @property
    def serving(self) -> bool:
        """Every replica the spec asks for is available (of whichever template)."""
        return self.replicas > 0 and self.observed and self.available >= self.replicas

    def describe(self) -> str:
        return f"{self.ready}/{self.replicas} ready on the current template"


def _pod_template(pod: dict[str, Any]) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(TEMPLATE_HASH_LABEL)


def conditions(generation: int, *, ready: tuple[bool, str, str], progressing: tuple[bool, str, str],
               degraded: tuple[bool, str, str], rolled_out: tuple[bool, str, str]) -> list[dict[str, Any]]:
    """The four conditions, each (status, reason, message). RolledOut is what a pipeline waits on:
    `kubectl wait --for=condition=RolledOut` returns once this generation runs everywhere and passed the gate."""
    return [condition(t, *v, generation) for t, v in
            (("Ready", ready), ("Progressing", progressing), ("Degraded", degraded), ("RolledOut", rolled_out))]


def _ready(progress: Progress) -> tuple[bool, str, str]:
    if progress.replicas == 0:
        return False, "ScaledToZero", "spec.replicas is 0"
    if progress.serving:
        return True, "DeploymentAvailable", f"{progress.available}/{progress.replicas} available"
    return False, "PodsNotReady", f"{progress.available}/{progress.replicas} available; {progress.describe()}"


def workload_status(progress: Progress, generation: int, invalid: str | None = None,
                    held: tuple[str, str] | None = None) -> dict[str, Any]:
    """phase, message and conditions of an instance that is not in a rollout step, from what is observed.

    `held`: (outcome, message) when the spec's template failed before and the last good one keeps running.
    """
    ready = _ready(progress)
    if invalid:
        bad = (False, "InvalidSpec", invalid)
        return {"phase": "Invalid", "message": invalid, "conditions": conditions(
            generation, ready=bad, progressing=bad, degraded=(True, "InvalidSpec", invalid), rolled_out=bad)}
    if held:
        outcome, why = held
        message = f"{why} ({progress.describe()})"
        return {"phase": outcome, "message": message, "conditions": conditions(
            generation, ready=ready, progressing=(not progress.complete, "RollingBack" if not progress.complete
                                                  else outcome, message),
            degraded=(True, outcome, message), rolled_out=(False, outcome, message))}
    if progress.complete:
        if progress.replicas == 0:
            phase, message = "ScaledToZero", "scaled to zero: no pods run"
        else:
            phase, message = "Ready", f"{progress.describe()}; all replicas available"
        reason = phase if phase == "ScaledToZero" else "DeploymentAvailable"
        return {"phase": phase, "message": message, "conditions": conditions(
            generation, ready=ready, progressing=(False, reason, message), degraded=(False, "AsExpected", message),
            rolled_out=(True, "RolledOut", message))}
    if progress.deadline_exceeded:
        message = f"Deployment exceeded its progress deadline: {progress.describe()}"
        reason = "ProgressDeadlineExceeded"
        return {"phase": "Failed", "message": message, "conditions": conditions(
            generation, ready=ready, progressing=(False, reason, message), degraded=(True, reason, message),
            rolled_out=(False, reason, message))}
    message = f"rolling out: {progress.describe()}"
    return {"phase": "Progressing", "message": message, "conditions": conditions(
        generation, ready=ready, progressing=(True, "RollingOut", message), degraded=(False, "AsExpected", message),
        rolled_out=(False, "RollingOut", message))}


def step_status(step: str, message: str, progress: Progress, generation: int, degraded: bool = False) -> dict[str, Any]:
    """phase, message and conditions while a rollout step is under way."""
    return {"phase": step, "message": message, "conditions": conditions(
        generation, ready=_ready(progress), progressing=(True, step, message),
        degraded=(degraded, step if degraded else "AsExpected", message), rolled_out=(False, step, message))}
