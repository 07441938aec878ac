"""The operator against the real control plane (hack/cluster): one AdminApi becomes the guide's objects."""
from __future__ import annotations

import base64
import json
import urllib.request

import pytest
from kubernetes import client

from tests.support.kube import exists

from .conftest import GUIDE_SPEC, kubectl, settle, wait_until

pytestmark = [pytest.mark.kube]

NAME = "admin-api"


def test_sample_becomes_the_guides_deployment_and_gets_ready(local_cluster, operator, adminapis, kubeconfig, namespace):
    adminapis.create(NAME, GUIDE_SPEC)
    status = adminapis.wait_phase(NAME, "Ready")
    assert status["readyReplicas"] == 3 and status["ready"] == "3/3"
    assert status["currentImage"] == GUIDE_SPEC["image"]
    assert status["observedGeneration"] == adminapis.get(NAME)["metadata"]["generation"]
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Degraded"]["status"] == "False"
    assert all(c["lastTransitionTime"] and c["reason"] for c in conditions.values())

    dep = adminapis.deployment(NAME)
    assert dep.spec.replicas == 3
    pod = dep.spec.template.spec
    api = pod.containers[0]
    assert api.image == GUIDE_SPEC["image"]
    assert api.ports[0].container_port == 8001
    assert (api.liveness_probe.http_get.path, api.liveness_probe.initial_delay_seconds) == ("/health/live", 30)
    assert (api.readiness_probe.http_get.path, api.readiness_probe.failure_threshold) == ("/health/ready", 2)
    assert api.resources.requests == {"memory": "512Mi", "cpu": "500m"}
    assert api.resources.limits == {"memory": "2Gi", "cpu": "2"}
    env = {e.name: e for e in api.env}
    assert env["DATABASE_URL"].value_from.secret_key_ref.to_dict() == {
        "name": "admin-api-secrets", "key": "database-url", "optional": None}
    assert api.security_context.run_as_non_root and api.security_context.read_only_root_filesystem
    assert api.security_context.capabilities.drop == ["ALL"]
    assert pod.security_context.seccomp_profile.type == "RuntimeDefault"
    owner = dep.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.controller) == ("AdminApi", NAME, True)

    svc = adminapis.core.read_namespaced_service(NAME, namespace)
    assert svc.spec.type == "ClusterIP" and svc.spec.ports[0].port == 8001
    assert client.PolicyV1Api(adminapis.apps.api_client).read_namespaced_pod_disruption_budget(
        NAME, namespace).spec.max_unavailable == 1

    # `kubectl get adminapi` tells where the instance stands.
    table = kubectl(kubeconfig, "-n", namespace, "get", "adminapi").stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "IMAGE", "PHASE", "READY"]
    assert row.split()[:4] == [NAME, GUIDE_SPEC["image"], "Ready", "3/3"]
    assert "Ready" in adminapis.event_reasons(NAME)


def test_generated_secret_never_leaks(local_cluster, operator, adminapis, namespace):
    adminapis.create(NAME, GUIDE_SPEC)
    adminapis.wait_phase(NAME, "Ready")
    secret = adminapis.core.read_namespaced_secret(f"{NAME}-bootstrap-admin", namespace)
    password = base64.b64decode(secret.data["password"]).decode()
    assert len(password) >= 24
    body = json.dumps(adminapis.get(NAME))  # spec, status and Kopf's annotations
    dep = json.dumps(client.ApiClient().sanitize_for_serialization(adminapis.deployment(NAME)))
    events = " ".join(e.message or "" for e in adminapis.core.list_namespaced_event(namespace).items)
    for text in (body, dep, events, operator.log):
        assert password not in text


def test_drift_is_put_back(local_cluster, operator, adminapis, namespace):
    adminapis.create(NAME, GUIDE_SPEC)
    adminapis.wait_phase(NAME, "Ready")
    # A hand edit of the Deployment: replicas and image.
    adminapis.apps.patch_namespaced_deployment(NAME, namespace, {"spec": {"replicas": 1, "template": {"spec": {
        "containers": [{"name": "admin-api", "image": "hand-edited:6.6.6"}]}}}})
    wait_until(lambda: adminapis.deployment(NAME).spec.replicas == 3 and adminapis.image(NAME) == GUIDE_SPEC["image"],
               timeout=20, what="the Deployment put back")
    # A deleted Service and PodDisruptionBudget come back.
    adminapis.core.delete_namespaced_service(NAME, namespace)
    client.PolicyV1Api(adminapis.apps.api_client).delete_namespaced_pod_disruption_budget(NAME, namespace)
    policy = client.PolicyV1Api(adminapis.apps.api_client)
    wait_until(lambda: exists(lambda: adminapis.core.read_namespaced_service(NAME, namespace)),
               timeout=20, what="the Service re-created")
    wait_until(lambda: exists(lambda: policy.read_namespaced_pod_disruption_budget(NAME, namespace)),
               timeout=20, what="the PodDisruptionBudget re-created")
    assert adminapis.core.read_namespaced_service(NAME, namespace).spec.ports[0].port == 8001
    # A deleted Deployment comes back, and the instance is Ready again.
    adminapis.apps.delete_namespaced_deployment(NAME, namespace)
    wait_until(lambda: adminapis.deployment(NAME) is not None, timeout=20, what="the Deployment re-created")
    adminapis.wait_phase(NAME, "Ready")
    assert "DriftRepaired" in adminapis.event_reasons(NAME)


def test_deleting_the_adminapi_removes_what_it_owned(local_cluster, operator, adminapis, namespace):
    adminapis.create(NAME, GUIDE_SPEC)
    adminapis.wait_phase(NAME, "Ready")
    assert not adminapis.get(NAME)["metadata"].get("finalizers")  # deletion never waits for the operator
    adminapis.delete(NAME)

    def gone() -> bool:
        services = adminapis.core.list_namespaced_service(namespace).items
        secrets = [s for s in adminapis.core.list_namespaced_secret(namespace).items if s.metadata.name.startswith(NAME)]
        return adminapis.deployment(NAME) is None and not services and not secrets
    wait_until(gone, timeout=60, what="the owned objects garbage-collected")


def test_spec_changes_converge(local_cluster, operator, adminapis, namespace):
    adminapis.create(NAME, {"image": "admin-api:1", "replicas": 1, "backup": {"enabled": False},
                            "rollout": {"healthChecks": False}})  # simulated pods: no service to ask
    adminapis.wait_phase(NAME, "Ready")
    # One replica has a PDB too (so scaling never creates or deletes one), and it never blocks a drain.
    policy = client.PolicyV1Api(adminapis.apps.api_client)
    wait_until(lambda: policy.read_namespaced_pod_disruption_budget(NAME, namespace).status.disruptions_allowed == 1,
               timeout=30, what="the single replica's PDB allowing its disruption")
    adminapis.patch_spec(NAME, {"replicas": 2, "qdrant": {"host": "qdrant"}, "service": {"port": 9000}})
    wait_until(lambda: adminapis.core.read_namespaced_service(NAME, namespace).spec.ports[0].port == 9000,
               timeout=30, what="the Service port changed")
    status = adminapis.wait_phase(NAME, "Ready")
    assert status["ready"] == "2/2"
    assert client.PolicyV1Api(adminapis.apps.api_client).read_namespaced_pod_disruption_budget(NAME, namespace)


@pytest.mark.parametrize("spec, complaint", [
    ({"replicas": 3}, "spec.image: Required value"),
    ({"image": "a:1", "replicas": -1}, "spec.replicas"),
    ({"image": "a:1", "redis": {"url": "redis://user:secret@redis:6379"}}, "must come from a Secret"),
    ({"image": "a:1", "podLabels": {"app.kubernetes.io/name": "x"}}, "the operator owns them"),
    ({"image": "a:1", "database": {"urlSecretRef": {"name": "s"}}}, "spec.database.urlSecretRef.key: Required value"),
])
def test_the_api_server_rejects_invalid_adminapis(crd, kubeconfig, namespace, spec, complaint):
    manifest = json.dumps({"apiVersion": "aistreams.io/v1alpha1", "kind": "AdminApi",
                           "metadata": {"name": "bad", "namespace": namespace}, "spec": spec})
    result = kubectl(kubeconfig, "apply", "-f", "-", input=manifest, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_embedded_qdrant_with_replicas_is_refused_with_a_condition(local_cluster, operator, adminapis):
    adminapis.create(NAME, {"image": "admin-api:1", "replicas": 2})
    status = adminapis.wait_phase(NAME, "Invalid")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "qdrant.host" in ready["message"]
    assert adminapis.deployment(NAME) is None
    assert "InvalidSpec" in adminapis.event_reasons(NAME)
    # Fixing the spec deploys it.
    adminapis.patch_spec(NAME, {"replicas": 1})
    adminapis.wait_phase(NAME, "Ready")


def test_a_restarted_operator_changes_nothing_that_was_right(local_cluster, operator, adminapis, namespace):
    adminapis.create(NAME, GUIDE_SPEC)
    adminapis.wait_phase(NAME, "Ready")
    settle(2)
    before = {
        "deployment": adminapis.deployment(NAME).metadata.resource_version,
        "service": adminapis.core.read_namespaced_service(NAME, namespace).metadata.resource_version,
        "secret": adminapis.core.read_namespaced_secret(f"{NAME}-bootstrap-admin", namespace).metadata.resource_version,
    }
    operator.stop()
    operator.start()
    wait_until(lambda: "resuming" in operator.log.lower() or "resume" in operator.log.lower() or
               _healthy(operator.health_port), timeout=30, what="the operator back")
    settle(5)
    after = {
        "deployment": adminapis.deployment(NAME).metadata.resource_version,
        "service": adminapis.core.read_namespaced_service(NAME, namespace).metadata.resource_version,
        "secret": adminapis.core.read_namespaced_secret(f"{NAME}-bootstrap-admin", namespace).metadata.resource_version,
    }
    assert after == before
    assert adminapis.status(NAME)["phase"] == "Ready"


def test_liveness_endpoint_answers(operator):
    wait_until(lambda: _healthy(operator.health_port), timeout=30, what="the operator's liveness endpoint")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_kubectl_explain_teaches_the_fields(crd, kubeconfig):
    text = kubectl(kubeconfig, "explain", "adminapi.spec").stdout
    assert "image" in text and "-required-" in text
    assert "the guide runs 3" in kubectl(kubeconfig, "explain", "adminapi.spec.replicas").stdout
    assert "Secret" in kubectl(kubeconfig, "explain", "adminapi.spec.database").stdout
    proxies = " ".join(kubectl(kubeconfig, "explain", "adminapi.spec.trustedProxies").stdout.split())
    assert "(FORWARDED_ALLOW_IPS)" in proxies and "'*' and /0 networks are refused" in proxies
    assert "(EMBEDDING_MODEL)" in kubectl(kubeconfig, "explain", "adminapi.spec.embeddings.model").stdout
