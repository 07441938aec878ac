"""The local control plane (hack/cluster) behaves like a real cluster where the operator needs it.

Every wait polls the API against a deadline; a timeout reports what was last seen, and a state
that can no longer turn out right fails at once.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.support.kube import REPO_ROOT, exists, wait_for

pytestmark = pytest.mark.kube

IMAGE = "registry.k8s.io/pause:3.10"  # never pulled: kwok plays the kubelet
NOT_READY = {"sim.aistreams.io/ready": "false"}
FAIL = {"sim.aistreams.io/fail": "true"}


def deployment(name: str, replicas: int, pod_labels: dict[str, str] | None = None, **spec: object) -> dict:
    labels = {"app": name, **(pod_labels or {})}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]},
            },
            **spec,
        },
    }


def job(name: str, pod_labels: dict[str, str] | None = None) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": pod_labels or {}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "task", "image": IMAGE}]},
            },
        },
    }


def condition(obj: object, kind: str) -> client.V1DeploymentCondition | client.V1JobCondition | None:
    return next((c for c in (obj.status.conditions or []) if c.type == kind), None)


def pods(kube_api: client.ApiClient, namespace: str, selector: str) -> list[client.V1Pod]:
    return client.CoreV1Api(kube_api).list_namespaced_pod(namespace, label_selector=selector).items


def pod_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def test_deployment_reaches_three_ready_replicas(kube_api, namespace, local_cluster):
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment("web", 3))

    def rolled_out():
        d = apps.read_namespaced_deployment("web", namespace)
        assert d.status.ready_replicas == 3, f"readyReplicas={d.status.ready_replicas}"
        assert d.status.available_replicas == 3, f"availableReplicas={d.status.available_replicas}"
        available = condition(d, "Available")
        assert available is not None and available.status == "True", f"Available={available}"
        return d

    wait_for(rolled_out, timeout=90, what="Deployment web to have 3 ready replicas")
    running = pods(kube_api, namespace, "app=web")
    assert len(running) == 3
    assert all(p.status.phase == "Running" and pod_ready(p) and p.spec.node_name for p in running)


def test_not_ready_deployment_exceeds_its_progress_deadline(kube_api, namespace, local_cluster):
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(
        namespace, deployment("bad-release", 2, NOT_READY, progressDeadlineSeconds=10)
    )

    def deadline_exceeded():
        d = apps.read_namespaced_deployment("bad-release", namespace)
        if d.status.ready_replicas:
            pytest.fail(f"{d.status.ready_replicas} pod(s) became Ready despite the not-ready label")
        progressing = condition(d, "Progressing")
        assert progressing is not None and progressing.reason == "ProgressDeadlineExceeded", (
            f"Progressing={progressing and (progressing.status, progressing.reason)}"
        )
        return d

    d = wait_for(deadline_exceeded, timeout=90, what="ProgressDeadlineExceeded on bad-release")
    assert condition(d, "Progressing").status == "False"
    assert not d.status.ready_replicas and not d.status.available_replicas
    assert condition(d, "Available").status == "False"
    # Scheduled and Running, but never Ready: the label's kwok stage, not a stuck scheduler.
    stuck = pods(kube_api, namespace, "app=bad-release")
    assert len(stuck) == 2
    assert all(p.status.phase == "Running" and not pod_ready(p) for p in stuck), [
        (p.metadata.name, p.status.phase, pod_ready(p)) for p in stuck
    ]


def test_job_completes(kube_api, namespace, local_cluster):
    batch = client.BatchV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("backup"))

    def complete():
        j = batch.read_namespaced_job("backup", namespace)
        failed = condition(j, "Failed")
        if failed is not None and failed.status == "True":
            pytest.fail(f"Job failed: {failed.reason}: {failed.message}")
        done = condition(j, "Complete")
        assert done is not None and done.status == "True", f"Complete={done}"
        return j

    j = wait_for(complete, timeout=90, what="Job backup to complete")
    assert j.status.succeeded == 1 and not j.status.failed


def test_job_with_fail_label_fails(kube_api, namespace, local_cluster):
    batch = client.BatchV1Api(kube_api)
    batch.create_namespaced_job(namespace, job("broken-backup", FAIL))

    def failed():
        j = batch.read_namespaced_job("broken-backup", namespace)
        done = condition(j, "Complete")
        if done is not None and done.status == "True":
            pytest.fail("the Job completed although its pod carries the fail label")
        cond = condition(j, "Failed")
        assert cond is not None and cond.status == "True", f"Failed={cond}"
        return j

    j = wait_for(failed, timeout=90, what="Job broken-backup to fail")
    assert condition(j, "Failed").reason == "BackoffLimitExceeded"
    assert j.status.failed == 1 and not j.status.succeeded
    assert [p.status.phase for p in pods(kube_api, namespace, "job-name=broken-backup")] == ["Failed"]


def test_deleting_owner_garbage_collects_dependents(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dependent", "ownerReferences": [ref]}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "dependent", "ownerReferences": [ref]}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "bystander"}})

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    wait_for(
        lambda: not exists(lambda: core.read_namespaced_config_map("dependent", namespace))
        and not exists(lambda: core.read_namespaced_secret("dependent", namespace)),
        timeout=60,
        what="the garbage collector to delete owner's dependents",
    )
    assert exists(lambda: core.read_namespaced_config_map("bystander", namespace))


@pytest.fixture
def widget_crd(kube_api):
    """A namespaced CRD with a structural schema, in a group of its own (CRDs are cluster-wide)."""
    group = f"t{uuid.uuid4().hex[:8]}.test.aistreams.io"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {
                                        "image": {"type": "string", "minLength": 1},
                                        "replicas": {"type": "integer", "minimum": 1},
                                    },
                                },
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(kube_api)
    ext.create_custom_resource_definition(crd)
    try:

        def established():
            got = ext.read_custom_resource_definition(crd["metadata"]["name"])
            return any(c.type == "Established" and c.status == "True" for c in (got.status.conditions or []))

        wait_for(established, timeout=30, what="the CRD to be Established")
        yield group
    finally:
        ext.delete_custom_resource_definition(crd["metadata"]["name"])


def test_crd_schema_rejects_invalid_object(kube_api, namespace, widget_crd):
    custom = client.CustomObjectsApi(kube_api)

    def create(name: str, spec: dict) -> dict:
        body = {"apiVersion": f"{widget_crd}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
        # Discovery of a new CRD can lag Established by a moment: 404 means "not served yet".
        return wait_for(
            lambda: _created_or_rejected(lambda: custom.create_namespaced_custom_object(
                widget_crd, "v1", namespace, "widgets", body)),
            timeout=30,
            what="the Widget endpoint",
        )

    rejected = create("bad", {"replicas": "three"})
    assert isinstance(rejected, ApiException) and rejected.status == 422, rejected
    assert "spec.replicas" in rejected.body and "spec.image" in rejected.body, rejected.body

    accepted = create("good", {"image": "example/app:1", "replicas": 2})
    assert isinstance(accepted, dict) and accepted["spec"]["replicas"] == 2


def _created_or_rejected(call):
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404:
            return None
        return exc


def test_version_is_the_pinned_release(kube_api, local_cluster):
    expected = _expected_version()
    assert client.VersionApi(kube_api).get_code().git_version == expected


def _expected_version() -> str:
    """The kube-apiserver release the local cluster runs: the pin, or KUBEBUILDER_ASSETS' binary."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets and (Path(assets) / "kube-apiserver").exists():
        out = subprocess.run([str(Path(assets) / "kube-apiserver"), "--version"], capture_output=True, text=True)
        return out.stdout.split()[-1]
    gomod = (REPO_ROOT / "hack" / "cluster" / "k8s" / "go.mod").read_text()
    return re.search(r"^(?:require)?\s*k8s\.io/kubernetes (v\S+)", gomod, re.M).group(1)
