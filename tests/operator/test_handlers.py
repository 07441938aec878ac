"""The handlers and their queue: an AdminApi's watch events queue it only when they ask for something; an
owned-object event that meets an API error is retried, never dropped; every instance is resynced; a deleted
instance leaves the queue; an instance at rest is not reconciled again for nothing. On the in-memory API
(fake_kube.py)."""
from __future__ import annotations

import asyncio
import copy
import logging
import time

import kopf
import pytest

from adminapi_operator import handlers
from adminapi_operator.reconcile import Reconciler
from tests.support.kube import wait_for

from .fake_kube import FakeKube
from .test_reconciler import BASE, NAME


@pytest.fixture
def memo(monkeypatch):
    monkeypatch.setattr(handlers, "RETRY_SECONDS", 0.1)
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 0.3)
    monkeypatch.setattr(handlers, "EVENT_DELAY_SECONDS", 0.05)
    kube = FakeKube()
    kube.create_adminapi(NAME, BASE)
    memo = kopf.Memo(reconciler=Reconciler(kube, check_health=lambda url, paths: None, clock=lambda: kube.now),
                     locks={}, seen={}, reconciled=[])
    reconcile = memo.reconciler.reconcile
    memo.reconciler.reconcile = lambda body: memo.reconciled.append(body) or reconcile(body)
    memo.requeue = handlers.Requeue(lambda key: handlers.reconcile_now(*key, memo, logging.getLogger()))
    memo.requeue.start()
    yield memo
    memo.requeue.stop()


def _reconcile_now(memo) -> None:
    handlers.reconcile_now("ns", NAME, memo, logging.getLogger())


def _owned_object_event(memo, kube: FakeKube) -> None:
    asyncio.run(handlers.owned_object_changed(event={"type": "MODIFIED"}, body=_service_event_body(kube), memo=memo))


def _service_event_body(kube: FakeKube) -> dict:
    return {"kind": "Service", "metadata": {"namespace": "ns", "name": NAME, "ownerReferences": [
        {"apiVersion": "aistreams.io/v1alpha1", "kind": "AdminApi", "name": NAME, "uid": "u"}]}}


def test_an_owned_object_event_that_meets_an_api_error_is_retried(memo, monkeypatch):
    """Issue 9: a 409/429/5xx on an owned-object event was dropped and nothing resynced: a deleted Service
    stayed deleted."""
    kube = memo.reconciler.kube
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)  # no resync: only the retry may bring it back
    _reconcile_now(memo)
    kube.delete("v1", "Service", NAME)
    kube.fail("patch", "Service", status=429)
    _owned_object_event(memo, kube)
    wait_for(lambda: ("patch", "Service", 429) in kube.failures(), timeout=10, what="the event's reconcile failing")
    wait_for(lambda: kube.objects.get(("v1", "Service", "ns", NAME)), timeout=10, what="the Service re-created")


def test_every_instance_is_resynced_and_a_deleted_one_is_forgotten(memo):
    kube = memo.reconciler.kube
    _reconcile_now(memo)
    kube.delete("apps/v1", "Deployment", NAME)  # no event at all: only the resync sees it
    wait_for(lambda: kube.objects.get(("apps/v1", "Deployment", "ns", NAME)), timeout=10,
             what="the Deployment put back by the resync")
    kube.delete("aistreams.io/v1alpha1", "AdminApi", NAME)
    wait_for(lambda: ("ns", NAME) not in memo.locks, timeout=10, what="the deleted instance forgotten")
    settle_requests = len(kube.requests)
    time.sleep(1)  # several resync periods: nothing more is asked about it
    assert len(kube.requests) <= settle_requests + 1


def _adminapi_reads(kube: FakeKube) -> int:
    return sum(1 for verb, kind, _ in kube.requests if (verb, kind) == ("get", "AdminApi"))


def test_a_conflict_is_read_again_at_once(memo, monkeypatch):
    """Issue 11 (the fuzz test's finding): Kopf's own annotations on a new AdminApi made our status write a
    409, and the instance was reconciled again 5 s later for nothing."""
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)
    kube = memo.reconciler.kube
    kube.fail("patch", "AdminApi/status", status=409)
    _reconcile_now(memo)
    assert kube.adminapi(NAME)["status"].get("phase")  # written by the same call, after reading again
    reads = _adminapi_reads(kube)
    time.sleep(0.5)  # several retry periods
    assert _adminapi_reads(kube) == reads


def test_a_retry_does_not_outlive_the_successful_reconcile_after_it(memo, monkeypatch):
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)
    kube = memo.reconciler.kube
    kube.fail("patch", "AdminApi/status", status=409, times=handlers.CONFLICT_RETRIES + 1)
    _reconcile_now(memo)
    assert not (kube.adminapi(NAME).get("status") or {}).get("phase")  # it asked to come back in RETRY_SECONDS
    _owned_object_event(memo, kube)
    wait_for(lambda: (kube.adminapi(NAME).get("status") or {}).get("phase"), timeout=10, what="the event's reconcile")
    time.sleep(0.2)  # its answer is given
    reads = _adminapi_reads(kube)
    time.sleep(0.5)
    assert _adminapi_reads(kube) == reads


def test_an_instance_at_rest_sends_nothing_until_a_watch_event_says_it_changed(memo, monkeypatch):
    """Issue 13: every instance was resynced every minute (5 reads each), 5,000 requests a minute for a fleet of
    1,000 at rest. At rest (the Deployment runs its template everywhere), only a watch event brings it back."""
    kube = memo.reconciler.kube
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)  # only this test's calls, while the pods come
    for _ in range(30):
        _reconcile_now(memo)
        if kube.adminapi(NAME)["status"].get("phase") == "Ready":
            break
        kube.tick()
    assert kube.adminapi(NAME)["status"]["phase"] == "Ready"
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 0.1)
    _reconcile_now(memo)
    at_rest = len(kube.requests)
    time.sleep(1)  # ten resync periods of an instance that is not at rest
    assert len(kube.requests) == at_rest

    kube.delete("v1", "Service", NAME)  # the watch says so: an owned-object event
    _owned_object_event(memo, kube)
    wait_for(lambda: kube.get("v1", "Service", "ns", NAME), timeout=10, what="the Service put back")


def test_an_instance_whose_pods_are_still_coming_is_resynced(memo, monkeypatch):
    """Not at rest: a pod the kubelet cannot configure shows in no watched object, only the resync sees it."""
    kube = memo.reconciler.kube
    _reconcile_now(memo)
    assert kube.adminapi(NAME)["status"]["phase"] != "Ready"
    before = len(kube.requests)
    wait_for(lambda: len(kube.requests) > before, timeout=5, what="a resync of the instance that is not at rest")


def test_a_burst_of_events_is_one_reconcile_and_an_event_during_a_reconcile_is_not_lost(memo, monkeypatch):
    """Issue 13: every owned-object event was a reconcile of its own (a Deployment's status moves with each
    pod): 19 reconciles of each instance per rollout. Events within EVENT_DELAY_SECONDS are one; an event that
    comes while the instance is being reconciled brings another reconcile, whatever the first one answers."""
    kube = memo.reconciler.kube
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)
    monkeypatch.setattr(handlers, "EVENT_DELAY_SECONDS", 0.3)
    _reconcile_now(memo)
    reads = _adminapi_reads(kube)
    for _ in range(20):
        _owned_object_event(memo, kube)
    time.sleep(1)
    assert _adminapi_reads(kube) == reads + 1

    key = ("ns", NAME)
    with memo.locks[key]:  # a reconcile under way (it started before the event)
        started = time.monotonic()
        _owned_object_event(memo, kube)
        memo.requeue.answer(key, None, started)  # it found the instance at rest
    wait_for(lambda: _adminapi_reads(kube) == reads + 2, timeout=5, what="the event's own reconcile")


def _adminapi_event(memo, kube: FakeKube, type_: str | None = "MODIFIED") -> None:
    body = kube.adminapi(NAME) if type_ != "DELETED" else {"kind": "AdminApi",
                                                            "metadata": {"namespace": "ns", "name": NAME}}
    asyncio.run(handlers.adminapi_event(event={"type": type_, "object": body}, body=body, memo=memo))


def test_an_adminapi_event_queues_it_only_when_it_asks_for_something(memo, monkeypatch):
    """Listed at start, created, its spec changed, the retry annotation set, deleted: a reconcile each. Our own
    status writes (the same generation) bring nothing back: Kopf no longer answers every event with a patch."""
    kube = memo.reconciler.kube
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)

    def reconciled_after(event) -> bool:
        reconciles = len(memo.reconciled)
        event()
        time.sleep(0.3)  # the queue's workers take what is due at once
        return len(memo.reconciled) > reconciles

    assert reconciled_after(lambda: _adminapi_event(memo, kube, None))  # listed when the operator starts
    wait_for(lambda: kube.adminapi(NAME).get("status", {}).get("phase"), timeout=5, what="a status written")
    assert not reconciled_after(lambda: _adminapi_event(memo, kube))  # the status write's own event
    kube.patch_spec(NAME, {"replicas": 3})
    assert reconciled_after(lambda: _adminapi_event(memo, kube))
    assert not reconciled_after(lambda: _adminapi_event(memo, kube))
    kube.annotate(NAME, {"aistreams.io/retry-rollout": "1"})
    assert reconciled_after(lambda: _adminapi_event(memo, kube))
    kube.delete("aistreams.io/v1alpha1", "AdminApi", NAME)
    _adminapi_event(memo, kube, "DELETED")  # its reconcile finds it gone (and reconciles nothing)
    assert ("ns", NAME) not in memo.seen
    wait_for(lambda: ("ns", NAME) not in memo.locks, timeout=5, what="the deleted instance forgotten")


def _gets(kube: FakeKube, kind: str) -> int:
    return sum(1 for verb, k, _ in kube.requests if (verb, k) == ("get", kind))


def _watch_shows(memo, kube: FakeKube, kind: str, api_version: str, type_: str = "MODIFIED") -> None:
    body = kube.get(api_version, kind, "ns", NAME) or {
        "kind": kind, "metadata": {"namespace": "ns", "name": NAME, "ownerReferences": _service_event_body(kube)[
            "metadata"]["ownerReferences"]}}
    asyncio.run(handlers.owned_object_changed(event={"type": type_}, body=body, memo=memo))


def test_a_supporting_object_is_read_again_only_when_its_watch_shows_a_change(memo, monkeypatch):
    """Issue 13: every reconcile read the Service and the PodDisruptionBudget again, mid-rollout too. What the
    watch shows is trusted; a change it shows (drift, deletion) is repaired as before."""
    kube = memo.reconciler.kube
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)
    _reconcile_now(memo)
    for kind, api_version in (("Service", "v1"), ("PodDisruptionBudget", "policy/v1")):
        _watch_shows(memo, kube, kind, api_version)  # their ADDED events, as the watches deliver them
    time.sleep(0.3)  # the events' own reconcile
    services, budgets = _gets(kube, "Service"), _gets(kube, "PodDisruptionBudget")
    _reconcile_now(memo)
    assert (_gets(kube, "Service"), _gets(kube, "PodDisruptionBudget")) == (services, budgets)

    live = kube.objects[("v1", "Service", "ns", NAME)]
    live["spec"]["ports"][0]["port"] = 1234  # someone edits it
    live["metadata"]["resourceVersion"] = str(next(kube._rv))
    _watch_shows(memo, kube, "Service", "v1")
    wait_for(lambda: kube.get("v1", "Service", "ns", NAME)["spec"]["ports"][0]["port"] != 1234, timeout=5,
             what="the edited Service put back")
    assert any(e["reason"] == "DriftRepaired" for e in kube.events)

    kube.delete("policy/v1", "PodDisruptionBudget", NAME)
    _watch_shows(memo, kube, "PodDisruptionBudget", "policy/v1", "DELETED")
    wait_for(lambda: kube.get("policy/v1", "PodDisruptionBudget", "ns", NAME), timeout=5,
             what="the deleted PodDisruptionBudget re-created")


def test_an_event_that_shows_nothing_new_queues_no_reconcile(memo, monkeypatch):
    """Issue 13: each of the operator's own writes came back as a watch event and a reconcile, and so did every
    step of a Job's progress. Our own write's echo, or a Job still running, queue nothing; a Job that ended, a
    Deployment the controller moved, or any deletion do."""
    kube = memo.reconciler.kube
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)
    _reconcile_now(memo)

    def queued_by(body: dict, type_: str = "MODIFIED") -> bool:
        reads = _adminapi_reads(kube)
        asyncio.run(handlers.owned_object_changed(event={"type": type_}, body=body, memo=memo))
        time.sleep(0.3)
        return _adminapi_reads(kube) > reads

    deployment = kube.get("apps/v1", "Deployment", "ns", NAME)
    assert not queued_by(deployment)  # what our apply produced
    kube.tick()  # the controller moves its status: a new resourceVersion
    assert queued_by(kube.get("apps/v1", "Deployment", "ns", NAME))

    owner = deployment["metadata"]["ownerReferences"]
    job = {"kind": "Job", "metadata": {"namespace": "ns", "name": "job", "resourceVersion": "1", "ownerReferences": owner},
           "status": {"active": 1}}
    assert not queued_by(job)
    finished = {**job, "metadata": {**job["metadata"], "resourceVersion": "2"},
                "status": {"conditions": [{"type": "Complete", "status": "True"}]}}
    assert queued_by(finished)
    assert queued_by(deployment, "DELETED")


def _watch_shows_every_object(memo, kube: FakeKube) -> None:
    """What the operator's watches deliver: every owned object and the AdminApi, as they are now."""
    for (_, kind, _, _), obj in list(kube.objects.items()):
        event = {"type": "MODIFIED", "object": copy.deepcopy(obj)}
        if kind == "AdminApi":
            asyncio.run(handlers.adminapi_event(event=event, body=event["object"], memo=memo))
        elif kind in ("Deployment", "Service", "PodDisruptionBudget", "Job"):
            asyncio.run(handlers.owned_object_changed(event=event, body=event["object"], memo=memo))


def test_a_rollout_reads_nothing_its_watches_showed(memo, monkeypatch):
    """Issue 13: at 1,000 AdminApis an image change read the Deployment 7,737 times, listed the pods 7,738 times,
    read the AdminApi 6,066 times and the PodDisruptionBudget 2,414 times, where the watches had shown every
    version already. A reconcile reads from memory what the watch showed (a Job only until the watch shows it),
    and lists the pods only when the Deployment's own counts say one is not ready (only the pod says why). A
    status write on a version that changed meanwhile is a conflict, and then the AdminApi is read."""
    kube = memo.reconciler.kube
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)

    def until(done) -> None:
        for _ in range(60):
            _reconcile_now(memo)
            if done(kube.adminapi(NAME)["status"]):
                return
            kube.tick()
            _watch_shows_every_object(memo, kube)
        raise AssertionError(kube.adminapi(NAME)["status"])

    _watch_shows_every_object(memo, kube)
    until(lambda status: status.get("phase") == "Ready")
    _watch_shows_every_object(memo, kube)
    kube.requests.clear()
    _reconcile_now(memo)  # at rest: the Deployment's counts say it all
    assert kube.requests == []

    kube.patch_spec(NAME, {"image": "admin-api:1.1.0"})
    _watch_shows_every_object(memo, kube)
    reconciles = len(memo.reconciled)
    until(lambda status: status.get("phase") == "Ready" and status.get("lastGoodImage") == "admin-api:1.1.0")
    reads = [kind for verb, kind, _ in kube.requests if verb in ("get", "list")]
    # The backup's and the migration's Jobs are created without a read (a POST: a name taken is a 409); one is
    # read only by a reconcile that comes before the watch shows it.
    assert len(kube.of_kind("Job")) == 2 and reads.count("Job") <= 2, reads
    assert [code for verb, kind, code in kube.requests if (verb, kind) == ("post", "Job")].count(200) == 2
    assert set(reads) <= {"Job", "Pod"}, reads
    # The pods only while they come, once per reconcile at most.
    assert 0 < reads.count("Pod") < len(memo.reconciled) - reconciles

    kube.requests.clear()
    kube.fail("patch", "AdminApi/status", status=409)  # a change still on its way when the reconcile began
    kube.patch_spec(NAME, {"replicas": 3})
    _watch_shows_every_object(memo, kube)
    _reconcile_now(memo)
    assert [kind for verb, kind, _ in kube.requests if verb == "get"] == ["AdminApi"]
    assert kube.get("apps/v1", "Deployment", "ns", NAME)["spec"]["replicas"] == 3
