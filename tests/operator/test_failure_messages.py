"""When pods of a version do not become ready, the status says why, as the scheduler and the kubelet say it
(issue 11, cases 4 and 5), counting the new template's pods only.

The scheduler here is real (kube-scheduler); kwok plays the kubelets (hack/cluster/stages): pods labelled
sim.aistreams.io/ready=false run but never pass their readiness probe, and a missing Secret is what a kubelet
would write into such a pod's status (kwok leaves a running pod's status alone).
"""
from __future__ import annotations

import pytest

from .conftest import wait_until
from .test_rollouts import A, B, BASE, NOT_READY

pytestmark = [pytest.mark.kube]

NAME = "chat"
QUICK = {"replicas": 1, "backup": {"enabled": False}, "rollout": {"healthChecks": False, "timeoutSeconds": 10}}


def test_pods_that_cannot_be_scheduled_say_so(local_cluster, operator, adminapis):
    huge = {"requests": {"cpu": "100000", "memory": "1Gi"}, "limits": {"cpu": "100000", "memory": "1Gi"}}
    adminapis.create(NAME, {**QUICK, "image": A, "resources": huge})
    status = adminapis.wait_phase(NAME, "Failed", timeout=120)
    assert "0/1 ready on the current template (pod chat-" in status["message"]
    assert "cannot be scheduled: 0/1 nodes are available: 1 Insufficient cpu" in status["message"]


def test_a_version_that_never_gets_ready_is_rolled_back_saying_its_probe_fails(local_cluster, operator, adminapis):
    adminapis.create(NAME, {**BASE, "image": A, "backup": {"enabled": False}})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY})
    status = adminapis.wait_phase(NAME, "RolledBack", timeout=120)
    assert "0/2 ready on the current template" in status["message"]  # the old pods, ready, are not counted
    assert "runs but is not ready: its readiness probe (/health/ready) fails" in status["message"]


def test_a_missing_secret_is_named_in_the_rollback(local_cluster, operator, adminapis, namespace):
    adminapis.create(NAME, {**BASE, "image": A, "backup": {"enabled": False}})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY,
                                "llm": {"apiKeySecretRef": {"name": "llm-key", "key": "token"}},
                                "rollout": {"healthChecks": False, "timeoutSeconds": 20}})

    def new_pod():
        pods = [p for p in adminapis.core.list_namespaced_pod(namespace).items
                if p.spec.containers[0].image == B and p.status.phase == "Running"]
        return pods[0] if pods else None
    pod = wait_until(new_pod, timeout=60, what="a pod of the new version")
    # What a kubelet reports for a container whose Secret does not exist.
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "llm-key" not found'}}
    adminapis.core.patch_namespaced_pod_status(pod.metadata.name, namespace, {"status": {"containerStatuses": [
        {"name": "admin-api", "image": B, "imageID": "", "ready": False, "restartCount": 0, "started": False,
         "state": waiting}]}})
    status = adminapis.wait_phase(NAME, "RolledBack", timeout=120)
    assert f'pod {pod.metadata.name}, container admin-api: CreateContainerConfigError: secret "llm-key" not found' \
        in status["message"]
