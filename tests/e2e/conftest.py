"""End to end on the real node: the operator in the cluster from its image (manifests/ as a user applies
them), AdminApis whose pods run our service image, PostgreSQL, Redis and S3 on this machine reached by the
pods on the node's bridge address (hack/cluster/relay.py)."""
from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

from hack.cluster.relay import relay
from tests.operator.conftest import AdminApis
from tests.support.kube import REPO_ROOT, RealCluster, kubectl_binary, wait_for

OPERATOR_NS = "adminapi-operator"


def _port(url: str) -> int:
    return int(url.rsplit("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)[1])


@dataclass(frozen=True)
class Stack:
    cluster: RealCluster
    api: client.ApiClient
    postgres_port: int
    redis_port: int
    s3: Any  # tests.support.s3.S3Server (loopback endpoint)

    @property
    def s3_endpoint_for_pods(self) -> str:
        return f"{self.cluster.bridge_ip}:{self.s3.endpoint.rsplit(':', 1)[1]}"

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([kubectl_binary(), "--kubeconfig", str(self.cluster.kubeconfig), *args],
                              capture_output=True, text=True, check=check)

    def operator_pod(self) -> str:
        pods = client.CoreV1Api(self.api).list_namespaced_pod(OPERATOR_NS).items
        running = [p.metadata.name for p in pods if p.metadata.deletion_timestamp is None and p.status.phase == "Running"]
        assert running, "no running operator pod"
        return running[0]


def deploy_operator(cluster: RealCluster) -> None:
    """manifests/ through an overlay that only sets the operator's image, as a user would apply it."""
    overlay = REPO_ROOT / ".cluster" / "e2e-overlay"
    overlay.mkdir(parents=True, exist_ok=True)
    name, tag = cluster.operator_image.rsplit(":", 1)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: [../../manifests]\n"
        f"images:\n  - {{name: adminapi-operator, newName: {name}, newTag: {tag}}}\n")
    kubectl = [kubectl_binary(), "--kubeconfig", str(cluster.kubeconfig)]
    subprocess.run([*kubectl, "apply", "--server-side", "--force-conflicts", "-k", str(overlay)],
                   check=True, capture_output=True)
    subprocess.run([*kubectl, "wait", "--for=condition=Established", "crd/adminapis.aistreams.io", "--timeout=60s"],
                   check=True, capture_output=True)
    subprocess.run([*kubectl, "-n", OPERATOR_NS, "rollout", "status", "deployment/adminapi-operator",
                    "--timeout=180s"], check=True, capture_output=True)


@pytest.fixture(scope="session")
def stack(real_cluster, real_api, postgres_server, redis_server, s3_server) -> Iterator[Stack]:
    s3_port = int(s3_server.endpoint.rsplit(":", 1)[1])
    with relay(real_cluster.bridge_ip, [postgres_server.port, redis_server.port, s3_port]):
        deploy_operator(real_cluster)
        yield Stack(real_cluster, real_api, postgres_server.port, redis_server.port, s3_server)


@dataclass
class Instance:
    """One AdminApi of a test, with its own database and bucket."""
    name: str
    namespace: str
    database: str
    bucket: str
    adminapis: AdminApis
    stack: Stack

    def spec(self, **overrides: Any) -> dict[str, Any]:
        return {
            "image": self.stack.cluster.service_image,
            "replicas": 2,
            "qdrant": {"host": "qdrant"},
            "minio": {"endpoint": self.stack.s3_endpoint_for_pods, "bucket": self.bucket,
                      "accessKeySecretRef": {"name": "s3", "key": "access"},
                      "secretKeySecretRef": {"name": "s3", "key": "secret"}},
            "rollout": {"timeoutSeconds": 60},
            **overrides,
        }

    def pods(self, image: str | None = None) -> list[client.V1Pod]:
        pods = self.adminapis.core.list_namespaced_pod(
            self.namespace, label_selector="app.kubernetes.io/component=api").items
        return [p for p in pods if image is None or p.spec.containers[0].image == image]

    def service_url(self) -> str:
        svc = self.adminapis.core.read_namespaced_service(self.name, self.namespace)
        return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}"


@pytest.fixture
def instance(stack, real_namespace, postgres_server, redis_server) -> Iterator[Instance]:
    core = client.CoreV1Api(stack.api)
    database = f"e2e_{uuid.uuid4().hex[:10]}"
    postgres_server.create_database(database)
    bridge = stack.cluster.bridge_ip
    db_url = postgres_server.url(database).replace("127.0.0.1", bridge)
    redis = redis_server.url(0).replace("127.0.0.1", bridge)
    core.create_namespaced_secret(real_namespace, {"metadata": {"name": "chat-secrets"}, "stringData": {
        "database-url": db_url, "redis-url": redis,
        "llm-endpoint": f"http://{bridge}:9/v1", "llm-model": "unused"}})  # chat is not exercised here
    core.create_namespaced_secret(real_namespace, {"metadata": {"name": "s3"}, "stringData": {
        "access": stack.s3.access_key, "secret": stack.s3.secret_key}})
    try:
        yield Instance("chat", real_namespace, database, f"e2e-{uuid.uuid4().hex[:10]}",
                       AdminApis(stack.api, real_namespace), stack)
    finally:
        with contextlib.suppress(client.ApiException):  # its pods first, then the database they use
            client.CustomObjectsApi(stack.api).delete_namespaced_custom_object(
                "aistreams.io", "v1alpha1", real_namespace, "adminapis", "chat")
        postgres_server.drop_database(database)
