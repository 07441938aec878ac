"""The handlers' own queue: an owned-object event that meets an API error is retried, never dropped; every
instance is resynced; a deleted instance leaves the queue; an instance at rest is not reconciled again for nothing. On the in-memory API (fake_kube.py)."""
from __future__ import annotations

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
    kube = FakeKube()
    kube.create_adminapi(NAME, BASE)
    memo = kopf.Memo(reconciler=Reconciler(kube, check_health=lambda url, paths: None, clock=lambda: kube.now),
                     locks={})
    memo.requeue = handlers.Requeue(lambda key: handlers._reconcile_and_requeue(*key, memo, logging.getLogger()))
    memo.requeue.start()
    yield memo
    memo.requeue.stop()


def _service_event_body(kube: FakeKube) -> dict:
    return {"metadata": {"namespace": "ns", "name": NAME, "ownerReferences": [
        {"apiVersion": "aistreams.io/v1alpha1", "kind": "AdminApi", "name": NAME, "uid": "u"}]}}


def test_an_owned_object_event_that_meets_an_api_error_is_retried(memo):
    """Issue 9: a 409/429/5xx on an owned-object event was dropped and nothing resynced: a deleted Service
    stayed deleted."""
    kube = memo.reconciler.kube
    handlers.adminapi_changed(namespace="ns", name=NAME, memo=memo, logger=logging.getLogger())
    memo.requeue.stop()  # no resync: only the retry may bring it back
    memo.requeue = handlers.Requeue(lambda key: handlers._reconcile(*key, memo, logging.getLogger()) and None)
    memo.requeue.start()
    kube.delete("v1", "Service", NAME)
    kube.fail("patch", "Service", status=429)
    handlers.owned_object_changed(body=_service_event_body(kube), memo=memo, logger=logging.getLogger())
    assert kube.get("v1", "Service", "ns", NAME) is None  # the event itself failed
    wait_for(lambda: kube.objects.get(("v1", "Service", "ns", NAME)), timeout=10, what="the Service re-created")


def test_every_instance_is_resynced_and_a_deleted_one_is_forgotten(memo):
    kube = memo.reconciler.kube
    handlers.adminapi_changed(namespace="ns", name=NAME, memo=memo, logger=logging.getLogger())
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
    handlers.adminapi_changed(namespace="ns", name=NAME, memo=memo, logger=logging.getLogger())
    assert kube.adminapi(NAME)["status"].get("phase")  # written by the same call, after reading again
    reads = _adminapi_reads(kube)
    time.sleep(0.5)  # several retry periods
    assert _adminapi_reads(kube) == reads


def test_a_retry_does_not_outlive_the_successful_reconcile_after_it(memo, monkeypatch):
    monkeypatch.setattr(handlers, "RESYNC_SECONDS", 3600.0)
    kube = memo.reconciler.kube
    kube.fail("patch", "AdminApi/status", status=409, times=handlers.CONFLICT_RETRIES + 1)
    handlers.adminapi_changed(namespace="ns", name=NAME, memo=memo, logger=logging.getLogger())
    assert not (kube.adminapi(NAME).get("status") or {}).get("phase")  # it asked to come back in RETRY_SECONDS
    handlers.owned_object_changed(body=_service_event_body(kube), memo=memo, logger=logging.getLogger())
    assert kube.adminapi(NAME)["status"].get("phase")
    reads = _adminapi_reads(kube)
    time.sleep(0.5)
    assert _adminapi_reads(kube) == reads
