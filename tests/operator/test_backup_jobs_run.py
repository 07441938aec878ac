"""The backup and restore Jobs the operator builds really work: each Job's container (its args and its env,
with secretKeyRefs resolved from the cluster's Secrets, as the kubelet would) is run here against real
PostgreSQL and a real S3 server. kwok runs no containers, so this is where the operator's side of the
contract meets the service's `admin-api backup` / `migrate` / `restore`: keys under NAMESPACE/NAME/, and a
restore after the new version's migration gives back the exact pre-rollout database."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from adminapi_operator import builders
from adminapi_operator.spec import AdminApiSpec
from admin_api.migrations import upgrade
from kubernetes import client

from tests.support.databases import private_database
from tests.support.migrations import NEXT_REVISION, migrate, next_version

pytestmark = [pytest.mark.kube]
ADMIN_API = Path(sys.executable).with_name("admin-api")


def container_env(job: dict, core: client.CoreV1Api, namespace: str) -> dict[str, str]:
    """The Job's container environment, secretKeyRefs resolved from the cluster's Secrets."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {}
    for var in container["env"]:
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            secret = core.read_namespaced_secret(ref["name"], namespace)
            env[var["name"]] = base64.b64decode(secret.data[ref["key"]]).decode()
    env["PG_BIN"] = "/usr/lib/postgresql/15/bin"  # set by Dockerfile.service in the image
    return env


def run_container(job: dict, core: client.CoreV1Api, namespace: str) -> subprocess.CompletedProcess:
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = container_env(job, core, namespace)
    return subprocess.run([str(ADMIN_API), *container["args"]], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=120)


def test_operator_built_jobs_back_up_migrate_and_restore_exactly(kube_api, namespace, postgres_server, redis_url,
                                                                  s3_server, tmp_path):
    core = client.CoreV1Api(kube_api)
    name = "chat"
    with private_database(postgres_server) as database:
        core.create_namespaced_secret(namespace, {"metadata": {"name": f"{name}-secrets"}, "stringData": {
            "database-url": database.url, "redis-url": redis_url, "llm-endpoint": "http://llm/v1", "llm-model": "m"}})
        core.create_namespaced_secret(namespace, {"metadata": {"name": "s3"}, "stringData": {
            "access": s3_server.access_key, "secret": s3_server.secret_key}})
        core.create_namespaced_secret(namespace, {"metadata": {"name": builders.bootstrap_secret_name(name)},
                                                  "stringData": {"username": "root-admin",
                                                                 "password": "bootstrap-password-1"}})
        spec = AdminApiSpec.parse({"image": "admin-api:1.1.0", "replicas": 1, "minio": {
            "endpoint": s3_server.endpoint, "bucket": "operator-backups", "secure": False,
            "accessKeySecretRef": {"name": "s3", "key": "access"},
            "secretKeySecretRef": {"name": "s3", "key": "secret"}}}, name)
        owner = builders.Owner(name=name, namespace=namespace, uid="00000000-0000-0000-0000-000000000001")
        upgrade(database.url)  # the last good version's schema
        database.psql("""INSERT INTO "USR_ACCT" ("USR_NM", "PWD_HASH") SELECT 'u' || g, 'h' FROM generate_series(1, 5) g;
                         INSERT INTO "USR_CNVS_SMRY" ("CNVS_IDT_ID", "USR_ID", "CNVS_TTL") VALUES ('c-1', 1, 't')""")
        schema, data = database.schema(), database.snapshot()

        attempt = "0123456789-1"
        key = builders.backup_key(namespace, name, "admin-api:1.0.0", attempt, "2026-11-25T10:00:00Z")
        backup = run_container(builders.backup_job(owner, spec, "admin-api:1.0.0", attempt, key), core, namespace)
        assert backup.returncode == 0, backup.stderr
        described = json.loads(backup.stdout.strip().splitlines()[-1])
        # The location the operator records in status is the one the backup really wrote, under NS/NAME/.
        assert described["location"] == f"s3://operator-backups/{key}"
        assert key.startswith(f"{namespace}/{name}/")
        assert (described["namespace"], described["instance"]) == (namespace, name)

        # The new version's migration Job (its scripts stand in for the new image's: a table with a foreign key
        # to USR_CNVS_SMRY, a column, indexes, ...), then what a bad release might do to the rows.
        migration = builders.migration_job(owner, spec, attempt)
        newer = migrate(next_version(tmp_path, NEXT_REVISION), container_env(migration, core, namespace))
        assert newer.returncode == 0, newer.stderr
        database.psql("""DELETE FROM "USR_ACCT" WHERE "USR_ID" > 2""")

        restore = run_container(builders.restore_job(owner, spec, "admin-api:1.0.0", attempt, described["location"]),
                                core, namespace)
        assert restore.returncode == 0, restore.stderr
        assert database.snapshot() == data  # rows and alembic_version
        restored = set(database.schema().splitlines())
        assert all("CHECK (" in line for line in restored ^ set(schema.splitlines()))  # PostgreSQL's reprinting
        assert not any("CNVS_TAG" in line or "PINNED_YN" in line for line in restored)

        # And the last good version's own migration Job still works on the restored database.
        again = run_container(builders.migration_job(owner, spec, "0123456789-2"), core, namespace)
        assert again.returncode == 0, again.stderr
