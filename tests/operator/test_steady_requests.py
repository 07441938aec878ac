"""A steady instance makes no write request and no failing request to the real API server (issue 9 item 5,
issue 11 item 6), and no request at all while nothing changes (issue 13): the operator's own handlers run
in-process under Kopf (kopf.testing.KopfRunner) and every request of the Kubernetes client is counted where it
is sent, through several resync periods and through the reconcile a watch event brings."""
from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager

import pytest
from kopf.testing import KopfRunner
from kubernetes.client import rest
from kubernetes.config import kube_config
from kubernetes.client.exceptions import ApiException

from adminapi_operator import handlers, reconcile

from .conftest import settle
from .test_rollouts import A, B, BASE, NAME

pytestmark = [pytest.mark.kube]


class Requests:
    """Wraps the client's one request method: (method, path, status) of every request the operator sends
    (any thread but the test's own: its reads of the AdminApi are not the operator's reconciles)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.sent: list[tuple[str, str, int]] = []
        original = rest.RESTClientObject.request
        test_thread = threading.get_ident()

        def request(client, method, url, *args, **kwargs):
            if threading.get_ident() == test_thread:
                return original(client, method, url, *args, **kwargs)
            try:
                response = original(client, method, url, *args, **kwargs)
            except ApiException as e:
                self.sent.append((method, url.split("?")[0], e.status))
                raise
            self.sent.append((method, url.split("?")[0], response.status))
            return response
        monkeypatch.setattr(rest.RESTClientObject, "request", request)


class Reconciles:
    """The reconciles the operator runs (a watch event's, a poll's): proof that one ran, whatever it sent."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.started: list[str] = []
        original = reconcile.Reconciler.reconcile

        def counted(reconciler, body):
            self.started.append(body["metadata"]["name"])
            return original(reconciler, body)
        monkeypatch.setattr(reconcile.Reconciler, "reconcile", counted)

    def __len__(self) -> int:
        return len(self.started)


def _resource(path: str) -> str:
    parts = path.split("/")
    return parts[parts.index("namespaces") + 2] if "namespaces" in parts else path


@contextmanager
def in_process_operator(monkeypatch: pytest.MonkeyPatch, kubeconfig, namespace: str):
    """The operator's handlers under Kopf in this process, watching `namespace`."""
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # for Kopf's login
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))  # read at import otherwise
    with KopfRunner(["run", "--standalone", "-n", namespace, "-m", "adminapi_operator.handlers"]) as runner:
        yield runner


def test_a_steady_instance_sends_no_write_and_no_failing_request(local_cluster, crd, kubeconfig, namespace,
                                                                  adminapis, monkeypatch, capsys):
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3.0)  # several resyncs within the window
    requests, reconciles = Requests(monkeypatch), Reconciles(monkeypatch)
    with in_process_operator(monkeypatch, kubeconfig, namespace) as runner:
        adminapis.create(NAME, {**BASE, "image": A, "resources": {"requests": {"cpu": "1000m", "memory": "0.5Gi"}}})
        adminapis.wait_phase(NAME, "Ready")
        adminapis.patch_spec(NAME, {"image": B})  # a rollout first: its Jobs are part of the steady state
        adminapis.wait_status(NAME, lambda s: s.get("lastGoodImage") == B and s["phase"] == "Ready", timeout=120)
        settle(4)

        def versions() -> dict[str, str]:
            objects = [adminapis.get(NAME), adminapis.deployment(NAME).to_dict(),
                       adminapis.core.read_namespaced_service(NAME, namespace).to_dict()]
            objects += [j.to_dict() for j in adminapis.batch.list_namespaced_job(namespace).items]
            return {o["metadata"]["name"] + "/" + str(o.get("kind")): o["metadata"].get("resourceVersion")
                    or o["metadata"]["resource_version"] for o in objects}

        start, quiet = len(requests.sent), 10.0
        time.sleep(quiet)  # three resync periods of an instance that is not at rest
        at_rest = requests.sent[start:]

        # Something of it changes (a harmless annotation on its Service, by the test): the watch event brings a
        # reconcile, which finds everything as desired.
        start, reconciled = len(requests.sent), len(reconciles)
        adminapis.core.patch_namespaced_service(NAME, namespace, {"metadata": {"annotations": {"touched": "1"}}})
        before = versions()
        window = 8.0
        time.sleep(window)
        looked = requests.sent[start:]
        reconciled = len(reconciles) - reconciled
        after = versions()
    assert runner.exception is None
    assert at_rest == []  # not even a read while nothing changes
    writes = [r for r in looked if r[0] != "GET"]
    failures = [r for r in looked if r[2] >= 400]
    assert writes == [] and failures == []
    assert after == before  # nobody (Kopf included) wrote to the AdminApi or what it owns
    reads = Counter(_resource(path) for _, path, _ in looked)
    with capsys.disabled():
        print(f"\nsteady instance: 0 requests in {quiet:.0f} s at rest; the {reconciled} reconcile(s) of a watch "
              f"event: {len(looked)} requests (what the watches showed is read from memory), 0 writes, 0 failures; "
              f"by resource: {dict(reads)}")
    assert reconciled >= 1  # the event's reconcile really ran


def test_a_long_backup_is_polled_without_writes(local_cluster, crd, kubeconfig, namespace, adminapis, monkeypatch):
    """Issue 9: each poll during a long backup made Kopf write its annotations on the AdminApi (a handler
    retried by raising). A ResourceQuota full of the API's own pods keeps the backup Job's pod from being
    created, so the backup runs for as long as the test likes."""
    from kubernetes import client
    monkeypatch.setattr(reconcile, "WATCHED_POLL_SECONDS", 2.0)  # polled within the window (30 s by default)
    requests, reconciles = Requests(monkeypatch), Reconciles(monkeypatch)
    with in_process_operator(monkeypatch, kubeconfig, namespace) as runner:
        adminapis.create(NAME, {**BASE, "image": A})
        adminapis.wait_phase(NAME, "Ready")
        client.CoreV1Api(adminapis.apps.api_client).create_namespaced_resource_quota(
            namespace, {"metadata": {"name": "no-more-pods"}, "spec": {"hard": {"pods": "2"}}})
        adminapis.patch_spec(NAME, {"image": B})
        adminapis.wait_phase(NAME, "BackingUp")
        settle(3)
        before = adminapis.get(NAME)["metadata"]["resourceVersion"]
        start, reconciled = len(requests.sent), len(reconciles)
        time.sleep(10)
        polls, reconciled = requests.sent[start:], len(reconciles) - reconciled
        after = adminapis.get(NAME)
    assert runner.exception is None
    assert after["status"]["phase"] == "BackingUp"
    assert after["metadata"]["resourceVersion"] == before  # neither Kopf nor the operator wrote it
    assert [r for r in polls if r[0] != "GET"] == [] and [r for r in polls if r[2] >= 400] == []
    assert reconciled >= 3  # it did look at the Job every 2 s (as its watch showed it: no request needed)


def test_zero_values_the_server_leaves_out_are_no_drift(local_cluster, crd, kubeconfig, namespace, adminapis,
                                                         monkeypatch):
    """Issue 9: the API server does not store the zero value of an `omitempty` field (a probe's
    initialDelaySeconds: 0, an env var's value: ""), so every resync saw drift: an apply and a DriftRepaired
    Event each time."""
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3.0)
    requests, reconciles = Requests(monkeypatch), Reconciles(monkeypatch)
    with in_process_operator(monkeypatch, kubeconfig, namespace) as runner:
        adminapis.create(NAME, {**BASE, "image": A, "readinessProbe": {"initialDelaySeconds": 0},
                                "env": [{"name": "EMPTY", "value": ""}]})
        adminapis.wait_phase(NAME, "Ready")
        container = adminapis.deployment(NAME).spec.template.spec.containers[0]
        # What makes the case: the server stored neither zero value.
        assert container.readiness_probe.initial_delay_seconds is None
        assert [e.value for e in container.env if e.name == "EMPTY"] == [None]
        settle(4)
        start, reconciled = len(requests.sent), len(reconciles)
        # A watch event brings a reconcile (the resync does not come to an instance at rest).
        adminapis.core.patch_namespaced_service(NAME, namespace, {"metadata": {"annotations": {"touched": "1"}}})
        time.sleep(10)
        steady, reconciled = requests.sent[start:], len(reconciles) - reconciled
    assert runner.exception is None
    assert [r for r in steady if r[0] != "GET"] == []
    assert "DriftRepaired" not in adminapis.event_reasons(NAME)
    assert reconciled >= 1  # the reconcile did look (at the Deployment as its watch showed it)
