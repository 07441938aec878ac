"""A spec that passes every check but produces objects the API server refuses (issue 11): phase Invalid with
the API server's own message, one Event, and no retry loop: the operator asks again only when the spec (or
the retry annotation) changes. Run in-process under Kopf, every request of the client counted.
"""
from __future__ import annotations

import time

import pytest
from kubernetes.client.exceptions import ApiException

from adminapi_operator import handlers
from adminapi_operator.builders import Owner, deployment, pod_template
from adminapi_operator.kube import Kube
from adminapi_operator.reconcile import RETRY_ANNOTATION, permanent
from adminapi_operator.spec import AdminApiSpec

from .conftest import settle
from .test_steady_requests import Requests, in_process_operator as operator_in_process

pytestmark = [pytest.mark.kube]

NAME = "chat"
MIN = {"image": "admin-api:1.0.0", "replicas": 1, "backup": {"enabled": False}, "rollout": {"healthChecks": False}}
# A field path no Pod has: only the Pod's own validation knows the list.
BAD_FIELD_REF = {"env": [{"name": "WHERE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nowhere"}}}]}


@pytest.fixture
def in_process_operator(local_cluster, crd, kubeconfig, namespace, monkeypatch):
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 2.0)  # a retry loop would show within seconds
    requests = Requests(monkeypatch)
    with operator_in_process(monkeypatch, kubeconfig, namespace) as runner:
        yield requests
    assert runner.exception is None
    assert "Traceback" not in runner.output, runner.output[-3000:]


def test_a_spec_the_api_server_refuses_is_invalid_once_and_not_retried(in_process_operator, adminapis):
    requests = in_process_operator
    adminapis.create(NAME, {**MIN, **BAD_FIELD_REF})
    status = adminapis.wait_phase(NAME, "Invalid")
    assert status["message"].startswith("the Kubernetes API refused an object this spec produces (422)")
    assert 'spec.template.spec.containers[0].env[' in status["message"] and "spec.nowhere" in status["message"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"

    settle(2)
    version, start = adminapis.get(NAME)["metadata"]["resourceVersion"], len(requests.sent)
    time.sleep(10)  # five resyncs
    window = requests.sent[start:]
    assert [r for r in window if r[0] != "GET"] == []  # no write: no apply, no status, no Event
    assert [r for r in window if r[2] >= 400] == []  # and nothing refused again
    assert adminapis.get(NAME)["metadata"]["resourceVersion"] == version
    assert adminapis.event_reasons(NAME).count("InvalidSpec") == 1

    # The retry annotation asks once more (refused again, said again), a fixed spec deploys.
    adminapis.annotate(NAME, {RETRY_ANNOTATION: "1"})
    adminapis.wait_status(NAME, lambda s: s.get("retryToken") == "1" and s["phase"] == "Invalid", timeout=30)
    adminapis.patch_spec(NAME, {"env": [{"name": "WHERE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]})
    adminapis.wait_phase(NAME, "Ready")


def test_server_side_apply_of_duplicate_entries_is_a_permanent_error(local_cluster, kube_api, namespace):
    """The API server's answer to a list with two items of one key is a 500 that asking again cannot fix."""
    owner = Owner(NAME, namespace, "0b7a1d2c-1111-2222-3333-444455556666")
    spec = AdminApiSpec(image="admin-api:1", replicas=1)
    obj = deployment(owner, spec, pod_template(NAME, spec))
    obj["metadata"].pop("ownerReferences")
    env = obj["spec"]["template"]["spec"]["containers"][0]["env"]
    env += [{"name": "TWICE", "value": "1"}, {"name": "TWICE", "value": "2"}]
    with pytest.raises(ApiException) as refused:
        Kube(kube_api).apply(obj)
    assert refused.value.status == 500 and "duplicate entries" in str(refused.value.body)
    assert permanent(refused.value)
