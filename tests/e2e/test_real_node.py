"""The product on a real node: our images in real containers, real probes, the backup Job, the gate
and the rollback acting on them (issue 8). Run alone with `pytest -m realnode`."""
from __future__ import annotations

import os
import subprocess
import threading
import time
import urllib.request

import pytest
from kubernetes import client

from tests.support.databases import Database
from tests.support.kube import REPO_ROOT, wait_for
from tests.support.migrations import NEXT, NEXT_REVISION

pytestmark = [pytest.mark.realnode]

BOOT = 240  # first pods of a namespace on a busy 2-core machine
SLACK = 30  # a rollback may come this long after timeoutSeconds (the operator polls; CPU is shared)


def backup_jobs(inst):
    return [j for j in inst.adminapis.batch.list_namespaced_job(inst.namespace).items
            if j.metadata.labels.get("app.kubernetes.io/component") == "backup"]


def all_ready(pods) -> bool:
    return bool(pods) and all(
        p.status.container_statuses and all(c.ready for c in p.status.container_statuses) for p in pods)


def retag(inst, suffix: str) -> str:
    image = inst.stack.cluster.service_image
    new = f"{image}-{suffix}"
    done = inst.stack.cluster.ctr("images", "tag", "--force", image, new)
    assert done.returncode == 0, done.stderr
    return new


def broken(inst) -> str:
    image = inst.stack.cluster.service_image
    bad = f"{image}-broken"
    subprocess.run([str(REPO_ROOT / "hack" / "images" / "broken.sh"), image, bad], check=True, capture_output=True)
    return bad


def jobs_of(inst, component: str):
    return [j for j in inst.adminapis.batch.list_namespaced_job(inst.namespace).items
            if j.metadata.labels.get("app.kubernetes.io/component") == component]


def with_next_migration(inst, tmp_path) -> str:
    """A newer release that changes the schema: our image plus tests.support.migrations' next revision (a table
    with a foreign key to USR_CNVS_SMRY, a column, indexes, an extension, a view, rows), which says so when
    alembic loads it."""
    image = inst.stack.cluster.service_image
    pod = inst.pods(image)[0].metadata.name
    versions = inst.stack.kubectl("-n", inst.namespace, "exec", pod, "-c", "admin-api", "--", "python", "-c",
                                  "import admin_api.migrations as m; print(m.MIGRATIONS_DIR / 'versions')").stdout.strip()
    revision = tmp_path / "9001_next.py"
    revision.write_text(NEXT_REVISION + f"\nprint('loaded revision {NEXT}', flush=True)\n")
    newer = f"{image}-next-schema"
    subprocess.run([str(REPO_ROOT / "hack" / "images" / "derive.sh"), image, newer, "--add", str(revision), f"{versions}/"],
                   check=True, capture_output=True)
    return newer


def ready_instance(inst, **spec):
    inst.adminapis.create(inst.name, inst.spec(**spec))
    inst.adminapis.wait_phase(inst.name, "Ready", timeout=BOOT)
    assert all_ready(inst.pods(inst.stack.cluster.service_image))


class Poller:
    """A client polling /health/ready through the Service's ClusterIP (kube-proxy, as any client)."""

    def __init__(self, url: str):
        self.url, self.ok, self.failures = url, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=5) as response:
                    self.ok += response.status == 200
            except Exception as exc:  # every failed request counts
                self.failures.append(repr(exc))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


def test_good_rollout_backs_up_in_a_real_container_then_serves_the_new_template(instance, s3_server, postgres_server):
    inst = instance
    ready_instance(inst)
    old, new = inst.stack.cluster.service_image, retag(inst, "good")
    inst.adminapis.patch_spec(inst.name, {"image": new})
    status = inst.adminapis.wait_status(inst.name, lambda s: s.get("phase") == "Ready" and s.get("lastGoodImage") == new,
                                        timeout=BOOT)

    [job] = backup_jobs(inst)
    assert job.status.succeeded == 1 and job.spec.template.spec.containers[0].image == old
    [pod] = inst.adminapis.core.list_namespaced_pod(inst.namespace, label_selector=f"job-name={job.metadata.name}").items
    [state] = pod.status.container_statuses
    assert state.state.terminated.exit_code == 0  # `admin-api backup` really ran, in our image

    location = status["lastBackup"]["location"]
    bucket, key = location.removeprefix("s3://").split("/", 1)
    assert bucket == inst.bucket and s3_server.client().stat_object(bucket, key).size > 0
    # The dump restores (into a scratch database, with the image's own CLI installed here).
    scratch = f"{inst.database}_restored"
    postgres_server.create_database(scratch)
    try:
        env = {**os.environ, "DATABASE_URL": postgres_server.url(scratch), **s3_server.env(bucket)}
        restored = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "admin-api"), "restore", location],
                                  env=env, capture_output=True, text=True, timeout=300)
        assert restored.returncode == 0, restored.stderr[-2000:]
        assert postgres_server.psql("SELECT count(*) FROM alembic_version", scratch) == "1"
    finally:
        postgres_server.drop_database(scratch)

    assert inst.adminapis.image(inst.name) == new
    assert status["history"][0]["outcome"] == "Succeeded" and status["history"][0]["image"] == new
    wait_for(lambda: all_ready(inst.pods(new)) and not inst.pods(old), timeout=120, what="only new pods, all Ready")


@pytest.mark.parametrize("cause", ["cannot-start", "readiness-503"])
def test_bad_rollout_is_refused_or_rolled_back_while_the_old_pods_serve(instance, cause):
    """cannot-start: a tag whose container exits at once cannot even run its migration Job, so nothing is
    rolled out (MigrationFailed). readiness-503: the same image with an unreachable Redis migrates fine (the
    migration needs only PostgreSQL), its pods never get ready, and it is rolled back by itself."""
    inst = instance
    timeout = 45
    ready_instance(inst, rollout={"timeoutSeconds": timeout})
    good = inst.stack.cluster.service_image
    if cause == "cannot-start":
        change, outcome = {"image": broken(inst)}, "MigrationFailed"
    else:  # nothing listens on port 1 of the node's bridge: /health/ready answers 503
        change, outcome = {"redis": {"url": f"redis://{inst.stack.cluster.bridge_ip}:1"}}, "RolledBack"

    with Poller(inst.service_url()) as poller:
        started = time.monotonic()
        inst.adminapis.patch_spec(inst.name, change)
        status = inst.adminapis.wait_status(
            inst.name, lambda s: (s.get("history") or [{}])[0].get("outcome") == outcome,
            timeout=timeout + SLACK + 120)
        elapsed = time.monotonic() - started
        wait_for(lambda: all_ready(inst.pods()) and len(inst.pods()) == 2, timeout=120, what="old pods only, Ready")
    if outcome == "RolledBack":
        assert elapsed <= timeout + SLACK + 60, f"rolled back after {elapsed:.0f}s (timeoutSeconds {timeout})"
    assert poller.failures == [] and poller.ok > 20
    assert inst.adminapis.image(inst.name) == good and status["currentImage"] == good


def test_pods_run_under_the_restricted_pod_security_standard(instance):
    inst = instance
    ready_instance(inst)
    pod = inst.pods()[0].metadata.name

    def run(*command: str) -> subprocess.CompletedProcess:
        return inst.stack.kubectl("-n", inst.namespace, "exec", pod, "-c", "admin-api", "--", *command, check=False)

    assert run("id", "-u").stdout.strip() == "10001"
    capabilities = run("sh", "-c", "grep -E '^Cap(Eff|Prm)' /proc/1/status").stdout.split()
    assert capabilities == ["CapPrm:", "0000000000000000", "CapEff:", "0000000000000000"]
    assert "Read-only file system" in run("touch", "/opt/venv/x").stderr
    # and the namespace really enforces it: a pod asking for root is refused by the API server
    refused = inst.stack.kubectl("-n", inst.namespace, "run", "root", "--image", inst.stack.cluster.service_image,
                                 "--overrides", '{"spec":{"securityContext":{"runAsUser":0}}}', check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr


@pytest.mark.parametrize("moment", ["BackingUp", "Verifying"])
def test_operator_killed_mid_rollout_ends_it_exactly_once(instance, moment):
    inst = instance
    ready_instance(inst)
    new = retag(inst, f"kill-{moment.lower()}")
    inst.adminapis.patch_spec(inst.name, {"image": new})
    inst.adminapis.wait_phase(inst.name, moment, timeout=BOOT)
    victim = inst.stack.operator_pod()
    inst.stack.kubectl("-n", "adminapi-operator", "delete", "pod", victim, "--grace-period=0", "--force")
    status = inst.adminapis.wait_status(inst.name, lambda s: s.get("phase") == "Ready" and s.get("lastGoodImage") == new,
                                        timeout=BOOT)
    assert inst.stack.operator_pod() != victim
    assert [h["outcome"] for h in status["history"] if h["image"] == new] == ["Succeeded"]
    assert len(backup_jobs(inst)) == 1


def test_restore_after_a_schema_changing_release_gives_back_the_exact_database(instance, postgres_server, tmp_path):
    """rollback.restoreDatabase: a release whose migration changed the schema, then failed its gate, is rolled
    back with the pre-rollout backup restored by a real container: schema, rows and migration head exactly as
    before (pg_restore --clean alone would leave the new table and fail on its foreign key)."""
    inst = instance
    timeout = 45
    ready_instance(inst, rollout={"timeoutSeconds": timeout}, rollback={"restoreDatabase": True})
    good = inst.stack.cluster.service_image
    database = Database(inst.database, postgres_server.url(inst.database), postgres_server)
    database.psql("""INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH") SELECT 'e2e-' || g, 'h' FROM generate_series(1, 3) g;
                     INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL")
                     SELECT 'c-e2e', min("USR_ID"), 'kept' FROM "USR_ACCT" """)
    schema, data = database.schema(), database.snapshot()

    newer = with_next_migration(inst, tmp_path)
    # It migrates (the migration needs only PostgreSQL), then its pods never pass /health/ready (no Redis there).
    inst.adminapis.patch_spec(inst.name, {"image": newer, "redis": {"url": f"redis://{inst.stack.cluster.bridge_ip}:1"}})
    status = inst.adminapis.wait_status(
        inst.name, lambda s: (s.get("history") or [{}])[0].get("outcome") == "RolledBack", timeout=timeout + SLACK + BOOT)

    [migration] = [j for j in jobs_of(inst, "migrate") if j.spec.template.spec.containers[0].image == newer]
    assert migration.status.succeeded == 1
    logs = inst.stack.kubectl("-n", inst.namespace, "logs", f"job/{migration.metadata.name}").stdout
    assert f"loaded revision {NEXT}" in logs, logs[-2000:]  # the newer schema really was committed
    [restore] = jobs_of(inst, "restore")
    assert restore.status.succeeded == 1 and restore.spec.template.spec.containers[0].image == good
    [pod] = inst.adminapis.core.list_namespaced_pod(
        inst.namespace, label_selector=f"job-name={restore.metadata.name}").items
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0  # `admin-api restore`, in our image

    assert database.snapshot() == data  # rows and alembic_version
    restored = set(database.schema().splitlines())
    assert all("CHECK (" in line for line in restored ^ set(schema.splitlines()))  # PostgreSQL's reprinting
    assert not any("CNVS_TAG" in line or "PINNED_YN" in line or "reporting" in line for line in restored)
    wait_for(lambda: all_ready(inst.pods()) and len(inst.pods()) == 2, timeout=BOOT, what="the old pods, Ready")
    assert inst.adminapis.image(inst.name) == good and status["currentImage"] == good
