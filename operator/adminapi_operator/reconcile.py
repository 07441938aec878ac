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
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

from . import builders
from .builders import Owner
from .kube import Kube
from .spec import AdminApiSpec, InvalidSpec
from .status import Progress, condition, merge_conditions, now_iso, workload_status

log = logging.getLogger(__name__)

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
        status = dict(body.get("status") or {})
        generation = int(body["metadata"].get("generation") or 0)
        try:
            spec = AdminApiSpec.parse(body.get("spec") or {}, owner.name)
        except InvalidSpec as e:
            if status.get("phase") != "Invalid" or status.get("message") != str(e):
                outcome.events.append(Event("Warning", "InvalidSpec", str(e)))
            self._write_status(owner, status, {**workload_status(Progress.of(None), generation, invalid=str(e)),
                                               "observedGeneration": generation})
            return outcome

        self._ensure_supporting_objects(owner, spec, outcome)
        desired = builders.pod_template(owner.name, spec)
        desired_hash = builders.template_hash(desired)
        last_good = status.get("lastGood")
        retry = (body["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION)
        if retry and retry != status.get("retryToken"):
            self._write_status(owner, status, {"failedTemplateHash": None, "retryToken": retry})

        try:
            if not last_good or last_good["templateHash"] == desired_hash:
                self._converge(owner, spec, status, generation, desired, desired_hash, outcome)
            elif desired_hash == status.get("failedTemplateHash"):
                self._hold_last_good(owner, spec, status, generation, last_good)
            else:
                self._rollout(owner, spec, status, generation, desired, desired_hash, last_good, outcome)
        except Waiting as waiting:
            outcome.waiting = waiting
        return outcome

    # --- objects other than the Deployment ----------------------------------------------------------

    def _ensure_supporting_objects(self, owner: Owner, spec: AdminApiSpec, outcome: Outcome) -> None:
        secret = builders.bootstrap_secret(owner, BOOTSTRAP_ADMIN, secrets.token_urlsafe(24))
        if self.kube.create_if_absent(secret):
            outcome.events.append(Event("Normal", "SecretCreated",
                                        f"generated the first admin's credentials in Secret {secret['metadata']['name']}"))
        self._apply_if_drifted(builders.service(owner, spec), outcome)
        pdb = builders.pod_disruption_budget(owner, spec)
        if pdb:
            self._apply_if_drifted(pdb, outcome)
        elif self.kube.delete("policy/v1", "PodDisruptionBudget", owner.namespace, owner.name):
            outcome.events.append(Event("Normal", "Deleted", "PodDisruptionBudget removed: a single replica has none"))

    def _apply_if_drifted(self, desired: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
        meta = desired["metadata"]
        live = self.kube.get(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        if live is not None and contains(live, desired):
            return live
        if live is not None:
            outcome.events.append(Event("Normal", "DriftRepaired", f"{desired['kind']} {meta['name']} put back to its desired state"))
        return self.kube.apply(desired)

    def _apply_deployment(self, owner: Owner, spec: AdminApiSpec, template: dict[str, Any],
                          outcome: Outcome) -> dict[str, Any]:
        return self._apply_if_drifted(builders.deployment(owner, spec, template), outcome)

    # --- steady state and first install -------------------------------------------------------------

    def _converge(self, owner, spec, status, generation, desired, desired_hash, outcome) -> None:
        deployment = self._apply_deployment(owner, spec, desired, outcome)
        progress = Progress.of(deployment)
        update = {**workload_status(progress, generation), **_replica_fields(progress),
                  "currentImage": spec.image, "templateHash": desired_hash, "observedGeneration": generation,
                  "rollout": None}
        running_desired = _deployment_hash(deployment) == desired_hash
        if progress.complete and running_desired:
            if not status.get("lastGood") or status["lastGood"]["templateHash"] != desired_hash:
                update["lastGood"] = {"templateHash": desired_hash, "image": spec.image, "template": desired,
                                      "since": now_iso()}
                update["lastGoodImage"] = spec.image
            if status.get("phase") != "Ready":
                outcome.events.append(Event("Normal", "Ready", f"{spec.image}: {progress.describe()}"))
        elif progress.deadline_exceeded and status.get("phase") != "Failed":
            outcome.events.append(Event("Warning", "ProgressDeadlineExceeded", update["message"]))
        self._write_status(owner, status, update)

    def _hold_last_good(self, owner, spec, status, generation, last_good) -> None:
        """The spec still asks for a template that failed: keep running the last good one until it changes."""
        deployment = self._apply_deployment(owner, spec, last_good["template"], Outcome())
        self._write_status(owner, status, {**_replica_fields(Progress.of(deployment)),
                                           "currentImage": last_good["image"], "observedGeneration": generation})

    # --- rollouts -----------------------------------------------------------------------------------

    def _rollout(self, owner, spec, status, generation, desired, desired_hash, last_good, outcome) -> None:
        rollout = copy.deepcopy(status.get("rollout"))
        if not rollout or rollout.get("id") != desired_hash:
            rollout = {"id": desired_hash, "image": spec.image, "fromImage": last_good["image"],
                       "step": "BackingUp" if spec.backup_enabled else "RollingOut", "startedAt": now_iso()}
            outcome.events.append(Event("Normal", "RolloutStarted",
                                        f"rolling out {spec.image} (from {last_good['image']})"))
            self._record_step(owner, status, generation, rollout)

        step = rollout["step"]
        if step == "BackingUp":
            self._step_backup(owner, spec, status, generation, rollout, last_good, outcome)
            step = rollout["step"]
        if step == "RollingOut":
            self._apply_deployment(owner, spec, desired, outcome)
            rollout = {**rollout, "step": "Verifying", "verifyingSince": now_iso()}
            self._record_step(owner, status, generation, rollout, currentImage=spec.image)
            step = "Verifying"
        if step == "Verifying":
            self._step_verify(owner, spec, status, generation, rollout, desired, desired_hash, outcome)
            step = rollout["step"]
        if step in ("RestoringDatabase", "RollingBack"):
            self._step_roll_back(owner, spec, status, generation, rollout, last_good, desired_hash, outcome)

    def _record_step(self, owner, status, generation, rollout, **extra) -> None:
        step = rollout["step"]
        message = {
            "BackingUp": f"backing the database up before rolling out {rollout['image']}",
            "RollingOut": f"rolling out {rollout['image']}",
            "Verifying": f"waiting for {rollout['image']} to become available and healthy",
            "RestoringDatabase": "restoring the pre-rollout database backup",
            "RollingBack": f"rolling back to {rollout['fromImage']}",
        }[step]
        update = {"phase": step, "message": message, "rollout": rollout, "observedGeneration": generation,
                  "conditions": [condition("Progressing", True, step, message, generation)], **extra}
        self._write_status(owner, status, update)

    def _step_backup(self, owner, spec, status, generation, rollout, last_good, outcome) -> None:
        key = rollout.get("backupKey") or builders.backup_key(
            owner.name, last_good["image"], rollout["id"], rollout["startedAt"])
        job = builders.backup_job(owner, spec, last_good["template"], rollout["id"], key)
        name = job["metadata"]["name"]
        if "backupKey" not in rollout:
            rollout.update(backupKey=key, backupJob=name)
            self._record_step(owner, status, generation, rollout)
        live = self.kube.get("batch/v1", "Job", owner.namespace, name)
        if live is None:
            live = self.kube.apply(job)
            outcome.events.append(Event("Normal", "BackupStarted", f"Job {name} backs the database up to {key}"))
        state = job_state(live)
        if state is None:
            raise Waiting(f"backup Job {name} is running")
        if state == "Failed":
            message = f"backup Job {name} failed: nothing was rolled out; {rollout['fromImage']} keeps running"
            outcome.events.append(Event("Warning", "BackupFailed", message))
            self._finish(owner, status, generation, rollout, "BackupFailed", message, failed=True)
            return
        location = f"s3://{spec.minio_bucket or 'admin-api-backups'}/{key}"
        rollout.update(step="RollingOut")
        outcome.events.append(Event("Normal", "BackupCompleted", f"database backed up to {location}"))
        self._record_step(owner, status, generation, rollout,
                          lastBackup={"name": name, "time": now_iso(), "location": location})

    def _step_verify(self, owner, spec, status, generation, rollout, desired, desired_hash, outcome) -> None:
        deployment = self._apply_deployment(owner, spec, desired, outcome)
        progress = Progress.of(deployment)
        deadline = _parse_time(rollout["verifyingSince"]) + datetime.timedelta(seconds=spec.rollout_timeout_seconds)
        failure = None
        if progress.complete and _deployment_hash(deployment) == desired_hash:
            failure = self.check_health(builders.health_base_url(owner, spec)) if spec.rollout_health_checks else None
            if failure is None:
                message = f"{spec.image} is available and healthy: {progress.describe()}"
                outcome.events.append(Event("Normal", "RolloutSucceeded", message))
                self._finish(owner, status, generation, rollout, "Succeeded", message, failed=False,
                             lastGood={"templateHash": desired_hash, "image": spec.image, "template": desired,
                                       "since": now_iso()},
                             lastGoodImage=spec.image, **_replica_fields(progress))
                return
            failure = f"health check failed: {failure}"
        elif progress.deadline_exceeded:
            failure = f"Deployment exceeded its progress deadline ({progress.describe()})"
        if self.clock() < deadline and not progress.deadline_exceeded:
            self._write_status(owner, status, _replica_fields(progress))
            raise Waiting(f"verifying {spec.image}: {failure or progress.describe()}", delay=2.0)
        reason = failure or f"not available within {spec.rollout_timeout_seconds}s ({progress.describe()})"
        restore = spec.rollback_restore_database and rollout.get("backupKey") and status.get("lastBackup")
        rollout.update(step="RestoringDatabase" if restore else "RollingBack", failure=reason)
        outcome.events.append(Event("Warning", "RolloutFailed", f"{spec.image}: {reason}; rolling back"))
        self._record_step(owner, status, generation, rollout)

    def _step_roll_back(self, owner, spec, status, generation, rollout, last_good, desired_hash, outcome) -> None:
        if rollout["step"] == "RestoringDatabase":
            # Stop every pod first: neither version may write while the database goes back in time.
            stopped = builders.deployment(owner, spec, last_good["template"])
            stopped["spec"]["replicas"] = 0
            self._apply_if_drifted(stopped, outcome)
            job = builders.restore_job(owner, spec, last_good["template"], rollout["id"], status["lastBackup"]["location"])
            name = job["metadata"]["name"]
            live = self.kube.get("batch/v1", "Job", owner.namespace, name)
            if live is None:
                live = self.kube.apply(job)
                outcome.events.append(Event("Normal", "RestoreStarted", f"Job {name} restores {status['lastBackup']['location']}"))
            state = job_state(live)
            if state is None:
                raise Waiting(f"restore Job {name} is running")
            if state == "Failed":
                rollout["restoreFailed"] = True
                outcome.events.append(Event("Warning", "RestoreFailed", f"restore Job {name} failed; the database was not restored"))
            rollout["step"] = "RollingBack"
            self._record_step(owner, status, generation, rollout)
        deployment = self._apply_deployment(owner, spec, last_good["template"], outcome)
        message = f"rolled back to {last_good['image']}: {rollout.get('failure', 'rollout failed')}"
        if rollout.get("restoreFailed"):
            message += "; database restore FAILED"
        elif rollout.get("backupKey") and spec.rollback_restore_database:
            message += "; database restored from the pre-rollout backup"
        outcome.events.append(Event("Warning", "RolledBack", message))
        self._finish(owner, status, generation, rollout, "RolledBack", message, failed=True,
                     currentImage=last_good["image"], **_replica_fields(Progress.of(deployment)))

    def _finish(self, owner, status, generation, rollout, outcome_name, message, failed, **extra) -> None:
        entry = {"image": rollout["image"], "fromImage": rollout["fromImage"], "templateHash": rollout["id"],
                 "outcome": outcome_name, "startedAt": rollout["startedAt"], "finishedAt": now_iso(),
                 "message": message}
        history = ([entry] + list(status.get("history") or []))[:HISTORY_LENGTH]
        phase = {"Succeeded": "Ready", "BackupFailed": "BackupFailed", "RolledBack": "RolledBack"}[outcome_name]
        conditions = [
            condition("Ready", not failed or outcome_name == "BackupFailed" or outcome_name == "RolledBack",
                      outcome_name, message, generation),
            condition("Progressing", False, outcome_name, message, generation),
            condition("Degraded", failed, outcome_name if failed else "AsExpected", message, generation),
        ]
        update = {"phase": phase, "message": message, "rollout": None, "history": history,
                  "conditions": conditions, "observedGeneration": generation, **extra}
        if failed:
            update["failedTemplateHash"] = rollout["id"]
        self._write_status(owner, status, update)

    # --- status -------------------------------------------------------------------------------------

    def _write_status(self, owner: Owner, status: dict[str, Any], update: dict[str, Any]) -> None:
        """Merge-patch the status, keeping condition transition times, and mirror it into `status`."""
        if "conditions" in update:
            update = {**update, "conditions": merge_conditions(status.get("conditions"), update["conditions"], now_iso())}
        if all(status.get(k) == v for k, v in update.items()):
            return
        self.kube.patch_adminapi_status(owner.namespace, owner.name, update, present={k for k, v in status.items() if v is not None})
        status.update(copy.deepcopy(update))


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
