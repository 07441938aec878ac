"""Kopf handlers: they orchestrate, the Reconciler decides, the builders build.

Every trigger ends in the same level-based `Reconciler.reconcile` for one AdminApi, under a per-instance
lock (Kopf serialises handlers per object, but owned-object events arrive on other objects):
- AdminApi created, resumed after an operator restart, its spec changed, or the retry annotation set;
- an owned Deployment, Service or PodDisruptionBudget changed or was deleted (drift, rollout progress).
No timers or daemons, so Kopf adds no finalizer: deleting an AdminApi never waits for the operator, and
ownerReferences let Kubernetes' garbage collector remove what it owned.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from . import FIELD_MANAGER, GROUP, KIND, PLURAL, VERSION
from .health import check_endpoints
from .kube import Kube, load_api_client
from .reconcile import RETRY_ANNOTATION, Reconciler

OWNED = {"app.kubernetes.io/managed-by": FIELD_MANAGER}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own annotation prefix for Kopf's bookkeeping; status is left to us (a structural schema prunes
    # what it does not declare). The diff base holds the spec, which has only references to Secrets.
    prefix = f"operator.{GROUP}"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=prefix)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=prefix)
    settings.persistence.finalizer = f"{prefix}/finalizer"
    # A watch that silently stops is the classic "zombie operator": bound every stream and request.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.posting.level = logging.INFO
    settings.posting.loggers = False  # only our explicit Events, never log lines, reach `kubectl describe`
    settings.execution.max_workers = 8
    memo.reconciler = Reconciler(Kube(load_api_client()), check_health=check_endpoints)
    memo.locks = {}


@contextlib.contextmanager
def _api_outages_are_temporary() -> Iterator[None]:
    """A busy or unreachable API server is worth another try in seconds, not Kopf's default 60 s back-off."""
    try:
        yield
    except ApiException as e:
        if e.status in (409, 429) or e.status >= 500:
            raise kopf.TemporaryError(f"the Kubernetes API answered {e.status}; trying again", delay=5) from None
        raise
    except urllib3.exceptions.HTTPError as e:
        raise kopf.TemporaryError(f"the Kubernetes API is unreachable ({type(e).__name__}); trying again",
                                  delay=5) from None


def _reconcile(namespace: str, name: str, memo: kopf.Memo, logger: logging.Logger) -> None:
    with memo.locks.setdefault((namespace, name), threading.Lock()), _api_outages_are_temporary():
        # Kopf's body may lag behind our own status writes: always decide on the latest object.
        latest = memo.reconciler.kube.get_adminapi(namespace, name)
        if latest is None or latest["metadata"].get("deletionTimestamp"):
            return
        outcome = memo.reconciler.reconcile(latest)
    for event in outcome.events:
        kopf.event(latest, type=event.type, reason=event.reason, message=event.message)
        logger.info("%s: %s", event.reason, event.message)
    if outcome.waiting:
        raise kopf.TemporaryError(str(outcome.waiting), delay=outcome.waiting.delay)


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
@kopf.on.update(GROUP, VERSION, PLURAL, field=("metadata", "annotations", RETRY_ANNOTATION))
def adminapi_changed(namespace: str, name: str, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    _reconcile(namespace, name, memo, logger)


def _owner_of(body: kopf.Body) -> tuple[str, str] | None:
    for ref in body["metadata"].get("ownerReferences") or ():
        if ref.get("kind") == KIND and ref.get("apiVersion") == f"{GROUP}/{VERSION}":
            return body["metadata"]["namespace"], ref["name"]
    return None


@kopf.on.event("apps", "v1", "deployments", labels=OWNED)
@kopf.on.event("", "v1", "services", labels=OWNED)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OWNED)
@kopf.on.event("batch", "v1", "jobs", labels=OWNED)
def owned_object_changed(body: kopf.Body, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    owner = _owner_of(body)
    if owner is None:
        return
    try:
        _reconcile(*owner, memo, logger)
    except kopf.TemporaryError:
        pass  # a rollout step is under way; the AdminApi's own handler keeps polling it
