"""The reconciler without a cluster: an in-memory API (fake_kube.py) and table-driven tests of every step ×
event — retry, revert, supersede, operator restart, a failed status write, an API outage, a Job that fails,
pods that terminate slowly — plus the steady state's requests."""
from __future__ import annotations

import datetime
from collections import Counter
from typing import Any, Callable

import pytest
from kubernetes.client.exceptions import ApiException

from adminapi_operator import reconcile
from adminapi_operator.reconcile import CONFIG_ERROR_GRACE, RETRY_ANNOTATION, Reconciler

from .fake_kube import FAIL, NOT_READY, FakeKube

NAME = "chat"
A, B, C = "admin-api:1.0.0", "admin-api:1.1.0", "admin-api:1.2.0"
MINIO = {"endpoint": "minio:9000", "bucket": "backups", "accessKeySecretRef": {"name": "s3", "key": "access"},
         "secretKeySecretRef": {"name": "s3", "key": "secret"}}
BASE = {"image": A, "replicas": 2, "qdrant": {"host": "qdrant"}, "minio": MINIO,
        "rollout": {"healthChecks": False, "timeoutSeconds": 20}}


class Harness:
    """One AdminApi on the fake API, reconciled once per simulated second, as the operator's queue would."""

    def __init__(self, spec: dict[str, Any] | None = None, name: str = NAME):
        self.name = name
        self.kube = FakeKube()
        self.kube.create_adminapi(name, {**BASE, **(spec or {})})
        self.unhealthy: dict[str, str] = {}
        self.errors = 0
        self.restart()

    def restart(self) -> None:
        """A new operator process: nothing survives but what is in the API."""
        self.reconciler = Reconciler(self.kube, check_health=self._health, clock=lambda: self.kube.now)

    def _health(self, url: str, paths: tuple[str, ...]) -> str | None:
        return self.unhealthy.get(url)

    def step(self) -> None:
        try:
            self.reconciler.reconcile(self.kube.get_adminapi("ns", self.name))
        except ApiException:
            self.errors += 1  # the handler's queue comes back in seconds
        self.kube.tick()

    def run(self, until: Callable[[dict[str, Any]], bool], limit: int = 200) -> dict[str, Any]:
        for _ in range(limit):
            self.step()
            if until(self.status):
                return self.status
        raise AssertionError(f"not reached in {limit} steps: {self.status.get('phase')}: {self.status.get('message')}")

    def settle(self, steps: int = 10) -> dict[str, Any]:
        for _ in range(steps):
            self.step()
        return self.status

    @property
    def status(self) -> dict[str, Any]:
        return self.kube.adminapi(self.name).get("status") or {}

    def ready(self) -> dict[str, Any]:
        return self.run(lambda s: s.get("phase") == "Ready" and not s.get("rollout"))

    def jobs(self, component: str | None = None) -> list[dict[str, Any]]:
        return [j for j in self.kube.of_kind("Job")
                if component in (None, j["metadata"]["labels"]["app.kubernetes.io/component"])]

    def api_pods(self) -> list[dict[str, Any]]:
        return [p for p in self.kube.of_kind("Pod") if p["metadata"]["labels"].get("app.kubernetes.io/component") == "api"]

    def image(self) -> str:
        return self.kube.get("apps/v1", "Deployment", "ns", self.name)["spec"]["template"]["spec"]["containers"][0]["image"]

    def outcomes(self) -> list[tuple[str, str]]:
        return [(h["image"], h["outcome"]) for h in self.status.get("history") or ()]

    def reasons(self) -> list[str]:
        return [e["reason"] for e in self.kube.events]

    def at_rest(self, s: dict[str, Any]) -> bool:
        return not s.get("rollout") and s.get("phase") not in (None, "Progressing")


# --- the happy path and each failure ------------------------------------------------------------------

def test_a_rollout_backs_up_then_migrates_then_rolls_out():
    h = Harness()
    h.ready()
    h.kube.patch_spec(NAME, {"image": B})
    order = []
    h.kube.on_create.append(lambda obj: order.append(
        obj["metadata"]["labels"]["app.kubernetes.io/component"] if obj["kind"] == "Job" else
        obj["kind"] if obj["kind"] == "Pod" and obj["spec"]["containers"][0]["image"] == B else None))
    status = h.run(lambda s: s.get("lastGoodImage") == B and h.at_rest(s))
    assert [o for o in order if o][:3] == ["backup", "migrate", "Pod"]  # no pod of B before the migration
    assert status["phase"] == "Ready" and h.image() == B
    [backup], [migrate] = h.jobs("backup"), h.jobs("migrate")
    assert backup["spec"]["template"]["spec"]["containers"][0]["image"] == A
    assert migrate["spec"]["template"]["spec"]["containers"][0]["image"] == B
    attempt = status["history"][0]["attempt"]
    assert backup["metadata"]["name"].endswith(attempt) and migrate["metadata"]["labels"]["aistreams.io/attempt"] == attempt
    assert status["lastBackup"]["location"] == f"s3://backups/ns/{NAME}/" + status["lastBackup"]["location"].split("/")[-1]
    assert attempt in status["lastBackup"]["location"]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "True", "Progressing": "False", "Degraded": "False", "RolledOut": "True"}


def test_a_failed_migration_rolls_nothing_out():
    h = Harness()
    h.ready()
    h.kube.failing_jobs.add("migrate")
    h.kube.patch_spec(NAME, {"image": B})
    status = h.run(h.at_rest)
    assert status["phase"] == "MigrationFailed" and h.image() == A
    assert not [p for p in h.api_pods() if p["spec"]["containers"][0]["image"] == B]
    assert h.outcomes()[0] == (B, "MigrationFailed") and "transactional" in status["message"]


def test_retry_after_backup_failed_runs_a_new_job():
    """Issue 9: the retry found the same failed Job (same name) and failed again without running anything."""
    h = Harness()
    h.ready()
    h.kube.failing_jobs.add("backup")
    h.kube.patch_spec(NAME, {"image": B})
    assert h.run(h.at_rest)["phase"] == "BackupFailed"
    h.settle(5)
    assert len(h.jobs("backup")) == 1  # not retried in a loop
    h.kube.failing_jobs.clear()
    h.kube.annotate(NAME, {RETRY_ANNOTATION: "1"})
    status = h.run(lambda s: s.get("lastGoodImage") == B and h.at_rest(s))
    assert len(h.jobs("backup")) == 2 and status["phase"] == "Ready"
    assert [o for _, o in h.outcomes()] == ["Succeeded", "BackupFailed", "Succeeded"][:len(h.outcomes())]


def test_retry_after_a_rollback_backs_up_again():
    """Issue 9: after a rollback, a retry reported BackupCompleted for a backup that nothing wrote."""
    h = Harness({"podLabels": NOT_READY})
    h.kube.patch_spec(NAME, {"podLabels": None})
    h.ready()
    h.kube.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    assert h.run(h.at_rest)["phase"] == "RolledBack"
    h.kube.annotate(NAME, {RETRY_ANNOTATION: "again"})
    h.run(lambda s: (s.get("rollout") or {}).get("step") == "Verifying")
    first, second = sorted(h.jobs("backup"), key=lambda j: j["metadata"]["creationTimestamp"])
    assert first["metadata"]["name"] != second["metadata"]["name"]
    assert h.run(h.at_rest)["phase"] == "RolledBack"
    assert [o for _, o in h.outcomes()][:2] == ["RolledBack", "RolledBack"]


def test_a_restore_uses_the_attempts_own_backup_and_only_once_every_pod_is_gone():
    """Issue 9: an old completed restore Job was taken as this rollout's; the restore could start while old
    pods were still terminating (status.replicas does not count them)."""
    h = Harness({"rollback": {"restoreDatabase": True}})
    h.ready()
    h.kube.termination_seconds = 8
    seen = []

    def no_pod_left(obj):
        if obj["kind"] == "Job" and obj["metadata"]["labels"]["app.kubernetes.io/component"] == "restore":
            seen.append((len(h.api_pods()), h.kube.list_sources[-1]))  # the last list read through to etcd
    h.kube.on_create.append(no_pod_left)
    for attempt, image in enumerate((B, C), start=1):
        h.kube.patch_spec(NAME, {"image": image, "podLabels": NOT_READY})
        status = h.run(h.at_rest)
        assert status["phase"] == "RolledBack" and "database restored" in status["message"]
        [restore] = [j for j in h.jobs("restore") if j["metadata"]["labels"]["aistreams.io/attempt"].endswith(f"-{attempt}")]
        backup = status["history"][0]["backup"]
        assert restore["spec"]["template"]["spec"]["containers"][0]["args"] == ["restore", backup]
    assert seen == [(0, "etcd"), (0, "etcd")]
    h.run(lambda s: s.get("ready") == "2/2")


def test_a_failed_restore_keeps_the_pods_down_until_retried_or_waived():
    h = Harness({"rollback": {"restoreDatabase": True}})
    h.ready()
    h.kube.failing_jobs.add("restore")
    h.kube.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    h.run(lambda s: s.get("phase") == "RestoreFailed")
    h.kube.patch_spec(NAME, {"image": A, "podLabels": None})  # a revert does not bring the pods back
    status = h.settle(10)
    assert status["phase"] == "RestoreFailed" and not h.api_pods()
    h.kube.annotate(NAME, {RETRY_ANNOTATION: "1"})
    h.run(lambda s: len(h.jobs("restore")) == 2)
    h.run(lambda s: s.get("phase") == "RestoreFailed")
    h.kube.patch_spec(NAME, {"rollback": {"restoreDatabase": False}})
    status = h.run(lambda s: s.get("phase") == "Ready")
    assert h.outcomes()[0] == (B, "RolledBack") and "restore FAILED" in status["history"][0]["message"]


# --- every step × every event ----------------------------------------------------------------------

def _scenario(step: str) -> Harness:
    """An instance whose rollout of B is at `step` (and stays there a while), with the undisturbed ending."""
    spec = {"rollback": {"restoreDatabase": True}} if step in ("RestoringDatabase", "RestoreFailed") else {}
    h = Harness(spec)
    h.ready()
    h.kube.job_seconds = 6
    change = {"image": B}
    if step in ("Verifying", "RestoringDatabase", "RestoreFailed", "RollingBack"):
        change["podLabels"] = NOT_READY
    if step == "RestoringDatabase":
        h.kube.termination_seconds = 6
    if step == "RestoreFailed":
        h.kube.failing_jobs.add("restore")
    if step in ("RollingOut", "RollingBack"):  # one-reconcile steps: an API error keeps them there a moment
        def interrupt(status, step=step):
            if (status.get("rollout") or {}).get("step") == step and not h.interrupted:
                h.interrupted = True
                h.kube.fail("patch", "Deployment", status=503)
        h.interrupted = False
        h.kube.on_status.append(interrupt)
    h.kube.patch_spec(NAME, change)
    h.run(lambda s: (s.get("rollout") or {}).get("step") == step)
    return h


UNDISTURBED = {"BackingUp": [(B, "Succeeded")], "Migrating": [(B, "Succeeded")], "RollingOut": [(B, "Succeeded")],
               "Verifying": [(B, "RolledBack")], "RestoringDatabase": [(B, "RolledBack")],
               "RestoreFailed": None, "RollingBack": [(B, "RolledBack")]}
STEPS = list(UNDISTURBED)


def _end(h: Harness) -> list[tuple[str, str]] | None:
    """Run to rest; None: the attempt holds (the pods down after a failed restore)."""
    if (h.status.get("rollout") or {}).get("step") == "RestoreFailed" or "restore" in h.kube.failing_jobs:
        h.run(lambda s: s.get("phase") == "RestoreFailed", limit=120)
        h.settle(10)
        assert h.status["phase"] == "RestoreFailed" and not h.api_pods()
        return None
    h.run(h.at_rest, limit=300)
    return [o for o in h.outcomes() if o[0] != A][:2]


def _jobs_once(h: Harness) -> None:
    per_attempt = Counter((j["metadata"]["labels"]["app.kubernetes.io/component"],
                           j["metadata"]["labels"]["aistreams.io/attempt"]) for j in h.jobs())
    assert all(n == 1 for (component, _), n in per_attempt.items() if component != "restore")


@pytest.mark.parametrize("step", STEPS)
def test_undisturbed(step):
    h = _scenario(step)
    assert _end(h) == UNDISTURBED[step]
    _jobs_once(h)


@pytest.mark.parametrize("step", STEPS)
def test_operator_restart_at_each_step(step):
    h = _scenario(step)
    h.restart()
    assert _end(h) == UNDISTURBED[step]
    _jobs_once(h)
    assert Counter(h.reasons())["RolloutStarted"] == 1


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("status", [409, 500])
def test_a_failed_status_write_at_each_step(step, status):
    h = _scenario(step)
    h.kube.fail("patch", "AdminApi/status", status=status)
    assert _end(h) == UNDISTURBED[step]
    _jobs_once(h)


@pytest.mark.parametrize("step", STEPS)
def test_an_api_outage_at_each_step(step):
    h = _scenario(step)
    h.kube.fail(status=503, times=25)
    assert _end(h) == UNDISTURBED[step]
    _jobs_once(h)
    assert h.errors >= 1


REVERTED = {"BackingUp": [(B, "Cancelled")], "Migrating": [(B, "Cancelled")], "RollingOut": [(B, "Cancelled")],
            "Verifying": [(B, "Cancelled")], "RestoringDatabase": [(B, "RolledBack")], "RestoreFailed": None,
            "RollingBack": [(B, "RolledBack")]}


@pytest.mark.parametrize("step", STEPS)
def test_revert_at_each_step(step):
    h = _scenario(step)
    h.kube.patch_spec(NAME, {"image": A, "podLabels": None})
    assert _end(h) == REVERTED[step]
    if REVERTED[step]:
        h.run(lambda s: s.get("phase") == "Ready")
        assert h.image() == A and h.status["ready"] == "2/2"


SUPERSEDED = {"BackingUp": [(C, "Succeeded"), (B, "Superseded")], "Migrating": [(C, "Succeeded"), (B, "Superseded")],
              "RollingOut": [(C, "Succeeded"), (B, "Superseded")], "Verifying": [(C, "Succeeded"), (B, "Superseded")],
              "RestoringDatabase": [(C, "Succeeded"), (B, "RolledBack")], "RestoreFailed": None,
              "RollingBack": [(C, "Succeeded"), (B, "RolledBack")]}


@pytest.mark.parametrize("step", STEPS)
def test_supersede_at_each_step(step):
    h = _scenario(step)
    h.kube.patch_spec(NAME, {"image": C, "podLabels": None})
    ended = _end(h)
    assert ended == SUPERSEDED[step]
    if ended:
        assert h.image() == C and h.status["lastGoodImage"] == C


@pytest.mark.parametrize("step", STEPS)
def test_retry_at_each_step(step):
    h = _scenario(step)
    h.kube.annotate(NAME, {RETRY_ANNOTATION: "now"})
    if step == "RestoreFailed":
        h.run(lambda s: len(h.jobs("restore")) == 2)  # a retry restores again
    assert _end(h) == UNDISTURBED[step]
    if step != "RestoreFailed":
        assert "RetryIgnored" in h.reasons()
    assert h.status["retryToken"] == "now"


@pytest.mark.parametrize("step, outcome", [("BackingUp", "BackupFailed"), ("Migrating", "MigrationFailed")])
def test_a_job_that_fails_at_each_job_step(step, outcome):
    h = _scenario(step)
    h.kube.failing_jobs.add({"BackingUp": "backup", "Migrating": "migrate"}[step])
    assert _end(h) == [(B, outcome)]
    assert h.image() == A and h.status["phase"] == outcome


# --- status that tells the truth --------------------------------------------------------------------

def test_held_status_follows_the_pods_and_says_when_a_failed_template_is_asked_for_again():
    h = Harness()
    h.ready()
    h.kube.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    h.run(h.at_rest)
    # The last good version's pods fail now: Ready must say so, not stay True.
    h.kube.patch_spec(NAME, {"replicas": 3})  # scaling while held: no rollout, the new pod is A's
    h.run(lambda s: s.get("ready") == "3/3")
    for pod in h.api_pods():
        pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    dep = h.kube.get("apps/v1", "Deployment", "ns", NAME)
    h.kube.objects[("apps/v1", "Deployment", "ns", NAME)]["status"].update(readyReplicas=0, availableReplicas=0)
    h.reconciler.reconcile(h.kube.get_adminapi("ns", NAME))
    conditions = {c["type"]: c["status"] for c in h.status["conditions"]}
    assert h.status["phase"] == "RolledBack" and conditions["Ready"] == "False" and dep
    # Back to A (the failed mark stays), then B again: held, with an Event saying why.
    h.kube.patch_spec(NAME, {"image": A, "podLabels": None})
    h.run(lambda s: s.get("phase") == "Ready")
    h.kube.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    status = h.settle(5)
    assert status["phase"] == "RolledBack" and h.image() == A
    assert "FailedTemplateRequested" in h.reasons()
    assert Counter(h.reasons())["RolloutStarted"] == 1


def test_success_clears_the_failed_mark():
    h = Harness()
    h.ready()
    h.kube.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    assert h.run(h.at_rest)["failedTemplateHash"]
    h.kube.patch_spec(NAME, {"image": C, "podLabels": None})
    status = h.run(lambda s: s.get("lastGoodImage") == C and h.at_rest(s))
    assert not status.get("failedTemplateHash")


def test_events_are_posted_before_the_status_write_of_their_step():
    """Issue 11 item 7: a crash between a step's status write and its Events lost them."""
    h = Harness()
    h.ready()
    seen_at_write = []
    h.kube.on_status.append(lambda s: seen_at_write.append(([e["reason"] for e in h.kube.events], s.get("phase"))))
    h.kube.patch_spec(NAME, {"image": B})
    h.run(lambda s: s.get("lastGoodImage") == B)
    first = {phase: reasons for reasons, phase in reversed(seen_at_write)}
    assert "RolloutStarted" in first["BackingUp"]
    assert "BackupCompleted" in first["Migrating"]
    assert "RolloutSucceeded" in first["Ready"]


def test_rolled_out_condition_is_for_this_generation():
    h = Harness()
    h.ready()
    h.kube.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    status = h.run(h.at_rest)
    rolled = next(c for c in status["conditions"] if c["type"] == "RolledOut")
    assert rolled["status"] == "False" and rolled["reason"] == "RolledBack"
    assert rolled["observedGeneration"] == h.kube.adminapi(NAME)["metadata"]["generation"]


# --- a pod that cannot be configured: the kubelet says so, the operator (which reads no Secret) listens -------

LLM_KEY = {"llm": {"apiKeySecretRef": {"name": "llm-key", "key": "token"}}}
LONG_GATE = {"rollout": {"healthChecks": False, "timeoutSeconds": 600}}


def test_the_gate_fails_fast_on_a_pod_that_cannot_be_configured():
    """Issue 11 item 4: a Secret that does not exist left the new pods in CreateContainerConfigError until
    rollout.timeoutSeconds; now the gate fails once the grace has passed, with the kubelet's words."""
    h = Harness(LONG_GATE)
    h.ready()
    h.kube.missing_secrets.add("llm-key")
    h.kube.patch_spec(NAME, {"image": B, **LLM_KEY})
    seen: dict[str, datetime.datetime] = {}  # when the status first said it: the error seen, the rollback
    h.kube.on_status.append(lambda s: "configErrorSince" in (s.get("rollout") or {})
                            and seen.setdefault("error", h.kube.now))
    h.kube.on_status.append(lambda s: (s.get("rollout") or {}).get("step") == "RollingBack"
                            and seen.setdefault("RollingBack", h.kube.now))
    h.run(lambda s: "error" in seen)
    h.settle(5)
    h.restart()  # the grace is counted from the attempt in status, not from the process
    status = h.run(h.at_rest, limit=60)
    assert status["phase"] == "RolledBack" and h.image() == A
    waited = seen["RollingBack"] - seen["error"]
    assert CONFIG_ERROR_GRACE <= waited <= CONFIG_ERROR_GRACE + datetime.timedelta(seconds=2)
    assert f"pod {NAME}-" in status["message"]
    assert 'container admin-api: CreateContainerConfigError: secret "llm-key" not found' in status["message"]
    assert status["history"][0]["message"].startswith(
        f"rolled back to {A}: a pod of the new template cannot be configured: pod {NAME}-")
    [event] = [e for e in h.kube.events if e["reason"] == "RolloutFailed"]
    assert 'secret "llm-key" not found' in event["message"]


def test_a_secret_created_within_the_grace_lets_the_rollout_go_on():
    """The kubelet retries: a Secret applied a moment after the spec is no failure."""
    h = Harness(LONG_GATE)
    h.ready()
    h.kube.missing_secrets.add("llm-key")
    h.kube.patch_spec(NAME, {"image": B, **LLM_KEY})
    h.run(lambda s: "configErrorSince" in (s.get("rollout") or {}))
    h.settle(int(CONFIG_ERROR_GRACE.total_seconds()) - 5)
    assert h.status["rollout"]["step"] == "Verifying"
    h.kube.missing_secrets.clear()  # created a moment later: the kubelet starts the container
    status = h.run(lambda s: s.get("lastGoodImage") == B and h.at_rest(s), limit=30)
    assert status["phase"] == "Ready" and h.outcomes()[0] == (B, "Succeeded")


def test_a_first_install_says_at_once_that_its_pods_cannot_be_configured():
    h = Harness({"replicas": 1, **LLM_KEY, **LONG_GATE})  # the Deployment's progress deadline: 600 s
    h.kube.missing_secrets.add("llm-key")
    status = h.run(lambda s: "CreateContainerConfigError" in s.get("message", ""), limit=5)
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert status["phase"] == "Progressing" and conditions == {
        "Ready": ("False", "ConfigError"), "Progressing": ("True", "ConfigError"),
        "Degraded": ("True", "ConfigError"), "RolledOut": ("False", "ConfigError")}
    assert 'container admin-api: CreateContainerConfigError: secret "llm-key" not found' in status["message"]
    # Steady while it lasts: one Event, no write, and the normal resync (no step polled).
    h.settle(3)
    before = len(h.kube.requests)
    h.settle(20)
    assert [r for r in h.kube.requests[before:] if r[0] not in ("get", "list")] == []
    assert Counter(h.reasons())["ConfigError"] == 1
    assert h.reconciler.reconcile(h.kube.get_adminapi("ns", NAME)).waiting is None
    h.kube.missing_secrets.clear()
    status = h.ready()
    assert {c["type"]: c["status"] for c in status["conditions"]}["Degraded"] == "False"


def test_a_held_template_says_when_its_new_pods_cannot_be_configured():
    h = Harness()
    h.ready()
    h.kube.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    assert h.run(h.at_rest)["phase"] == "RolledBack"
    h.kube.missing_secrets.add(f"{NAME}-secrets")  # deleted since: running pods keep their env, a new one cannot
    h.kube.patch_spec(NAME, {"replicas": 3})
    status = h.run(lambda s: "CreateContainerConfigError" in s.get("message", ""), limit=5)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert status["phase"] == "RolledBack" and ready["reason"] == "ConfigError"
    assert f'secret "{NAME}-secrets" not found' in ready["message"] and h.image() == A
    h.settle(5)
    assert Counter(h.reasons())["ConfigError"] == 1


# --- scaling is not a rollout --------------------------------------------------------------------------

def test_scaling_runs_no_job_and_zero_is_a_state():
    h = Harness()
    h.ready()
    for replicas in (1, 2, 0, 2):
        h.kube.patch_spec(NAME, {"replicas": replicas})
        phase = "ScaledToZero" if replicas == 0 else "Ready"
        status = h.run(lambda s: s.get("phase") == phase and s.get("ready") == f"{replicas}/{replicas}"
                       and not h.api_pods()[replicas:])
        assert not status.get("rollout")
    assert not h.jobs() and not status.get("history")
    assert {c["type"]: c["status"] for c in status["conditions"]}["RolledOut"] == "True"


# --- names -----------------------------------------------------------------------------------------------

def test_a_63_character_name_rolls_out():
    """Issue 11 item 2: at 63 characters the backup Job's name did not fit; the rollout stayed in BackingUp."""
    h = Harness(name="x" * 63)
    h.run(lambda s: s.get("phase") == "Ready")
    h.kube.patch_spec("x" * 63, {"image": B})
    status = h.run(lambda s: s.get("lastGoodImage") == B and h.at_rest(s))
    assert status["phase"] == "Ready"
    assert all(len(j["metadata"]["name"]) <= 63 for j in h.jobs())


# --- the gate checks what serves ------------------------------------------------------------------------

def test_the_gate_checks_every_new_pod_by_its_own_address():
    """Issue 8: the gate asked the Service, which old pods answer too; now every new pod is asked itself."""
    h = Harness({"rollout": {"timeoutSeconds": 20}})  # health checks on, no URL: the pods themselves
    h.ready()
    new_pods: list[str] = []
    h.kube.on_create.append(lambda obj: obj["kind"] == "Pod" and obj["spec"]["containers"][0]["image"] == B
                            and new_pods.append(f"http://{obj['status']['podIP']}:8001"))
    asked: list[tuple[str, tuple[str, ...]]] = []

    def health(url: str, paths: tuple[str, ...]) -> str | None:
        asked.append((url, paths))
        return "/health/ready answered 503" if url == new_pods[-1] else None  # one bad pod of two
    h.reconciler.check_health = health
    h.kube.patch_spec(NAME, {"image": B})
    status = h.run(h.at_rest)
    assert status["phase"] == "RolledBack"
    assert f"health check failed: pod {NAME}-" in status["history"][0]["message"]
    assert asked and {url for url, _ in asked} <= set(new_pods)
    assert all(paths == ("/health/ready", "/health/live") for _, paths in asked)


def test_the_gate_uses_the_configured_url_instead():
    h = Harness({"rollout": {"timeoutSeconds": 20, "healthCheckURL": "http://127.0.0.1:9999"}})
    h.ready()
    h.unhealthy["http://127.0.0.1:9999"] = "/health/db answered 503"
    h.kube.patch_spec(NAME, {"image": B})
    status = h.run(h.at_rest)
    assert "health check failed: /health/db answered 503" in status["history"][0]["message"]


# --- never lose a repair, never make a phantom one --------------------------------------------------

def test_a_steady_instance_makes_no_write_and_no_failing_request():
    """Issue 9 and 11 item 6: every reconcile POSTed the bootstrap Secret (409), DELETEd an absent PDB (404),
    and values the server rewrites (1000m -> 1) made every reconcile an apply and a DriftRepaired Event."""
    h = Harness({"replicas": 1, "resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"},
                                              "limits": {"cpu": 2}}})
    h.ready()
    h.settle(3)
    before = len(h.kube.requests)
    h.settle(20)
    steady = h.kube.requests[before:]
    assert [r for r in steady if r[0] not in ("get", "list")] == []
    assert [r for r in steady if r[2] >= 400] == []
    per_reconcile = len(steady) / 20
    print(f"\nsteady instance: {per_reconcile:.0f} read requests per reconcile, 0 writes, 0 failures")
    assert "DriftRepaired" not in h.reasons()


def test_a_rollout_sends_each_request_once():
    """Issue 13: at 1,000 instances the API server is the bottleneck, so a rollout sends nothing twice: the attempt
    starts with one status write (its backup key chosen with it), each Job is created without a read first (a
    POST: a taken name is a 409, and only then is it read), and a reconcile lists the pods once at most, from the
    API server's watch cache."""
    h = Harness()
    h.ready()
    h.settle(3)
    h.kube.patch_spec(NAME, {"image": B})
    before = len(h.kube.requests)
    h.step()
    first = h.kube.requests[before:]
    assert first.count(("patch", "AdminApi/status", 200)) == 1, first
    assert h.status["rollout"]["step"] == "BackingUp" and h.status["rollout"]["backupKey"]
    assert [(verb, code) for verb, kind, code in first if kind == "Job"] == [("post", 200)]
    lists = len(h.kube.list_sources)
    while not (h.status.get("lastGoodImage") == B and h.at_rest(h.status)):
        before = len(h.kube.requests)
        h.step()
        assert [k for v, k, _ in h.kube.requests[before:] if v == "list"].count("Pod") <= 1, h.status["phase"]
        assert len(h.kube.requests) < 2000, h.status
    # The pods while they come, from the API server's cache (one step behind in this harness): no etcd read.
    assert set(h.kube.list_sources[lists:]) == {"cache"}
    # The backup's and the migration's, created once each; read after that (this harness runs no watch).
    assert [(verb, code) for verb, kind, code in h.kube.requests if kind == "Job" and verb != "get"] == \
        [("post", 200), ("post", 200)]
    h.kube.job_seconds = 3600.0
    h.kube.patch_spec(NAME, {"image": C})
    h.run(lambda s: len(h.jobs("backup")) == 2)
    h.restart()  # a new operator knows nothing: the name taken is a 409, read, and from then on only read
    before = len(h.kube.requests)
    h.settle(4)
    jobs = [(verb, code) for verb, kind, code in h.kube.requests[before:] if kind == "Job"]
    assert jobs == [("post", 409)] + [("get", 200)] * 4, jobs


def test_zero_values_the_server_leaves_out_are_no_drift():
    """The API server does not store the zero value of an `omitempty` field (a probe's initialDelaySeconds: 0, an
    env var's value: ""): every reconcile saw drift, applied and posted DriftRepaired."""
    h = Harness({"replicas": 1, "readinessProbe": {"initialDelaySeconds": 0}, "podAnnotations": {},
                 "env": [{"name": "EMPTY", "value": ""}, {"name": "SET", "value": "x"}]})
    h.ready()
    container = h.kube.get("apps/v1", "Deployment", "ns", NAME)["spec"]["template"]["spec"]["containers"][0]
    assert "initialDelaySeconds" not in container["readinessProbe"] and {"name": "EMPTY"} in container["env"]
    before = len(h.kube.requests)
    h.settle(10)
    assert [r for r in h.kube.requests[before:] if r[0] not in ("get", "list")] == []
    assert "DriftRepaired" not in h.reasons()


def test_a_removed_field_is_drift_even_when_we_set_it_to_false():
    """Booleans we set are Go pointers, stored even when false: a missing one was removed by someone."""
    h = Harness()
    h.ready()
    dep = h.kube.get("apps/v1", "Deployment", "ns", NAME)
    del dep["spec"]["template"]["spec"]["automountServiceAccountToken"]
    h.kube.objects[("apps/v1", "Deployment", "ns", NAME)] = dep
    h.settle(2)
    assert h.kube.get("apps/v1", "Deployment", "ns", NAME)["spec"]["template"]["spec"][
        "automountServiceAccountToken"] is False
    assert Counter(h.reasons())["DriftRepaired"] == 1


def test_drift_is_put_back_with_an_event():
    h = Harness()
    h.ready()
    h.kube.delete("v1", "Service", NAME)
    h.kube.delete("policy/v1", "PodDisruptionBudget", NAME)
    h.settle(2)
    assert h.kube.get("v1", "Service", "ns", NAME) and h.kube.get("policy/v1", "PodDisruptionBudget", "ns", NAME)
    assert Counter(h.reasons())["DriftRepaired"] == 2


def test_the_bootstrap_secret_is_created_once_without_reading_secrets():
    h = Harness()
    h.ready()
    h.settle(5)
    secret_requests = [r for r in h.kube.requests if r[1] == "Secret"]
    assert secret_requests == [("post", "Secret", 200)]
    assert h.status["bootstrapSecret"] == f"{NAME}-bootstrap-admin"


def test_a_job_of_another_attempt_is_never_trusted():
    h = Harness()
    h.ready()
    h.kube.patch_spec(NAME, {"image": B})
    h.run(lambda s: bool(h.jobs("backup")))
    [job] = h.jobs("backup")
    job["metadata"]["labels"]["aistreams.io/attempt"] = "someone-else"
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    status = h.settle(5)
    outcome = h.reconciler.reconcile(h.kube.get_adminapi("ns", NAME))
    assert status["rollout"]["step"] == "BackingUp" and "belongs to another attempt" in str(outcome.waiting)
    assert not h.jobs("migrate")


def test_fail_label_fails_backups_in_the_fake_too():
    h = Harness()
    h.ready()
    h.kube.patch_spec(NAME, {"image": B, "backup": {"podLabels": FAIL}})
    assert h.run(h.at_rest)["phase"] == "BackupFailed"


def test_a_rollout_recorded_before_attempts_existed_is_superseded_by_an_attempt():
    h = Harness()
    h.ready()
    h.kube.patch_spec(NAME, {"image": B})
    h.kube.adminapi(NAME)["status"]["rollout"] = {"id": "0123456789abcdef", "image": B, "fromImage": A,
                                                  "step": "Verifying", "startedAt": "2026-11-30T10:00:00Z"}
    status = h.run(lambda s: s.get("lastGoodImage") == B and h.at_rest(s))
    assert [o for _, o in h.outcomes()][:2] == ["Succeeded", "Superseded"]
    assert len(h.jobs("backup")) == 1


def test_a_step_the_watches_show_is_polled_seldom_and_what_they_cannot_show_often():
    """Issue 13: every step under way was polled every 2 s, a fleet's image change was mostly polls. A Job
    running or pods coming show in watched objects (their events bring the instance back): polled every 30 s,
    and a rollout's deadline is still met. A pod that cannot be configured shows in no watched object: 2 s."""
    h = Harness({"rollout": {"timeoutSeconds": 20}})
    h.ready()
    h.kube.job_seconds = 100.0
    h.kube.patch_spec(NAME, {"image": B})
    outcome = h.reconciler.reconcile(h.kube.get_adminapi("ns", NAME))
    assert h.status["phase"] == "BackingUp" and outcome.waiting.delay == reconcile.WATCHED_POLL_SECONDS

    h.kube.job_seconds = 0.0
    h.run(lambda s: s.get("phase") == "Verifying")
    outcome = h.reconciler.reconcile(h.kube.get_adminapi("ns", NAME))
    assert 0 < outcome.waiting.delay <= 20  # the deadline, not 30 s later

    h.kube.missing_secrets.add("llm-key")  # a pod of the template cannot start: only the pod's status says so
    h.kube.patch_spec(NAME, {"image": C, **LLM_KEY})
    h.run(lambda s: s.get("phase") == "Verifying" and (s.get("rollout") or {}).get("image") == C)
    h.settle(3)  # the pod is created, its kubelet says why it waits, the cache the pods are listed from shows it
    outcome = h.reconciler.reconcile(h.kube.get_adminapi("ns", NAME))
    assert "cannot be configured" in outcome.waiting.args[0] and outcome.waiting.delay == reconcile.POLL_SECONDS


def test_a_new_instance_is_applied_without_reading_its_objects_first():
    """Issue 13: a fleet's first reconciles read every object before applying it, though none can exist yet as
    ours (a GET each of the Service, PDB and Deployment per instance)."""
    h = Harness()
    h.step()
    assert {kind for verb, kind, _ in h.kube.requests if verb == "patch"} >= {"Service", "PodDisruptionBudget", "Deployment"}
    assert [(verb, kind) for verb, kind, _ in h.kube.requests if verb == "get" and kind != "AdminApi"] == []
    h.ready()
    h.kube.delete("v1", "Service", NAME)  # from then on, what exists is read first: drift is told apart
    h.step()
    assert h.kube.get("v1", "Service", "ns", NAME) and "DriftRepaired" in h.reasons()
