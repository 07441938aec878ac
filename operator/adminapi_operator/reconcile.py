"""Reconciliation of one AdminApi: converge the owned objects and drive safe rollouts.

Level-based and idempotent: every call reads the AdminApi (its spec and status) and the live objects, does
the next step, and records it in status. All rollout state lives in `status`, so an operator restarted at any
step picks up where it was: Job names are derived from the rollout id, so a step in flight is never doubled.

A rollout is a change of the pod template of an instance that already has a last good template:
  BackingUp -> RollingOut -> Verifying -> Ready
                                      \\-> (RestoringDatabase ->) RolledBack
"""
from __future__ import annotations

import copy
import datetime
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

from . import builders
from .builders import Owner
from .kube import Kube
from .spec import AdminApiSpec, InvalidSpec
from .status import Progress, condition, merge_conditions, now_iso, summary, workload_status


RETRY_ANNOTATION = "aistreams.io/retry-rollout"
HISTORY_LENGTH = 10
BOOTSTRAP_ADMIN = "admin"


class Waiting(Exception):
    """A step is under way; call again after `delay` seconds."""

    def __init__(self, message: str, delay: float = 2.0):
        super().__init__(message)
        self.delay = delay


@dataclass
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """What one reconcile call did, for the handler to report."""

    events: list[Event] = field(default_factory=list)
    waiting: Waiting | None = None  # a step is under way: call again after waiting.delay


def _parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_state(job: dict[str, Any] | None) -> str | None:
    """'Complete', 'Failed', or None while it runs (or does not exist)."""
    for c in ((job or {}).get("status") or {}).get("conditions") or ():
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return c["type"]
    return None


@dataclass
class Instance:
    """One AdminApi as one reconcile call sees it. `status` mirrors what has been written so far."""

    owner: Owner
    spec: AdminApiSpec
    status: dict[str, Any]
    generation: int
    outcome: Outcome

    @property
    def spec_changed(self) -> bool:
        """The spec moved since the last reconcile: a difference in the objects is then an update, not drift."""
        return self.status.get("observedGeneration") != self.generation

    def event(self, type_: str, reason: str, message: str) -> None:
        self.outcome.events.append(Event(type_, reason, message))


class Reconciler:
    def __init__(self, kube: Kube, check_health: Callable[[str], str | None],
                 clock: Callable[[], datetime.datetime] | None = None):
        self.kube = kube
        self.check_health = check_health
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))

    # --- entry point ---------------------------------------------------------------------------------

    def reconcile(self, body: dict[str, Any]) -> Outcome:
        outcome = Outcome()
        owner = Owner.from_body(body)
        status = copy.deepcopy(dict(body.get("status") or {}))
        generation = int(body["metadata"].get("generation") or 0)
        try:
            spec = AdminApiSpec.parse(body.get("spec") or {}, owner.name)
        except InvalidSpec as e:
            if status.get("phase") != "Invalid" or status.get("message") != str(e):
                outcome.events.append(Event("Warning", "InvalidSpec", str(e)))
            self._write_status(owner, status, {**workload_status(Progress.of(None), generation, invalid=str(e)),
                                               "observedGeneration": generation})
            return outcome

        inst = Instance(owner, spec, status, generation, outcome)
        self._ensure_supporting_objects(inst)
        desired = builders.pod_template(owner.name, spec)
        desired_hash = builders.template_hash(desired)
        last_good = status.get("lastGood")
        retry = (body["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION)
        if retry and retry != status.get("retryToken"):
            self._write(inst, {"failedTemplateHash": None, "retryToken": retry})
        try:
            if not last_good or last_good["templateHash"] == desired_hash:
                self._converge(inst, desired, desired_hash)
            elif desired_hash == status.get("failedTemplateHash"):
                self._hold_last_good(inst, last_good)
            else:
                self._rollout(inst, desired, desired_hash, last_good)
        except Waiting as waiting:
            outcome.waiting = waiting
        return outcome

    # --- owned objects ------------------------------------------------------------------------------

    def _ensure_supporting_objects(self, inst: Instance) -> None:
        owner, spec = inst.owner, inst.spec
        secret = builders.bootstrap_secret(owner, BOOTSTRAP_ADMIN, secrets.token_urlsafe(24))
        if self.kube.create_if_absent(secret):
            inst.event("Normal", "SecretCreated",
                       f"generated the first admin's credentials in Secret {secret['metadata']['name']}")
        self._apply(inst, builders.service(owner, spec))
        pdb = builders.pod_disruption_budget(owner, spec)
        if pdb:
            self._apply(inst, pdb)
        elif self.kube.delete("policy/v1", "PodDisruptionBudget", owner.namespace, owner.name):
            inst.event("Normal", "Deleted", "PodDisruptionBudget removed: a single replica has none")

    def _apply(self, inst: Instance, desired: dict[str, Any]) -> dict[str, Any]:
        """Apply `desired` unless the live object already has all our fields; tell drift from updates."""
        meta = desired["metadata"]
        live = self.kube.get(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        if live is not None and contains(live, desired):
            return live
        intended = inst.spec_changed or (
            desired["kind"] == "Deployment" and _deployment_hash(live) != _deployment_hash(desired))
        if not intended and inst.status.get("observedGeneration") is not None:
            what = "re-created" if live is None else "put back to its desired state"
            inst.event("Normal", "DriftRepaired", f"{desired['kind']} {meta['name']} {what}")
        return self.kube.apply(desired)

    def _apply_deployment(self, inst: Instance, template: dict[str, Any], replicas: int | None = None) -> dict[str, Any]:
        deployment = builders.deployment(inst.owner, inst.spec, template)
        if replicas is not None:
            deployment["spec"]["replicas"] = replicas
        return self._apply(inst, deployment)

    # --- steady state and first install -------------------------------------------------------------

    def _converge(self, inst: Instance, desired: dict[str, Any], desired_hash: str) -> None:
        spec = inst.spec
        deployment = self._apply_deployment(inst, desired)
        progress = Progress.of(deployment)
        update = {**workload_status(progress, inst.generation), **_replica_fields(progress),
                  "currentImage": spec.image, "templateHash": desired_hash, "observedGeneration": inst.generation,
                  "rollout": None}
        if progress.complete and _deployment_hash(deployment) == desired_hash:
            if (inst.status.get("lastGood") or {}).get("templateHash") != desired_hash:
                update["lastGood"] = _last_good(spec, desired, desired_hash)
                update["lastGoodImage"] = spec.image
            if inst.status.get("phase") != "Ready":
                inst.event("Normal", "Ready", f"{spec.image}: {progress.describe()}")
        elif progress.deadline_exceeded and inst.status.get("phase") != "Failed":
            inst.event("Warning", "ProgressDeadlineExceeded", update["message"])
        self._write(inst, update)

    def _hold_last_good(self, inst: Instance, last_good: dict[str, Any]) -> None:
        """The spec still asks for a template that failed: keep running the last good one until it changes."""
        deployment = self._apply_deployment(inst, last_good["template"])
        self._write(inst, {**_replica_fields(Progress.of(deployment)), "currentImage": last_good["image"],
                           "observedGeneration": inst.generation})

    # --- rollouts -----------------------------------------------------------------------------------

    def _rollout(self, inst: Instance, desired: dict[str, Any], desired_hash: str, last_good: dict[str, Any]) -> None:
        spec = inst.spec
        rollout = copy.deepcopy(inst.status.get("rollout"))
        if rollout and rollout.get("id") != desired_hash:
            # The spec moved on mid-rollout: the new template starts its own rollout, with its own backup.
            self._write(inst, {"history": self._history(inst, rollout, "Superseded", f"superseded by {spec.image}")})
        if not rollout or rollout.get("id") != desired_hash:
            rollout = {"id": desired_hash, "image": spec.image, "fromImage": last_good["image"],
                       "step": "BackingUp" if spec.backup_enabled else "RollingOut", "startedAt": now_iso()}
            inst.event("Normal", "RolloutStarted", f"rolling out {spec.image} (from {last_good['image']})")
            self._record_step(inst, rollout)

        if rollout["step"] == "BackingUp":
            self._step_backup(inst, rollout, last_good)
        if rollout["step"] == "RollingOut":
            self._apply_deployment(inst, desired)
            rollout.update(step="Verifying", verifyingSince=now_iso())
            self._record_step(inst, rollout, currentImage=spec.image)
        if rollout["step"] == "Verifying":
            self._step_verify(inst, rollout, desired, desired_hash)
        if rollout["step"] in ("RestoringDatabase", "RollingBack"):
            self._step_roll_back(inst, rollout, last_good)

    def _record_step(self, inst: Instance, rollout: dict[str, Any], **extra: Any) -> None:
        step = rollout["step"]
        message = {
            "BackingUp": f"backing the database up before rolling out {rollout['image']}",
            "RollingOut": f"rolling out {rollout['image']}",
            "Verifying": f"waiting for {rollout['image']} to become available and healthy",
            "RestoringDatabase": "restoring the pre-rollout database backup",
            "RollingBack": f"rolling back to {rollout['fromImage']}",
        }[step]
        self._write(inst, {"phase": step, "message": message, "rollout": rollout, "observedGeneration": inst.generation,
                           "conditions": [condition("Progressing", True, step, message, inst.generation)], **extra})

    def _step_backup(self, inst: Instance, rollout: dict[str, Any], last_good: dict[str, Any]) -> None:
        owner, spec = inst.owner, inst.spec
        if "backupKey" not in rollout:
            key = builders.backup_key(owner.name, last_good["image"], rollout["id"], rollout["startedAt"])
            rollout.update(backupKey=key)
            self._record_step(inst, rollout)
        kept = f"nothing was rolled out; {rollout['fromImage']} keeps running"
        if not spec.backup_target:
            self._backup_failed(inst, rollout, "spec.backup is enabled but spec.minio is incomplete (endpoint, "
                                               f"bucket, accessKeySecretRef, secretKeySecretRef): {kept}")
            return
        job = builders.backup_job(owner, spec, last_good["image"], rollout["id"], rollout["backupKey"])
        name = job["metadata"]["name"]
        if self._run_job(inst, job, "BackupStarted", f"backs the database up to {rollout['backupKey']}") == "Failed":
            self._backup_failed(inst, rollout, f"backup Job {name} failed: {kept}")
            return
        location = f"s3://{spec.minio_bucket}/{rollout['backupKey']}"
        rollout["step"] = "RollingOut"
        inst.event("Normal", "BackupCompleted", f"database backed up to {location}")
        self._record_step(inst, rollout, lastBackup={"name": name, "time": now_iso(), "location": location})

    def _run_job(self, inst: Instance, job: dict[str, Any], started_reason: str, what: str) -> str:
        """Create `job` once (its name is the rollout's) and return 'Complete' or 'Failed'; Waiting while it runs."""
        name = job["metadata"]["name"]
        live = self.kube.get("batch/v1", "Job", inst.owner.namespace, name)
        if live is None:
            live = self.kube.apply(job)
            inst.event("Normal", started_reason, f"Job {name} {what}")
        state = job_state(live)
        if state is None:
            raise Waiting(f"Job {name} is running")
        return state

    def _backup_failed(self, inst: Instance, rollout: dict[str, Any], message: str) -> None:
        inst.event("Warning", "BackupFailed", message)
        self._finish(inst, rollout, "BackupFailed", message)

    def _step_verify(self, inst: Instance, rollout: dict[str, Any], desired: dict[str, Any], desired_hash: str) -> None:
        owner, spec = inst.owner, inst.spec
        deployment = self._apply_deployment(inst, desired)
        progress = Progress.of(deployment)
        deadline = _parse_time(rollout["verifyingSince"]) + datetime.timedelta(seconds=spec.rollout_timeout_seconds)
        failure = None
        if progress.complete and _deployment_hash(deployment) == desired_hash:
            failure = self.check_health(builders.health_base_url(owner, spec)) if spec.rollout_health_checks else None
            if failure is None:
                message = f"{spec.image} is available and healthy: {progress.describe()}"
                inst.event("Normal", "RolloutSucceeded", message)
                self._finish(inst, rollout, "Succeeded", message, lastGood=_last_good(spec, desired, desired_hash),
                             lastGoodImage=spec.image, **_replica_fields(progress))
                return
            failure = f"health check failed: {failure}"
        elif progress.deadline_exceeded:
            failure = f"Deployment exceeded its progress deadline ({progress.describe()})"
        if self.clock() < deadline and not progress.deadline_exceeded:
            self._write(inst, _replica_fields(progress))
            raise Waiting(f"verifying {spec.image}: {failure or progress.describe()}")
        reason = failure or f"not available within {spec.rollout_timeout_seconds}s ({progress.describe()})"
        restore = spec.rollback_restore_database and inst.status.get("lastBackup") and rollout.get("backupKey")
        rollout.update(step="RestoringDatabase" if restore else "RollingBack", failure=reason)
        inst.event("Warning", "RolloutFailed", f"{spec.image}: {reason}; rolling back")
        self._record_step(inst, rollout)

    def _step_roll_back(self, inst: Instance, rollout: dict[str, Any], last_good: dict[str, Any]) -> None:
        owner, spec = inst.owner, inst.spec
        if rollout["step"] == "RestoringDatabase":
            # Stop every pod first: neither version may write while the database goes back in time.
            stopped = Progress.of(self._apply_deployment(inst, last_good["template"], replicas=0))
            if stopped.current:
                raise Waiting(f"waiting for {stopped.current} pods to stop before the restore")
            location = inst.status["lastBackup"]["location"]
            job = builders.restore_job(owner, spec, last_good["image"], rollout["id"], location)
            state = self._run_job(inst, job, "RestoreStarted", f"restores {location}")
            rollout.update(step="RollingBack", restored=state == "Complete")
            if state == "Failed":
                inst.event("Warning", "RestoreFailed",
                           f"restore Job {job['metadata']['name']} failed; the database was not restored")
            self._record_step(inst, rollout)
        deployment = self._apply_deployment(inst, last_good["template"])
        message = f"rolled back to {last_good['image']}: {rollout.get('failure', 'rollout failed')}"
        if "restored" in rollout:
            message += ("; database restored from the pre-rollout backup" if rollout["restored"]
                        else "; database restore FAILED")
        inst.event("Warning", "RolledBack", message)
        self._finish(inst, rollout, "RolledBack", message, currentImage=last_good["image"],
                     **_replica_fields(Progress.of(deployment)))

    def _finish(self, inst: Instance, rollout: dict[str, Any], result: str, message: str, **extra: Any) -> None:
        """Close a rollout: phase, conditions, a history entry; a failed template is not tried again."""
        failed = result != "Succeeded"
        update = {
            # Still serving (the last good version) after a failed rollout, hence Ready but Degraded.
            **summary("Ready" if not failed else result, message, inst.generation, result,
                      ready=True, progressing=False, degraded=failed),
            "rollout": None,
            "history": self._history(inst, rollout, result, message),
            "observedGeneration": inst.generation,
            **extra,
        }
        if failed:
            update["failedTemplateHash"] = rollout["id"]
        self._write(inst, update)

    @staticmethod
    def _history(inst: Instance, rollout: dict[str, Any], result: str, message: str) -> list[dict[str, Any]]:
        entry = {"image": rollout["image"], "fromImage": rollout["fromImage"], "templateHash": rollout["id"],
                 "outcome": result, "startedAt": rollout["startedAt"], "finishedAt": now_iso(), "message": message}
        return ([entry] + list(inst.status.get("history") or []))[:HISTORY_LENGTH]

    # --- status -------------------------------------------------------------------------------------

    def _write(self, inst: Instance, update: dict[str, Any]) -> None:
        self._write_status(inst.owner, inst.status, update)

    def _write_status(self, owner: Owner, status: dict[str, Any], update: dict[str, Any]) -> None:
        """Patch the status, keeping condition transition times, and mirror it into `status`."""
        if "conditions" in update:
            update = {**update, "conditions": merge_conditions(status.get("conditions"), update["conditions"], now_iso())}
        if all(status.get(k) == v for k, v in update.items()):
            return
        present = {k for k, v in status.items() if v is not None}
        self.kube.patch_adminapi_status(owner.namespace, owner.name, update, present=present)
        status.update(copy.deepcopy(update))


def _last_good(spec: AdminApiSpec, template: dict[str, Any], template_hash: str) -> dict[str, Any]:
    return {"templateHash": template_hash, "image": spec.image, "template": template, "since": now_iso()}


def _replica_fields(progress: Progress) -> dict[str, Any]:
    return {"replicas": progress.replicas, "readyReplicas": progress.ready, "ready": f"{progress.ready}/{progress.replicas}"}


def _deployment_hash(deployment: dict[str, Any] | None) -> str | None:
    return ((deployment or {}).get("metadata", {}).get("annotations") or {}).get(builders.TEMPLATE_HASH_ANNOTATION)


def contains(live: Any, desired: Any) -> bool:
    """Whether every field we set has our value in the live object (the server adds defaults around them)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            contains(live[k], v) if k in live else v in ({}, [], None) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    return live == desired
