"""Pure status logic: what a Deployment's state means for the AdminApi, as Kubernetes API conventions want it."""
from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any


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


@dataclass(frozen=True)
class Progress:
    """How far a Deployment has got with its current template."""

    replicas: int
    current: int  # pods of any template, old ones included
    ready: int
    updated: int
    available: int
    observed: bool  # the Deployment controller has seen its latest spec
    deadline_exceeded: bool

    @classmethod
    def of(cls, deployment: dict[str, Any] | None) -> Progress:
        if deployment is None:
            return cls(0, 0, 0, 0, 0, False, False)
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or ()}
        progressing = conditions.get("Progressing") or {}
        observed = int(status.get("observedGeneration") or 0) >= int(deployment["metadata"].get("generation") or 0)
        return cls(
            replicas=int(spec.get("replicas", 1)),
            current=int(status.get("replicas") or 0),
            ready=int(status.get("readyReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            observed=observed,
            # Until the controller has seen the latest template, a deadline reported is the previous one's.
            deadline_exceeded=observed and progressing.get("reason") == "ProgressDeadlineExceeded",
        )

    @property
    def complete(self) -> bool:
        """All replicas run the current template and are available, as `kubectl rollout status` means it."""
        total = self.replicas
        return (self.observed and self.current == total and self.updated == total
                and self.available >= total and self.ready >= total)

    def describe(self) -> str:
        return f"{self.ready}/{self.replicas} ready, {self.updated}/{self.replicas} on the current template"


def summary(phase: str, message: str, generation: int, reason: str,
            ready: bool, progressing: bool, degraded: bool) -> dict[str, Any]:
    """phase, message and the three conditions, all for one reason."""
    return {
        "phase": phase,
        "message": message,
        "conditions": [
            condition("Ready", ready, reason, message, generation),
            condition("Progressing", progressing, reason, message, generation),
            condition("Degraded", degraded, reason if degraded else "AsExpected", message, generation),
        ],
    }


def workload_status(progress: Progress, generation: int, invalid: str | None = None) -> dict[str, Any]:
    """phase + Ready/Progressing/Degraded for an instance that is not in the middle of a rollout step."""
    if invalid:
        return summary("Invalid", invalid, generation, "InvalidSpec", ready=False, progressing=False, degraded=True)
    if progress.complete:
        return summary("Ready", f"{progress.describe()}; all replicas available", generation, "DeploymentAvailable",
                        ready=True, progressing=False, degraded=False)
    if progress.deadline_exceeded:
        return summary("Failed", f"Deployment exceeded its progress deadline: {progress.describe()}", generation,
                        "ProgressDeadlineExceeded", ready=False, progressing=False, degraded=True)
    return summary("Progressing", f"rolling out: {progress.describe()}", generation, "RollingOut",
                    ready=False, progressing=True, degraded=False)
