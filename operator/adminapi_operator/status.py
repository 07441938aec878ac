"""Pure status logic: what a Deployment's state means for the AdminApi, as Kubernetes API conventions want it."""
from __future__ import annotations

import datetime
import re
from dataclasses import dataclass
from typing import Any, Iterator

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


# Waiting reasons that are only a step on the way (every other one says what is wrong).
_ON_THE_WAY = {"ContainerCreating", "PodInitializing"}
# A container the kubelet cannot configure: the spec names a Secret, ConfigMap or key that does not exist (the
# operator cannot check that in advance: it never reads Secrets). The kubelet retries, but only a change made
# elsewhere ends it. CreateContainerError is mostly the runtime's own trouble: only a missing reference counts.
CONFIG_ERROR = "ConfigError"
_MISSING = re.compile(r'\b(secret|configmap)s? "[^"]+" not found|couldn\'t find key \S+ in (Secret|ConfigMap) ', re.I)


def _cannot_configure(waiting: dict[str, Any]) -> bool:
    return waiting.get("reason") == "CreateContainerConfigError" or (
        waiting.get("reason") == "CreateContainerError" and bool(_MISSING.search(waiting.get("message") or "")))


def _unready(pods: list[dict[str, Any]], template_hash: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Name and status of each pod of the template that is not ready (terminating ones aside)."""
    for pod in pods:
        meta = pod.get("metadata") or {}
        if _pod_template(pod) == template_hash and not pod_ready(pod) and not meta.get("deletionTimestamp"):
            yield meta.get("name", "?"), pod.get("status") or {}


def _containers(status: dict[str, Any]) -> list[dict[str, Any]]:
    return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])


def _waiting(pod: str, container: dict[str, Any]) -> str:
    waiting = (container.get("state") or {}).get("waiting") or {}
    why = f": {waiting['message'][:300]}" if waiting.get("message") else ""
    return f"pod {pod}, container {container.get('name')}: {waiting.get('reason')}{why}"


def pod_trouble(pods: list[dict[str, Any]], template_hash: str) -> str | None:
    """Why a pod of the template is not ready, as the scheduler and the kubelet say it (None: nothing wrong yet).

    Only names and reasons: a missing Secret reads `secret "x" not found`, never a value.
    """
    for name, status in _unready(pods, template_hash):
        for c in status.get("conditions") or ():
            if c.get("type") == "PodScheduled" and c.get("status") == "False":
                return f"pod {name} cannot be scheduled: {(c.get('message') or c.get('reason') or '')[:300]}"
        for cs in _containers(status):
            state = cs.get("state") or {}
            waiting, done = state.get("waiting") or {}, state.get("terminated") or {}
            if waiting.get("reason") and waiting["reason"] not in _ON_THE_WAY:
                return _waiting(name, cs)
            if done and done.get("exitCode"):
                return f"pod {name}, container {cs.get('name')} exited with {done['exitCode']} ({done.get('reason', '')})"
        if status.get("phase") == "Running" and all(cs.get("started") for cs in status.get("containerStatuses") or [{}]):
            return f"pod {name} runs but is not ready: its readiness probe (/health/ready) fails"
    return None


def config_error(pods: list[dict[str, Any]], template_hash: str) -> str | None:
    """A pod of the template the kubelet cannot configure, as it says it (None: none)."""
    for name, status in _unready(pods, template_hash):
        for cs in _containers(status):
            if _cannot_configure((cs.get("state") or {}).get("waiting") or {}):
                return _waiting(name, cs)
    return None


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
    trouble: str | None = None  # why a pod of the current template is not ready, when one says so
    config_error: str | None = None  # a pod of the current template the kubelet cannot configure: what it says

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
            trouble=pod_trouble(pods, template_hash) if template_hash else None,
            config_error=config_error(pods, template_hash) if template_hash else None,
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
        counts = f"{self.ready}/{self.replicas} ready on the current template"
        trouble = self.config_error or self.trouble  # a permanent error first, whichever pod shows it
        return f"{counts} ({trouble})" if trouble and self.ready < self.replicas else counts


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
    reason = CONFIG_ERROR if progress.config_error else "PodsNotReady"
    return False, reason, f"{progress.available}/{progress.replicas} available; {progress.describe()}"


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
    # A pod that cannot be configured is said as soon as it is seen, not at the Deployment's progress deadline.
    reason = CONFIG_ERROR if progress.config_error else "RollingOut"
    degraded = (True, CONFIG_ERROR, message) if progress.config_error else (False, "AsExpected", message)
    return {"phase": "Progressing", "message": message, "conditions": conditions(
        generation, ready=ready, progressing=(True, reason, message), degraded=degraded,
        rolled_out=(False, reason, message))}


def step_status(step: str, message: str, progress: Progress, generation: int, degraded: bool = False) -> dict[str, Any]:
    """phase, message and conditions while a rollout step is under way."""
    return {"phase": step, "message": message, "conditions": conditions(
        generation, ready=_ready(progress), progressing=(True, step, message),
        degraded=(degraded, step if degraded else "AsExpected", message), rolled_out=(False, step, message))}
