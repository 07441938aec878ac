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


def _new_pod(adminapis, image):
    pods = [p for p in adminapis.core.list_namespaced_pod(adminapis.namespace).items
            if p.spec.containers[0].image == image and p.status.phase == "Running"]
    return pods[0] if pods else None


def _missing_secret(adminapis, pod, secret):
    """What a kubelet reports for a container whose Secret does not exist."""
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": f'secret "{secret}" not found'}}
    adminapis.core.patch_namespaced_pod_status(pod.metadata.name, adminapis.namespace, {"status": {
        "containerStatuses": [{"name": "admin-api", "image": pod.spec.containers[0].image, "imageID": "",
                               "ready": False, "restartCount": 0, "started": False, "state": waiting}]}})


def test_a_missing_secret_fails_the_gate_before_the_timeout_and_is_named(local_cluster, operator, adminapis):
    """The gate fails once a pod has not been configurable for a short grace, not after rollout.timeoutSeconds."""
    adminapis.create(NAME, {**BASE, "image": A, "backup": {"enabled": False}})
    adminapis.wait_phase(NAME, "Ready")
    adminapis.patch_spec(NAME, {"image": B, "podLabels": NOT_READY,
                                "llm": {"apiKeySecretRef": {"name": "llm-key", "key": "token"}},
                                "rollout": {"healthChecks": False, "timeoutSeconds": 600}})
    pod = wait_until(lambda: _new_pod(adminapis, B), timeout=60, what="a pod of the new version")
    _missing_secret(adminapis, pod, "llm-key")
    status = adminapis.wait_phase(NAME, "RolledBack", timeout=120)  # well before the 600 s timeout
    said = f'pod {pod.metadata.name}, container admin-api: CreateContainerConfigError: secret "llm-key" not found'
    assert said in status["message"] and "cannot be configured" in status["history"][0]["message"]
    assert any(said in e.message for e in adminapis.events(NAME) if e.reason == "RolloutFailed")


def test_a_first_install_says_its_pods_cannot_be_configured(local_cluster, operator, adminapis):
    """No rollout gates a first install: the status says it (reason ConfigError) at the next look, not at the
    Deployment's progress deadline, with one Event."""
    adminapis.create(NAME, {**QUICK, "image": A, "podLabels": NOT_READY,
                            "llm": {"apiKeySecretRef": {"name": "llm-key", "key": "token"}},
                            "rollout": {"healthChecks": False, "timeoutSeconds": 600}})
    pod = wait_until(lambda: _new_pod(adminapis, A), timeout=60, what="a pod")
    _missing_secret(adminapis, pod, "llm-key")
    status = adminapis.wait_status(NAME, lambda s: any(
        c["type"] == "Degraded" and c["reason"] == "ConfigError" for c in s.get("conditions") or ()), timeout=120)
    assert status["phase"] == "Progressing" and 'secret "llm-key" not found' in status["message"]
    assert adminapis.event_reasons(NAME).count("ConfigError") == 1
