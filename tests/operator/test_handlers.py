"""The handlers' own queue: an owned-object event that meets an API error is retried, never dropped; every
instance is resynced; a deleted instance leaves the queue. On the in-memory API (fake_kube.py)."""
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
    memo.requeue = handlers.Requeue(lambda key: handlers._reconcile(*key, memo, logging.getLogger()))
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
