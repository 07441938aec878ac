"""Safe rollouts against the real control plane: backup first, gate, automatic rollback (issue 5).

kwok plays the kubelets (hack/cluster/stages): pods labelled sim.aistreams.io/ready=false never become
Ready, and pods labelled sim.aistreams.io/fail=true fail, which is how a bad release and a failing backup
are staged here.
"""
from __future__ import annotations

import datetime

import pytest

from .conftest import settle, wait_until

pytestmark = [pytest.mark.kube]

NAME = "chat"
A, B, C = "admin-api:1.0.0", "admin-api:1.1.0", "admin-api:1.2.0"
# Deployment-only gate here: the pods are simulated, so there is no service behind the Service to ask.
MINIO = {"endpoint": "minio:9000", "bucket": "backups", "accessKeySecretRef": {"name": "s3", "key": "access"},
         "secretKeySecretRef": {"name": "s3", "key": "secret"}}
BASE = {"replicas": 2, "qdrant": {"host": "qdrant"}, "minio": MINIO,
        "rollout": {"healthChecks": False, "timeoutSeconds": 15}}
NOT_READY = {"sim.aistreams.io/ready": "false"}
FAIL = {"sim.aistreams.io/fail": "true"}


def ts(value) -> datetime.datetime:
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def jobs(adminapis, component):
    return [j for j in adminapis.batch.list_namespaced_job(adminapis.namespace).items
            if j.metadata.labels.get("app.kubernetes.io/component") == component]


def backup_jobs(adminapis):
    return jobs(adminapis, "backup")


def new_replicaset_created(adminapis, image):
    for rs in adminapis.apps.list_namespaced_replica_set(adminapis.namespace).items:
        if rs.spec.template.spec.containers[0].image == image:
            return rs.metadata.creation_timestamp
    return None


def test_good_rollout_backs_up_first_then_rolls_out(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    assert not backup_jobs(adminapis)  # a first install has nothing to back up
    adminapis.patch_spec(NAME, {"image": B})
    status = adminapis.wait_status(NAME, lambda s: s.get("lastGoodImage") == B and s["phase"] == "Ready")
    assert adminapis.image(NAME) == B and status["currentImage"] == B

    [job] = backup_jobs(adminapis)
    assert job.spec.template.spec.containers[0].image == A  # the known-good version makes the backup
    assert job.spec.template.spec.containers[0].args[:5] == ["backup", "--namespace", adminapis.namespace,
                                                             "--instance", NAME]
    assert job.status.succeeded == 1
    # The new ReplicaSet appeared only after the backup had completed.
    assert ts(job.status.completion_time) <= ts(new_replicaset_created(adminapis, B))
    assert status["lastBackup"]["name"] == job.metadata.name
    location = status["lastBackup"]["location"]
    assert location.startswith(f"s3://backups/{adminapis.namespace}/chat/") and "1.0.0" in location
    assert location.endswith(f"-{status['history'][0]['attempt']}.dump")
    # The new version's migration ran as its own Job, after the backup, before the new ReplicaSet.
    [migrate] = jobs(adminapis, "migrate")
    assert migrate.spec.template.spec.containers[0].image == B and migrate.spec.template.spec.containers[0].args == ["migrate"]
    assert ts(job.status.completion_time) <= ts(migrate.metadata.creation_timestamp)
    assert ts(migrate.status.completion_time) <= ts(new_replicaset_created(adminapis, B))
    assert status["history"][0]["outcome"] == "Succeeded" and status["history"][0]["image"] == B
    # (Events have one-second timestamps: their order is proven above, by the objects' own times.)
    assert {"RolloutStarted", "BackupStarted", "BackupCompleted", "RolloutSucceeded"} <= set(adminapis.event_reasons(NAME))


def test_failed_backup_rolls_nothing_out(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "backup": {"podLabels": FAIL}})
    status = adminapis.wait_phase(NAME, "BackupFailed", timeout=120)
    assert adminapis.image(NAME) == A
    assert not new_replicaset_created(adminapis, B)
    assert "backup Job" in status["message"] and A in status["message"]
    assert status["history"][0]["outcome"] == "BackupFailed"
    assert "BackupFailed" in adminapis.event_reasons(NAME)
    # Not retried in a hot loop: one Job, still failed, a while later.
    settle(5)
    assert len(backup_jobs(adminapis)) == 1 and adminapis.image(NAME) == A
    # Fixing the cause and changing the spec retries.
    adminapis.patch_spec(NAME, {"image": C, "backup": {"podLabels": None}})
    adminapis.wait_phase(NAME, "Ready", timeout=120)
    wait_until(lambda: adminapis.image(NAME) == C, timeout=30, what="C rolled out")


def test_retry_annotation_retries_a_failed_template(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A, "backup": {"enabled": False}})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    adminapis.wait_phase(NAME, "RolledBack", timeout=120)
    adminapis.annotate(NAME, {"aistreams.io/retry-rollout": "1"})
    wait_until(lambda: adminapis.image(NAME) == B, timeout=30, what="the failed template tried again")
    adminapis.wait_phase(NAME, "RolledBack", timeout=120)
    assert [h["outcome"] for h in adminapis.status(NAME)["history"][:2]] == ["RolledBack", "RolledBack"]


def test_bad_version_is_rolled_back_and_later_changes_still_work(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    wait_until(lambda: adminapis.image(NAME) == B, timeout=60, what="B being rolled out")
    started = datetime.datetime.now(datetime.timezone.utc)
    status = adminapis.wait_phase(NAME, "RolledBack", timeout=120)
    detection = datetime.datetime.now(datetime.timezone.utc) - started
    assert adminapis.image(NAME) == A and status["currentImage"] == A
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "RolledBack"
    assert "rolled back to admin-api:1.0.0" in degraded["message"]
    assert status["history"][0]["outcome"] == "RolledBack"
    assert {"RolloutFailed", "RolledBack"} <= set(adminapis.event_reasons(NAME))
    # The bad template is not tried again while the spec stays.
    settle(5)
    assert adminapis.image(NAME) == A
    # The old version serves again: all its replicas ready.
    wait_until(lambda: adminapis.status(NAME).get("ready") == "2/2", timeout=60, what="A fully ready again")
    print(f"\nnew template applied -> RolledBack: {detection.total_seconds():.1f}s with timeoutSeconds=15")
    # An unrelated later change rolls out normally.
    adminapis.patch_spec(NAME, {"image": C, "podLabels": None})
    adminapis.wait_phase(NAME, "Ready", timeout=120)
    wait_until(lambda: adminapis.status(NAME).get("lastGoodImage") == C, timeout=30, what="C last good")
    assert adminapis.image(NAME) == C


def test_operator_killed_mid_rollout_finishes_it_exactly_once(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A, "rollout": {**BASE["rollout"], "timeoutSeconds": 20}})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    wait_until(lambda: adminapis.status(NAME).get("phase") == "Verifying", timeout=60, what="the gate")
    operator.kill()
    settle(3)
    operator.start()
    status = adminapis.wait_phase(NAME, "RolledBack", timeout=120)
    assert adminapis.image(NAME) == A
    assert len(backup_jobs(adminapis)) == 1  # no second backup for the same rollout
    outcomes = [h["outcome"] for h in status["history"]]
    assert outcomes == ["RolledBack"]  # one rollback, recorded once
    # Events are posted just after the status is written.
    wait_until(lambda: "RolledBack" in adminapis.event_reasons(NAME), timeout=15, what="the RolledBack Event")
    settle(3)
    assert adminapis.event_reasons(NAME).count("RolledBack") == 1


def test_operator_killed_during_backup_resumes_without_a_second_backup(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B})
    wait_until(lambda: backup_jobs(adminapis), timeout=60, what="the backup Job")
    operator.kill()
    operator.start()
    adminapis.wait_phase(NAME, "Ready", timeout=120)
    wait_until(lambda: adminapis.status(NAME).get("lastGoodImage") == B, timeout=60, what="B last good")
    assert len(backup_jobs(adminapis)) == 1
    assert [h["outcome"] for h in adminapis.status(NAME)["history"]] == ["Succeeded"]


def test_health_gate_rolls_back_when_the_service_is_not_ready(local_cluster, operator, adminapis, serve):
    """A real `admin-api serve` whose database is unreachable answers /health/ready 503: the gate says no."""
    unhealthy = serve("postgresql+asyncpg://nobody:nothing@127.0.0.1:9/admin_db")
    gate = {"healthChecks": True, "healthCheckURL": unhealthy.base_url, "timeoutSeconds": 15}
    adminapis.create(NAME, {**BASE, "image": A, "backup": {"enabled": False}, "rollout": gate})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B})
    status = adminapis.wait_phase(NAME, "RolledBack", timeout=120)
    assert adminapis.image(NAME) == A
    assert "health check failed: /health/db answered 503" in status["message"]


def test_health_gate_passes_a_healthy_service(local_cluster, operator, adminapis, serve, postgres_url):
    healthy = serve(postgres_url)
    gate = {"healthChecks": True, "healthCheckURL": healthy.base_url, "timeoutSeconds": 30}
    adminapis.create(NAME, {**BASE, "image": A, "backup": {"enabled": False}, "rollout": gate})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B})
    adminapis.wait_status(NAME, lambda s: s.get("lastGoodImage") == B and s["phase"] == "Ready")
    assert adminapis.image(NAME) == B


def test_rollback_can_restore_the_pre_rollout_backup(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A, "rollback": {"restoreDatabase": True}})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    status = adminapis.wait_phase(NAME, "RolledBack", timeout=120)
    assert adminapis.image(NAME) == A
    [restore] = [j for j in adminapis.batch.list_namespaced_job(adminapis.namespace).items
                 if j.metadata.labels.get("app.kubernetes.io/component") == "restore"]
    container = restore.spec.template.spec.containers[0]
    assert container.image == A and container.args == ["restore", status["lastBackup"]["location"]]
    assert restore.status.succeeded == 1
    # Nothing may write while the database goes back in time: the Deployment was scaled to 0 first.
    rs_events = [e for e in adminapis.core.list_namespaced_event(adminapis.namespace).items
                 if e.involved_object.kind == "Deployment" and "to 0" in (e.message or "")]
    assert rs_events, "the Deployment was scaled to 0 before the restore"
    assert "database restored from the pre-rollout backup" in status["message"]
    assert {"RestoreStarted", "RolledBack"} <= set(adminapis.event_reasons(NAME))
    wait_until(lambda: adminapis.status(NAME).get("ready") == "2/2", timeout=60, what="A serving again")


def test_backup_without_object_storage_is_refused_clearly(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**{k: v for k, v in BASE.items() if k != "minio"}, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B})
    status = adminapis.wait_phase(NAME, "BackupFailed")
    assert "spec.minio is incomplete" in status["message"] and adminapis.image(NAME) == A
    assert not backup_jobs(adminapis)


def test_a_spec_change_mid_rollout_supersedes_it(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A, "rollout": {**BASE["rollout"], "timeoutSeconds": 120}})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    adminapis.wait_phase(NAME, "Verifying")
    adminapis.patch_spec(NAME, {"image": C, "podLabels": None})
    status = adminapis.wait_status(NAME, lambda s: s.get("lastGoodImage") == C and s["phase"] == "Ready")
    assert adminapis.image(NAME) == C
    assert [(h["image"], h["outcome"]) for h in status["history"][:2]] == [(C, "Succeeded"), (B, "Superseded")]
    assert len(backup_jobs(adminapis)) == 2  # each rollout backs up before it rolls out


def test_retry_after_backup_failed_runs_a_new_job_and_rolls_out(local_cluster, operator, adminapis):
    """Issue 9: Job names came from the template hash alone, so the retry found the same failed Job and
    failed again without running anything."""
    adminapis.create(NAME, {**BASE, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "backup": {"podLabels": FAIL}})
    failed = adminapis.wait_phase(NAME, "BackupFailed", timeout=120)["history"][0]["attempt"]
    # Fix the cause (the Job's labels are not part of the pod template), then retry the same template.
    adminapis.patch_spec(NAME, {"backup": {"podLabels": None}})
    settle(3)
    assert adminapis.status(NAME)["phase"] == "BackupFailed" and adminapis.image(NAME) == A  # not by itself
    adminapis.annotate(NAME, {"aistreams.io/retry-rollout": "1"})
    status = adminapis.wait_status(NAME, lambda s: s.get("lastGoodImage") == B and s["phase"] == "Ready", timeout=120)
    assert adminapis.image(NAME) == B
    assert [h["outcome"] for h in status["history"][:2]] == ["Succeeded", "BackupFailed"]
    retried = status["history"][0]["attempt"]
    assert retried != failed
    by_attempt = {j.metadata.labels["aistreams.io/attempt"]: j for j in backup_jobs(adminapis)}
    assert set(by_attempt) == {failed, retried}
    assert by_attempt[failed].status.failed and by_attempt[retried].status.succeeded == 1


def _pdb(adminapis):
    from kubernetes import client
    return client.PolicyV1Api(adminapis.apps.api_client).read_namespaced_pod_disruption_budget(NAME, adminapis.namespace)


def test_the_pdb_allows_a_disruption_after_a_backup(local_cluster, operator, adminapis):
    """Issue 9: the backup Job's pods carried the API's selector labels; the disruption controller cannot
    scale a Job and fails safe, disruptionsAllowed 0 (node drains blocked) for as long as they exist."""
    adminapis.create(NAME, {**BASE, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    wait_until(lambda: _pdb(adminapis).status.disruptions_allowed == 1, timeout=30, what="1 disruption allowed")
    adminapis.patch_spec(NAME, {"image": B})
    adminapis.wait_status(NAME, lambda s: s.get("lastGoodImage") == B and s["phase"] == "Ready")
    job_pods = adminapis.core.list_namespaced_pod(adminapis.namespace, label_selector="app.kubernetes.io/component=backup")
    assert job_pods.items  # the backup's pod is still there (Succeeded), as it stays until the Job goes
    wait_until(lambda: _pdb(adminapis).status.disruptions_allowed == 1 and _pdb(adminapis).status.expected_pods == 2,
               timeout=30, what="the PDB counting the 2 API pods only and allowing 1 disruption")
    service = adminapis.core.read_namespaced_endpoints(NAME, adminapis.namespace)
    addresses = [a for subset in service.subsets or () for a in subset.addresses or ()]
    assert len(addresses) == 2  # the Service selects the two API pods, not the Job's


def test_scaling_runs_no_job_and_no_gate(local_cluster, operator, adminapis):
    """Issue 9: anti-affinity only for replicas > 1 made 1 -> 2 a template change: a backup and the gate."""
    adminapis.create(NAME, {**BASE, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    for replicas in (1, 2, 0, 2):
        adminapis.patch_spec(NAME, {"replicas": replicas})
        phase = "ScaledToZero" if replicas == 0 else "Ready"
        adminapis.wait_status(NAME, lambda s: s.get("phase") == phase and s.get("ready") == f"{replicas}/{replicas}"
                              and s.get("observedGeneration") == adminapis.get(NAME)["metadata"]["generation"])
    assert not adminapis.batch.list_namespaced_job(adminapis.namespace).items
    status = adminapis.status(NAME)
    assert not status.get("history") and not status.get("rollout")
    assert {"RolloutStarted", "BackupStarted"}.isdisjoint(adminapis.event_reasons(NAME))


def test_a_63_character_name_rolls_out(local_cluster, operator, adminapis):
    """Issue 11 item 2: a 63-character name gave an 81-character backup Job name whose job-name label was
    refused; the rollout stayed in BackingUp for good."""
    name = "a-very-long-admin-api-instance-name-that-uses-all-63-characters"
    assert len(name) == 63
    adminapis.create(name, {**BASE, "image": A})
    adminapis.wait_phase(name, "Ready")
    adminapis.patch_spec(name, {"image": B})
    adminapis.wait_status(name, lambda s: s.get("lastGoodImage") == B and s["phase"] == "Ready", timeout=120)
    assert all(len(j.metadata.name) <= 63 for j in adminapis.batch.list_namespaced_job(adminapis.namespace).items)


def test_kubectl_wait_on_rolled_out_waits_for_this_generation(local_cluster, operator, adminapis, kubeconfig):
    """Issue 11 item 7: `kubectl wait --for=condition=Ready` returned success after a rollback."""
    from .conftest import kubectl
    adminapis.create(NAME, {**BASE, "image": A})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    waited = kubectl(kubeconfig, "-n", adminapis.namespace, "wait", f"adminapi/{NAME}", "--for=condition=RolledOut",
                     "--timeout=40s", check=False)
    assert waited.returncode != 0  # never rolled out: the wait times out, it does not succeed
    status = adminapis.wait_phase(NAME, "RolledBack", timeout=60)
    rolled = next(c for c in status["conditions"] if c["type"] == "RolledOut")
    assert rolled["status"] == "False" and rolled["reason"] == "RolledBack"
    adminapis.patch_spec(NAME, {"image": C, "podLabels": None})
    waited = kubectl(kubeconfig, "-n", adminapis.namespace, "wait", f"adminapi/{NAME}", "--for=condition=RolledOut",
                     "--timeout=55s", check=False)
    assert waited.returncode == 0, waited.stderr
    assert adminapis.status(NAME)["lastGoodImage"] == C
