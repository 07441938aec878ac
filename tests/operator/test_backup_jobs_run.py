"""The backup and restore Jobs the operator builds really work: each Job's container (its args and its env,
with secretKeyRefs resolved from the cluster's Secrets, as the kubelet would) is run here against real
PostgreSQL and a real S3 server. kwok runs no containers, so this is where the operator's side of the
contract meets the service's `admin-api backup` / `admin-api restore`."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from kubernetes import client

from adminapi_operator import builders
from adminapi_operator.spec import AdminApiSpec

pytestmark = [pytest.mark.kube]
ADMIN_API = Path(sys.executable).with_name("admin-api")


def run_container(job: dict, core: client.CoreV1Api, namespace: str) -> subprocess.CompletedProcess:
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
    return subprocess.run([str(ADMIN_API), *container["args"]], env={"PATH": os.environ["PATH"], **env},
                          capture_output=True, text=True, timeout=120)


async def test_operator_built_backup_and_restore_jobs_round_trip(kube_api, namespace, postgres_url, redis_url,
                                                                 s3_server):
    core = client.CoreV1Api(kube_api)
    name = "chat"
    core.create_namespaced_secret(namespace, {"metadata": {"name": f"{name}-secrets"}, "stringData": {
        "database-url": postgres_url, "redis-url": redis_url, "llm-endpoint": "http://llm/v1", "llm-model": "m"}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s3"}, "stringData": {
        "access": s3_server.access_key, "secret": s3_server.secret_key}})
    spec = AdminApiSpec.parse({"image": "admin-api:1.1.0", "replicas": 1, "minio": {
        "endpoint": s3_server.endpoint, "bucket": "operator-backups", "secure": False,
        "accessKeySecretRef": {"name": "s3", "key": "access"}, "secretKeySecretRef": {"name": "s3", "key": "secret"}}},
        name)
    owner = builders.Owner(name=name, namespace=namespace, uid="00000000-0000-0000-0000-000000000001")

    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE TABLE rollout_probe (n int)")
        await conn.execute("INSERT INTO rollout_probe SELECT generate_series(1, 100)")

        key = builders.backup_key(namespace, name, "admin-api:1.0.0", "0123456789-1", "2026-11-25T10:00:00Z")
        backup = run_container(builders.backup_job(owner, spec, "admin-api:1.0.0", "0123456789-1", key),
                               core, namespace)
        assert backup.returncode == 0, backup.stderr
        described = json.loads(backup.stdout.strip().splitlines()[-1])
        # The location the operator records in status is the one the backup really wrote.
        assert described["location"] == f"s3://operator-backups/{key}"

        await conn.execute("DELETE FROM rollout_probe WHERE n > 10")  # what a bad release might do
        restore = run_container(builders.restore_job(owner, spec, "admin-api:1.0.0", "0123456789-1",
                                                     described["location"]), core, namespace)
        assert restore.returncode == 0, restore.stderr
        assert await conn.fetchval("SELECT count(*) FROM rollout_probe") == 100
    finally:
        await conn.execute("DROP TABLE IF EXISTS rollout_probe")
        await conn.close()
