"""Reconciliation of one AdminApi: converge the owned objects, and drive rollout attempts.

Level-based and idempotent: every call reads the AdminApi (spec and status) and the live objects (as the watches
last showed them, watched.py; else from the API), does the next step, and records it in status. The state
machine in rollout.py decides; this module observes (Jobs, the Deployment, the instance's pods), acts (one
idempotent action per step) and records. All rollout state lives in `status`, so an operator restarted at any
step, or a status write that failed, picks up where it was: Job names carry the attempt id, and a Job is
trusted only if it belongs to the attempt.
"""
from __future__ import annotations

import copy
import datetime
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from . import GROUP, KIND, VERSION, builders
from .builders import Owner
from .kube import Kube
from .rollout import Event as On, Outcome as Result, Step, attempt_id, decide, first_step
from .spec import AdminApiSpec, InvalidSpec
from .status import CONFIG_ERROR, Progress, merge_conditions, step_status, workload_status
from .watched import Watched

RETRY_ANNOTATION = "aistreams.io/retry-rollout"
HISTORY_LENGTH = 10
BOOTSTRAP_ADMIN = "admin"
HealthCheck = Callable[[str, tuple[str, ...]], "str | None"]
REFUSED = "the Kubernetes API refused"  # how a status message says the spec produced an object it cannot store
# How long a pod of the new template may wait in a configuration error (a missing Secret, ConfigMap or key, as
# the kubelet says) before the gate fails: the kubelet retries, and a Secret created a moment after the spec
# (one `kubectl apply` of a directory, in any order) ends it. Past that, rollout.timeoutSeconds would only wait.
CONFIG_ERROR_GRACE = datetime.timedelta(seconds=15)
# How soon a step under way is looked at again. What a watched object shows (a Job ending, a Deployment's pods
# becoming available, its progress deadline) brings the instance back at once through its watch event: the poll
# is only a safety net. What no watch shows (a pod the kubelet cannot configure, a health check, pods going
# away, a deadline of ours) is polled.
POLL_SECONDS = 2.0
WATCHED_POLL_SECONDS = 30.0


def permanent(e: ApiException) -> bool:
    """An answer that will not change by asking again: the object we sent is wrong, not the moment.

    A 4xx other than 409 (conflict) and 429 (busy), and server-side apply's 500 "duplicate entries for key"
    (a list with two items of one key: asking again sends the same list).
    """
    if e.status in (409, 429):
        return False
    return 400 <= e.status < 500 or (e.status == 500 and "duplicate entries" in str(e.body))


def api_message(e: ApiException) -> str:
    """The API server's own explanation (its Status message), without our request."""
    try:
        message = json.loads(e.body)["message"]
    except (TypeError, ValueError, KeyError):
        message = e.reason or f"HTTP {e.status}"
    return str(message)[:1000]


class Waiting(Exception):
    """A step is under way; call again after `delay` seconds."""

    def __init__(self, message: str, delay: float = POLL_SECONDS):
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
    # Nothing under way and nothing to wait for: the Deployment runs its template on every replica (or the spec
    # cannot work). Only a change can make it wrong, and every change is a watch event: no need to look again.
    at_rest: bool = False


def job_state(job: dict[str, Any] | None) -> str | None:
    """'Complete', 'Failed', or None while it runs (or does not exist)."""
    for c in ((job or {}).get("status") or {}).get("conditions") or ():
        if c.get("status") == "True" and c.get("type") in ("Complete", "Failed"):
            return c["type"]
    return None


@dataclass
class Instance:
    """One AdminApi as one reconcile call sees it. `status` mirrors what has been written so far."""

    body: dict[str, Any]
    owner: Owner
    spec: AdminApiSpec
    raw_spec: dict[str, Any]
    status: dict[str, Any]
    generation: int
    resource_version: str
    outcome: Outcome
    pending: dict[str, Any] = field(default_factory=dict)  # status fields to write with the next step
    # When to look again at a step under way (a step's action may lower it); read at each reconcile.
    poll: float = field(default_factory=lambda: WATCHED_POLL_SECONDS)
    # The instance's API pods as listed in this reconcile: its steps observe the same moment, with one LIST.
    pods: list[dict[str, Any]] | None = None

    @property
    def spec_changed(self) -> bool:
        """The spec moved since the last reconcile: a difference in the objects is then an update, not drift."""
        return self.status.get("observedGeneration") != self.generation

    @property
    def retry_token(self) -> str | None:
        return (self.body["metadata"].get("annotations") or {}).get(RETRY_ANNOTATION) or None

    @property
    def retry_requested(self) -> bool:
        return self.retry_token is not None and self.retry_token != self.status.get("retryToken")


class Reconciler:
    def __init__(self, kube: Kube, check_health: HealthCheck,
                 clock: Callable[[], datetime.datetime] | None = None, watched: Watched | None = None):
        self.kube = kube
        self.watched = watched or Watched()  # fed by the watches of owned objects (handlers.py)
        self.check_health = check_health
        self.clock = clock or (lambda: datetime.datetime.now(datetime.timezone.utc))

    def now_iso(self) -> str:
        return self.clock().replace(microsecond=0).isoformat().replace("+00:00", "Z")

    # --- entry point ---------------------------------------------------------------------------------

    def reconcile(self, body: dict[str, Any]) -> Outcome:
        outcome = Outcome()
        owner = Owner.from_body(body)
        raw = dict(body.get("spec") or {})
        status = copy.deepcopy(dict(body.get("status") or {}))
        generation = int(body["metadata"].get("generation") or 0)
        try:
            spec = AdminApiSpec.parse(raw, owner.name)
        except InvalidSpec as e:
            inst = Instance(body, owner, None, raw, status, generation,  # type: ignore[arg-type]
                            body["metadata"]["resourceVersion"], outcome)
            if status.get("phase") != "Invalid" or status.get("message") != str(e):
                self._event(inst, "Warning", "InvalidSpec", str(e))
            self._write(inst, {**workload_status(Progress.of(None), generation, invalid=str(e)),
                               "observedGeneration": generation})
            outcome.at_rest = True  # waits for a spec change
            return outcome

        inst = Instance(body, owner, spec, raw, status, generation, body["metadata"]["resourceVersion"], outcome)
        if self._refused_before(inst):
            outcome.at_rest = True
            return outcome  # asking again would get the same answer: only a new spec (or a retry) changes it
        desired = builders.pod_template(owner.name, spec)
        desired_hash = builders.template_hash(desired)
        try:
            self._ensure_supporting_objects(inst)
            for _ in range(3):  # an attempt that ended (superseded, say) hands over to what comes next
                if not self._dispatch(inst, desired, desired_hash):
                    break
        except Waiting as waiting:
            outcome.waiting = waiting
        except ApiException as e:
            if not permanent(e):
                raise
            self._refused(inst, e)
        return outcome

    def _refused_before(self, inst: Instance) -> bool:
        status = inst.status
        return (status.get("phase") == "Invalid" and str(status.get("message", "")).startswith(REFUSED)
                and not inst.spec_changed and not inst.retry_requested)

    def _refused(self, inst: Instance, e: ApiException) -> None:
        """The spec passed our checks but produced an object the API server will never store: say so, once."""
        message = f"{REFUSED} an object this spec produces ({e.status}): {api_message(e)}"
        if inst.status.get("phase") != "Invalid" or inst.status.get("message") != message:
            self._event(inst, "Warning", "InvalidSpec", message)
        update = {**workload_status(Progress.of(None), inst.generation, invalid=message),
                  "observedGeneration": inst.generation}
        if inst.retry_requested:
            update["retryToken"] = inst.retry_token
        self._write(inst, update)
        inst.outcome.at_rest = True

    def _dispatch(self, inst: Instance, desired: dict[str, Any], desired_hash: str) -> bool:
        """One decision on what this instance needs; True when an attempt ended and the next call may start one."""
        status = inst.status
        last_good, attempt = status.get("lastGood"), status.get("rollout")
        if attempt and attempt.get("number"):
            return self._drive(inst, copy.deepcopy(attempt), desired, desired_hash)
        if attempt:  # recorded by an operator before attempts existed: it ends here, and the spec starts anew
            legacy = {**attempt, "templateHash": attempt.get("id", "unknown"), "id": attempt.get("id", "unknown")}
            self._write(inst, {"rollout": None, "history": self._history(
                inst, legacy, Result.SUPERSEDED, "superseded by a rollout attempt of the upgraded operator")})
            return True
        if not last_good or last_good["templateHash"] == desired_hash:
            self._converge(inst, desired, desired_hash)
            return False
        if desired_hash == status.get("failedTemplateHash") and not inst.retry_requested:
            self._hold(inst, last_good, desired_hash)
            return False
        self._start_attempt(inst, desired_hash, last_good)
        return True

    # --- owned objects ------------------------------------------------------------------------------

    def _ensure_supporting_objects(self, inst: Instance) -> None:
        owner, spec = inst.owner, inst.spec
        # Created once; whether it exists is remembered in status, so the operator needs no `get` on Secrets
        # and a steady instance sends no request for it.
        name = builders.bootstrap_secret_name(owner.name)
        if inst.status.get("bootstrapSecret") != name:
            secret = builders.bootstrap_secret(owner, BOOTSTRAP_ADMIN, secrets.token_urlsafe(24))
            if self.kube.create(secret) is not None:  # else made before (by our previous run, say): kept
                self._event(inst, "Normal", "SecretCreated", f"generated the first admin's credentials in Secret {name}")
            self._write(inst, {"bootstrapSecret": name})
        self._apply(inst, builders.service(owner, spec))
        self._apply(inst, builders.pod_disruption_budget(owner, spec))

    def _read(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """An owned object: as the watch last showed it, or else read from the API."""
        known = self.watched.latest(kind, namespace, name)
        return known if known is not None else self.watched.read(self.kube.get(api_version, kind, namespace, name))

    def _live_deployment(self, inst: Instance) -> dict[str, Any] | None:
        return self._read("apps/v1", "Deployment", inst.owner.namespace, builders.object_name(inst.owner.name))

    def _apply(self, inst: Instance, desired: dict[str, Any]) -> dict[str, Any]:
        """Apply `desired` unless the live object already is what the server would store; tell drift from updates."""
        desired = builders.with_applied_hash(desired)
        meta = desired["metadata"]
        if inst.status.get("observedGeneration") is None:  # a new instance: no drift to tell, nothing to compare
            return self.watched.wrote(self.kube.apply(desired))
        live = self._read(desired["apiVersion"], desired["kind"], meta["namespace"], meta["name"])
        applied = builders.applied_hash(desired)
        if live is not None and builders.applied_hash(live) == applied and contains(live, desired):
            return live
        # Neither the spec nor what we apply changed: someone else did (drift).
        if not inst.spec_changed and (live is None or builders.applied_hash(live) == applied):
            what = "re-created" if live is None else "put back to its desired state"
            self._event(inst, "Normal", "DriftRepaired", f"{desired['kind']} {meta['name']} {what}")
        return self.watched.wrote(self.kube.apply(desired))

    def _deployment(self, inst: Instance, template: dict[str, Any], replicas: int | None = None) -> dict[str, Any]:
        return self._apply(inst, builders.deployment(inst.owner, inst.spec, template, replicas))

    def _observe(self, inst: Instance, deployment: dict[str, Any], template_hash: str | None = None,
                 every_pod: bool = False) -> Progress:
        """The Deployment and every API pod of the instance (listed, terminating ones included). When the
        Deployment runs `template_hash` and its own counts say every pod it has is ready, no pod can be in trouble
        and its counts tell the rest: the pods are not listed, unless `every_pod` (a terminating one counts too,
        and they are listed now, not earlier in this reconcile).

        The pods come from the API server's watch cache: the Deployment's controller saw each pod change there
        before writing the counts that woke us, and a pod shown late only delays a step. Before a restore, where
        a pod missed would be a pod writing during it, `every_pod` reads them through to etcd."""
        template_hash = template_hash or _deployment_hash(deployment)
        if not every_pod and _deployment_hash(deployment) == template_hash and _all_ready(deployment):
            return Progress.of(deployment)
        if inst.pods is None or every_pod:
            inst.pods = self.kube.list("v1", "Pod", inst.owner.namespace, builders.api_pod_labels(inst.owner.name),
                                       from_cache=not every_pod)
        return Progress.of(deployment, inst.pods, template_hash)

    def _list_new_pods(self, inst: Instance, template_hash: str) -> list[dict[str, Any]]:
        labels = {**builders.api_pod_labels(inst.owner.name), builders.TEMPLATE_HASH_LABEL: template_hash}
        return self.kube.list("v1", "Pod", inst.owner.namespace, labels)

    # --- no rollout: first install, steady state, the last good template held -----------------------

    def _converge(self, inst: Instance, desired: dict[str, Any], desired_hash: str) -> None:
        spec = inst.spec
        deployment = self._deployment(inst, desired)
        progress = self._observe(inst, deployment)
        update = {**workload_status(progress, inst.generation), **_replica_fields(progress),
                  "currentImage": _image(deployment), "templateHash": desired_hash,
                  "observedGeneration": inst.generation}
        if progress.complete and _deployment_hash(deployment) == desired_hash:
            if (inst.status.get("lastGood") or {}).get("templateHash") != desired_hash:
                update["lastGood"] = self._last_good(inst, desired, desired_hash)
                update["lastGoodImage"] = spec.image
            if inst.status.get("phase") != update["phase"]:
                self._event(inst, "Normal", update["phase"], f"{spec.image}: {update['message']}")
        elif progress.deadline_exceeded and inst.status.get("phase") != "Failed":
            self._event(inst, "Warning", "ProgressDeadlineExceeded", update["message"])
        self._say_config_error(inst, progress)
        self._write(inst, update)
        inst.outcome.at_rest = progress.complete and _deployment_hash(deployment) == desired_hash

    def _hold(self, inst: Instance, last_good: dict[str, Any], desired_hash: str) -> None:
        """The spec asks for a template that failed: keep running the last good one until it changes (or a retry)."""
        failed = next((h for h in inst.status.get("history") or () if h.get("templateHash") == desired_hash), {})
        outcome = failed.get("outcome", Result.ROLLED_BACK.value)
        why = (f"{failed.get('message', f'{inst.spec.image} failed its rollout')}; "
               f"set the annotation {RETRY_ANNOTATION} to try {inst.spec.image} again")
        if inst.status.get("templateHash") != desired_hash:  # the spec asks for it again
            self._event(inst, "Warning", "FailedTemplateRequested",
                        f"the spec asks again for {inst.spec.image}, whose rollout ended {outcome} at "
                        f"{failed.get('finishedAt', '?')}; {last_good['image']} keeps running: {why}")
        deployment = self._deployment(inst, last_good["template"])
        progress = self._observe(inst, deployment)
        self._say_config_error(inst, progress)
        self._write(inst, {**workload_status(progress, inst.generation, held=(outcome, why)),
                           **_replica_fields(progress), "currentImage": _image(deployment),
                           "templateHash": desired_hash, "observedGeneration": inst.generation})
        inst.outcome.at_rest = progress.complete

    def _say_config_error(self, inst: Instance, progress: Progress) -> None:
        """No gate waits on these pods: one the kubelet cannot configure gets a Warning Event as soon as it is
        seen, once (from then on the status message says it; status.py gives the reason)."""
        if progress.config_error and progress.config_error not in str(inst.status.get("message", "")):
            self._event(inst, "Warning", CONFIG_ERROR, f"{progress.config_error}; the pods start once it exists")

    # --- rollout attempts ---------------------------------------------------------------------------

    def _start_attempt(self, inst: Instance, desired_hash: str, last_good: dict[str, Any]) -> None:
        spec = inst.spec
        number = int(inst.status.get("attempts") or 0) + 1
        attempt = {"id": attempt_id(desired_hash, number), "number": number, "templateHash": desired_hash,
                   "image": spec.image, "fromImage": last_good["image"], "fromTemplateHash": last_good["templateHash"],
                   "step": first_step(spec.backup_enabled).value, "startedAt": self.now_iso()}
        if spec.backup_enabled:  # chosen now, so that the first step's record holds it (one status write, not two)
            attempt["backupKey"] = _backup_key(inst, attempt, last_good)
        retry = " (retry)" if inst.retry_requested else ""
        self._event(inst, "Normal", "RolloutStarted",
                    f"attempt {attempt['id']}{retry}: rolling out {spec.image} (from {last_good['image']})", attempt)
        update = {"attempts": number, "templateHash": desired_hash}
        if inst.retry_requested:
            update["retryToken"] = inst.retry_token
        self._record(inst, attempt, **update)

    def _spec_events(self, inst: Instance, attempt: dict[str, Any], desired_hash: str,
                     last_good: dict[str, Any]) -> list[On]:
        events = []
        if desired_hash != attempt["templateHash"]:
            events.append(On.REVERTED if desired_hash == last_good["templateHash"] else On.SUPERSEDED)
        if not inst.spec.rollback_restore_database:
            events.append(On.WAIVED)
        if inst.retry_requested:
            events.append(On.RETRY)
        return events

    def _drive(self, inst: Instance, attempt: dict[str, Any], desired: dict[str, Any], desired_hash: str) -> bool:
        """Run the attempt's steps as far as they go now; True once it has ended."""
        last_good = inst.status["lastGood"]
        spec_events = self._spec_events(inst, attempt, desired_hash, last_good)
        while True:
            step = Step(attempt["step"])
            restore = inst.spec.rollback_restore_database and bool(attempt.get("backupLocation"))
            nxt, event, detail = step, On.RUNNING, ""
            for event in spec_events:  # what the spec asks comes first, in every step
                nxt = decide(step, event, restore)
                if nxt != step:
                    break
            if On.RETRY in spec_events:  # a retry is acted upon once, by whichever step meets it
                spec_events.remove(On.RETRY)
                if nxt == step:
                    self._event(inst, "Normal", "RetryIgnored", f"attempt {attempt['id']} is in step {step.value}: "
                                "a retry applies to a failed rollout or a failed restore")
                elif event is On.RETRY:
                    attempt["restoreRound"] = int(attempt.get("restoreRound") or 1) + 1
                self._write(inst, {"retryToken": inst.retry_token})
            if nxt == step:
                event, detail = self._act(inst, attempt, step, desired, last_good)
                nxt = decide(step, event, restore)
            if nxt == step:
                raise Waiting(detail or f"{step.value} is under way", inst.poll)
            if isinstance(nxt, Result):
                self._finish(inst, attempt, nxt, detail or _why(nxt, event, attempt), desired, desired_hash)
                return True
            attempt["step"] = nxt.value
            self._record(inst, attempt)

    def _act(self, inst: Instance, attempt: dict[str, Any], step: Step, desired: dict[str, Any],
             last_good: dict[str, Any]) -> tuple[On, str]:
        """The step's one idempotent action, and what it shows: RUNNING, DONE or FAILED, with why."""
        owner, spec = inst.owner, inst.spec
        settings = self._last_good_settings(inst, last_good)
        aid = attempt["id"]
        if step is Step.BACKING_UP:
            if not settings.backup_target:
                return On.FAILED, ("spec.backup is enabled but spec.minio is incomplete (endpoint, bucket, "
                                   "accessKeySecretRef, secretKeySecretRef): nothing was rolled out; "
                                   f"{attempt['fromImage']} keeps running")
            if "backupKey" not in attempt:  # an attempt started by an operator that chose it here
                attempt["backupKey"] = _backup_key(inst, attempt, last_good)
                self._record(inst, attempt)
            job = builders.backup_job(owner, spec, last_good["image"], aid, attempt["backupKey"], settings)
            state = self._run_job(inst, attempt, job, "BackupStarted", f"backs the database up to {attempt['backupKey']}")
            if state is On.DONE:
                location = f"s3://{settings.minio_bucket}/{attempt['backupKey']}"
                attempt["backupLocation"] = location
                self._event(inst, "Normal", "BackupCompleted", f"database backed up to {location}", attempt)
                inst.pending = {"lastBackup": {"name": job["metadata"]["name"], "time": self.now_iso(),
                                                          "location": location, "attempt": aid}}
            if state is On.FAILED:
                return state, (f"backup Job {job['metadata']['name']} failed: nothing was rolled out; "
                               f"{attempt['fromImage']} keeps running")
            return state, f"Job {job['metadata']['name']} is running"
        if step is Step.MIGRATING:
            job = builders.migration_job(owner, spec, aid)
            state = self._run_job(inst, attempt, job, "MigrationStarted", f"migrates the database for {spec.image}")
            if state is On.FAILED:
                return state, (f"migration Job {job['metadata']['name']} failed (transactional: the database is "
                               f"unchanged): nothing was rolled out; {attempt['fromImage']} keeps running")
            return state, f"Job {job['metadata']['name']} is running"
        if step is Step.ROLLING_OUT:
            self._deployment(inst, desired)
            attempt["verifyingSince"] = self.now_iso()
            return On.DONE, ""
        if step is Step.VERIFYING:
            return self._verify(inst, attempt, desired)
        if step is Step.RESTORING_DATABASE:
            # Neither version may write while the database goes back in time: every pod gone, as listed.
            progress = self._observe(inst, self._deployment(inst, last_good["template"], replicas=0), every_pod=True)
            if progress.pods:
                inst.poll = POLL_SECONDS  # pods are not watched
                return On.RUNNING, f"waiting for {progress.pods} pods of the instance to be gone before the restore"
            round_ = int(attempt.get("restoreRound") or 1)
            job = builders.restore_job(owner, spec, last_good["image"], aid, attempt["backupLocation"], settings, round_)
            state = self._run_job(inst, attempt, job, "RestoreStarted", f"restores {attempt['backupLocation']}")
            if state is On.DONE:
                attempt["restored"] = True
            if state is On.FAILED:
                attempt["restored"] = False
                self._event(inst, "Warning", "RestoreFailed",
                            f"restore Job {job['metadata']['name']} failed; the pods stay down", attempt)
            return state, f"Job {job['metadata']['name']} is running"
        if step is Step.RESTORE_FAILED:
            self._deployment(inst, last_good["template"], replicas=0)
            return On.RUNNING, (f"restoring {attempt['backupLocation']} failed; the pods stay down: set the "
                                f"annotation {RETRY_ANNOTATION} to restore again, or spec.rollback.restoreDatabase: "
                                "false to start the last good version on the database as it is")
        # Step.ROLLING_BACK
        self._deployment(inst, last_good["template"])
        return On.DONE, ""

    def _verify(self, inst: Instance, attempt: dict[str, Any], desired: dict[str, Any]) -> tuple[On, str]:
        spec = inst.spec
        deployment = self._deployment(inst, desired)
        progress = self._observe(inst, deployment, attempt["templateHash"])
        deadline = _time(attempt["verifyingSince"]) + datetime.timedelta(seconds=spec.rollout_timeout_seconds)
        lasting = self._lasting_config_error(attempt, progress)
        failure = None
        if progress.complete and _deployment_hash(deployment) == attempt["templateHash"]:
            failure = self._gate(inst, attempt["templateHash"])
            if failure is None:
                message = f"{spec.image} is available and healthy: {progress.describe()}"
                self._event(inst, "Normal", "RolloutSucceeded", message, attempt)
                return On.DONE, message
            failure = f"health check failed: {failure}"
        elif progress.deadline_exceeded:
            failure = f"Deployment exceeded its progress deadline ({progress.describe()})"
        elif progress.config_error:
            failure = f"a pod of the new template cannot be configured: {progress.config_error}"
        if self.clock() < deadline and not progress.deadline_exceeded and not lasting:
            # A health check or a pod's configuration is not watched; otherwise the Deployment's events bring
            # the instance back, and the poll only has to meet the deadline.
            until_deadline = (deadline - self.clock()).total_seconds()
            inst.poll = POLL_SECONDS if failure else min(WATCHED_POLL_SECONDS, max(until_deadline, POLL_SECONDS))
            self._write(inst, {**_replica_fields(progress), "rollout": attempt})
            return On.RUNNING, f"verifying {spec.image}: {failure or progress.describe()}"
        reason = failure or f"not available within {spec.rollout_timeout_seconds}s ({progress.describe()})"
        attempt["failure"] = reason
        self._event(inst, "Warning", "RolloutFailed", f"{spec.image}: {reason}; rolling back", attempt)
        return On.FAILED, reason

    def _lasting_config_error(self, attempt: dict[str, Any], progress: Progress) -> bool:
        """Whether a pod of the new template has not been configurable for longer than the grace; since when is
        kept in the attempt, so that an operator restarted meanwhile does not start the grace again."""
        if not progress.config_error:
            attempt.pop("configErrorSince", None)
            return False
        since = attempt.setdefault("configErrorSince", self.now_iso())
        return self.clock() >= _time(since) + CONFIG_ERROR_GRACE

    def _gate(self, inst: Instance, template_hash: str) -> str | None:
        """What serves: the configured URL, or else every pod of the new template, by its own IP and port."""
        spec = inst.spec
        if not spec.rollout_health_checks:
            return None
        if spec.rollout_health_check_url:
            return self.check_health(builders.health_base_url(inst.owner, spec), builders.HEALTH_PATHS)
        pods = [p for p in self._list_new_pods(inst, template_hash) if not p["metadata"].get("deletionTimestamp")]
        if len(pods) < spec.replicas:
            return f"{len(pods)}/{spec.replicas} pods of the new template found"
        for pod in pods:
            ip = (pod.get("status") or {}).get("podIP")
            if not ip:
                return f"pod {pod['metadata']['name']} has no IP"
            host = f"[{ip}]" if ":" in ip else ip
            failure = self.check_health(f"http://{host}:{spec.port}", builders.POD_HEALTH_PATHS)
            if failure:
                return f"pod {pod['metadata']['name']}: {failure}"
        return None

    def _run_job(self, inst: Instance, attempt: dict[str, Any], job: dict[str, Any], started: str, what: str) -> On:
        """Create `job` once and say how it went. A Job of that name from another attempt is never trusted."""
        name, namespace = job["metadata"]["name"], inst.owner.namespace
        live = self._read("batch/v1", "Job", namespace, name) if self.watched.exists("Job", namespace, name) else None
        if live is None:  # created without a read first: only a name taken (409) is read, to see whose it is
            live = self.kube.create(job)
            if live is None:
                live = self._read("batch/v1", "Job", namespace, name)
            else:
                self.watched.wrote(live)
                self._event(inst, "Normal", started, f"Job {name} {what}", attempt, key=name)
        if live is None or not _belongs(live, attempt["id"], inst.owner.uid):
            raise Waiting(f"Job {name} belongs to another attempt or AdminApi; waiting for it to be removed", 5)
        state = job_state(live)
        return {"Complete": On.DONE, "Failed": On.FAILED}.get(state, On.RUNNING)

    def _finish(self, inst: Instance, attempt: dict[str, Any], result: Result, message: str,
                desired: dict[str, Any], desired_hash: str) -> None:
        """Close an attempt: its history entry and, for a failure, the template marked as not to try again."""
        spec, last_good = inst.spec, inst.status["lastGood"]
        update: dict[str, Any] = {"rollout": None, "observedGeneration": inst.generation}
        if result is Result.SUCCEEDED:
            update.update(lastGood=self._last_good(inst, desired, desired_hash), lastGoodImage=spec.image,
                          failedTemplateHash=None)
        elif result in (Result.BACKUP_FAILED, Result.MIGRATION_FAILED, Result.ROLLED_BACK):
            update["failedTemplateHash"] = attempt["templateHash"]
            if result is Result.ROLLED_BACK:
                message = f"rolled back to {last_good['image']}: {attempt.get('failure', 'rollout failed')}"
                if "restored" in attempt:
                    message += ("; database restored from the pre-rollout backup" if attempt["restored"]
                                else "; database restore FAILED")
        reason = {Result.SUCCEEDED: "RolloutSucceeded", Result.SUPERSEDED: "RolloutSuperseded",
                  Result.CANCELLED: "RolloutCancelled"}.get(result, result.value)
        if result is not Result.SUCCEEDED:  # RolloutSucceeded was posted by the gate, with the counts
            self._event(inst, "Normal" if result in (Result.SUPERSEDED, Result.CANCELLED) else "Warning",
                        reason, message, attempt)
        update["history"] = self._history(inst, attempt, result, message)
        deployment = self._live_deployment(inst)
        progress = self._observe(inst, deployment) if deployment else Progress.of(None)
        held = (result.value, message) if update.get("failedTemplateHash") else None
        update.update(workload_status(progress, inst.generation, held=held), **_replica_fields(progress))
        if deployment:
            update["currentImage"] = _image(deployment)
        self._write(inst, update)

    def _history(self, inst: Instance, attempt: dict[str, Any], result: Result, message: str) -> list[dict[str, Any]]:
        entry = {"attempt": attempt["id"], "image": attempt.get("image"), "fromImage": attempt.get("fromImage"),
                 "templateHash": attempt["templateHash"], "outcome": result.value,
                 "startedAt": attempt.get("startedAt"), "finishedAt": self.now_iso(), "message": message}
        if attempt.get("backupLocation"):
            entry["backup"] = attempt["backupLocation"]
        return ([entry] + list(inst.status.get("history") or []))[:HISTORY_LENGTH]

    def _record(self, inst: Instance, attempt: dict[str, Any], **extra: Any) -> None:
        """Write the attempt's step (before acting on it), with phase and conditions from what is observed."""
        step = Step(attempt["step"])
        message = {
            Step.BACKING_UP: f"backing the database up before rolling out {attempt['image']}",
            Step.MIGRATING: f"migrating the database for {attempt['image']}",
            Step.ROLLING_OUT: f"rolling out {attempt['image']}",
            Step.VERIFYING: f"waiting for {attempt['image']} to become available and healthy",
            Step.RESTORING_DATABASE: f"restoring {attempt.get('backupLocation')} with every pod stopped",
            Step.RESTORE_FAILED: f"restoring {attempt.get('backupLocation')} failed; the pods stay down",
            Step.ROLLING_BACK: f"rolling back to {attempt['fromImage']}",
        }[step]
        deployment = self._live_deployment(inst)
        progress = self._observe(inst, deployment) if deployment else Progress.of(None)
        update = {**step_status(step.value, f"attempt {attempt['id']}: {message}", progress, inst.generation,
                                degraded=step is Step.RESTORE_FAILED),
                  **_replica_fields(progress), "rollout": attempt, "observedGeneration": inst.generation,
                  **inst.pending, **extra}
        inst.pending = {}
        self._write(inst, update)

    def _last_good(self, inst: Instance, template: dict[str, Any], template_hash: str) -> dict[str, Any]:
        # The spec too (it holds only references to Secrets): backups and restores use the last good settings.
        return {"templateHash": template_hash, "image": inst.spec.image, "template": template,
                "spec": inst.raw_spec, "since": self.now_iso()}

    def _last_good_settings(self, inst: Instance, last_good: dict[str, Any]) -> AdminApiSpec:
        """The settings (database, object storage) of the version that last ran well."""
        if last_good.get("spec"):
            try:
                return AdminApiSpec.parse(last_good["spec"], inst.owner.name)
            except InvalidSpec:
                pass
        return inst.spec

    # --- events and status --------------------------------------------------------------------------

    def _event(self, inst: Instance, type_: str, reason: str, message: str,
               attempt: dict[str, Any] | None = None, key: str | None = None) -> None:
        """Posted now, before the status write of its step; an attempt's Events exist once even if repeated."""
        involved = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "metadata": inst.body["metadata"]}
        event_key = f"{attempt['id']}/{reason}/{key or ''}" if attempt else None
        self.kube.post_event(involved, type_, reason, message, key=event_key)
        inst.outcome.events.append(Event(type_, reason, message))

    def _write(self, inst: Instance, update: dict[str, Any]) -> None:
        """Patch the status, keeping condition transition times, and mirror it into `status`."""
        status = inst.status
        update = dict(update)
        if "conditions" in update:
            update["conditions"] = merge_conditions(status.get("conditions"), update["conditions"], self.now_iso())
        if all(status.get(k) == v for k, v in update.items()):
            return
        present = {k for k, v in status.items() if v is not None}
        written = self.watched.wrote(self.kube.patch_adminapi_status(
            inst.owner.namespace, inst.owner.name, update, present=present, resource_version=inst.resource_version))
        inst.resource_version = written["metadata"]["resourceVersion"]
        status.update(copy.deepcopy(update))


def _why(result: Result, event: On, attempt: dict[str, Any]) -> str:
    if result is Result.SUPERSEDED:
        return "superseded by a newer spec"
    if result is Result.CANCELLED:
        return f"cancelled: the spec asks for the last good version ({attempt['fromImage']}) again"
    return f"{result.value} ({event.value})"


def _time(iso: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _replica_fields(progress: Progress) -> dict[str, Any]:
    return {"replicas": progress.replicas, "readyReplicas": progress.ready, "ready": f"{progress.ready}/{progress.replicas}"}


def _all_ready(deployment: dict[str, Any]) -> bool:
    """The controller has seen the Deployment's template, and every pod it counts (of any template) is ready."""
    status = deployment.get("status") or {}
    return (int(status.get("observedGeneration") or 0) >= int(deployment["metadata"].get("generation") or 0)
            and int(status.get("readyReplicas") or 0) >= int(status.get("replicas") or 0))


def _backup_key(inst: Instance, attempt: dict[str, Any], last_good: dict[str, Any]) -> str:
    return builders.backup_key(inst.owner.namespace, inst.owner.name, last_good["image"], attempt["id"],
                               attempt["startedAt"])


def _deployment_hash(deployment: dict[str, Any] | None) -> str | None:
    return ((deployment or {}).get("metadata", {}).get("annotations") or {}).get(builders.TEMPLATE_HASH_ANNOTATION)


def _image(deployment: dict[str, Any]) -> str | None:
    containers = ((deployment.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    return containers[0].get("image")


def _belongs(job: dict[str, Any], attempt: str, owner_uid: str) -> bool:
    meta = job["metadata"]
    return ((meta.get("labels") or {}).get(builders.ATTEMPT_LABEL) == attempt
            and any(ref.get("uid") == owner_uid for ref in meta.get("ownerReferences") or ()))


_QUANTITY = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE])?$")


def _same_value(live: Any, desired: Any) -> bool:
    """Equal as stored: the server canonicalises quantities (`1000m` is stored `1`, `0.5` as `500m`)."""
    if isinstance(live, bool) or isinstance(desired, bool):
        return live is desired
    if live == desired:
        return True
    if isinstance(live, (str, int)) and isinstance(desired, (str, int)) \
            and _QUANTITY.match(str(live)) and _QUANTITY.match(str(desired)):
        return parse_quantity(live) == parse_quantity(desired)
    return False


def _left_out(desired: Any) -> bool:
    """Whether the server may store `desired` as no field at all: the zero value of an `omitempty` field
    (a probe's `initialDelaySeconds: 0`, an env var's `value: ""`, an empty list or map).

    Compared this way rather than by a server-side-apply dry run, which is a PATCH on every reconcile: a
    steady instance makes no write request. Not `false`: every boolean we set is a Go pointer, which the
    server stores even when false, so a missing one (`automountServiceAccountToken`) was removed: drift.
    """
    return desired is None or (not isinstance(desired, bool) and desired in ("", 0, [], {}))


def contains(live: Any, desired: Any) -> bool:
    """Whether every field we set has our value in the live object (the server adds defaults around them)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(
            contains(live[k], v) if k in live else _left_out(v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    return _same_value(live, desired)
