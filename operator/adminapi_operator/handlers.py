"""Kopf handlers: they orchestrate, the Reconciler decides, the builders build.

The handlers only say which instance to look at; our own queue (`Requeue`) reconciles it, on its own threads,
with the same level-based `Reconciler.reconcile` for one AdminApi under a per-instance lock. What queues one:
- a watch event of the AdminApi that asks for something: created, listed when the operator starts (a restarted
  operator resumes every instance), its spec changed (its generation), the retry annotation set, or deleted;
- a watch event of an owned Deployment, Service, PodDisruptionBudget or Job (drift, rollout progress),
  EVENT_DELAY_SECONDS later, so that the burst of events one step makes (a Deployment's status moves with every
  pod) is one reconcile of the instance, not one per event;
- the queue itself: a step under way is looked at again (reconcile.py says when), a reconcile that met an API
  error is retried in seconds (whatever triggered it: an event is never dropped), and an instance that is not
  at rest (its pods still coming, say) is resynced RESYNC_SECONDS after its last reconcile. An instance at rest
  (its Deployment runs its template on every replica, or its spec cannot work) is not looked at again until a
  watch event says something of it changed: a fleet at rest sends no request at all. Each reconcile's answer
  replaces the instance's earlier one: the latest reconcile saw the latest state.
The handlers are coroutines that return at once: a burst of a thousand events never waits in a thread pool,
holding the objects' bodies. Event handlers only, so Kopf writes nothing on any object: no diff-base or progress
annotation, no finalizer (deleting an AdminApi never waits for the operator; ownerReferences let Kubernetes'
garbage collector remove what it owned).
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from typing import Any, Callable

import kopf
import urllib3
from kubernetes.client.exceptions import ApiException

from . import FIELD_MANAGER, GROUP, KIND, PLURAL, VERSION
from .health import check_endpoints
from .kube import Kube, load_api_client
from .reconcile import RETRY_ANNOTATION, Reconciler, job_state
from .watched import TRUST_SECONDS, Watched

OWNED_SELECTOR = f"app.kubernetes.io/managed-by={FIELD_MANAGER}"
OWNED_RESOURCES = [("apps", "v1", "deployments"), ("", "v1", "services"), ("policy", "v1", "poddisruptionbudgets"),
                   ("batch", "v1", "jobs")]
RESYNC_SECONDS = 60.0  # an instance not at rest, when nothing else brings it back sooner
AT_REST = float("inf")  # come back on a watch event only
RETRY_SECONDS = 5.0
EVENT_DELAY_SECONDS = 1.0  # owned-object events of one instance within this window make one reconcile
# Instances reconciled at once (each under its own lock). A reconcile mostly waits on the API server (a fleet's
# rollout kept 8 workers busy with 20% of a core), and each step of a fleet waits for a worker per instance.
QUEUE_WORKERS = 32
CONFLICT_RETRIES = 2  # a 409 means our read was stale, not that the server is busy: read again at once
Key = tuple[str, str]


class Requeue:
    """A delay queue of instances, served by `workers` threads: a key is due once, at the time last asked for it
    (or, with `soon`, at the earlier of that and its current time), and taken by one worker at a time."""

    def __init__(self, work: Callable[[Key], None], workers: int = 1):
        self._work = work  # reconciles one key, and asks (`after`) to come back
        self._due: dict[Key, float] = {}
        self._asked: dict[Key, float] = {}  # when the key's due time was last asked for
        self._heap: list[tuple[float, Key]] = []
        self._cv = threading.Condition()
        self._stopped = False
        self._threads = [threading.Thread(target=self._run, name=f"adminapi-requeue-{i}", daemon=True)
                         for i in range(workers)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify_all()

    def _set(self, key: Key, at: float) -> None:
        self._due[key], self._asked[key] = at, time.monotonic()
        heapq.heappush(self._heap, (at, key))
        self._cv.notify_all()

    def after(self, key: Key, seconds: float) -> None:
        with self._cv:
            self._set(key, time.monotonic() + seconds)

    def soon(self, key: Key, seconds: float) -> None:
        """Due within `seconds`: never later than it already was (a burst of events is one reconcile)."""
        at = time.monotonic() + seconds
        with self._cv:
            if self._due.get(key, float("inf")) > at:
                self._set(key, at)

    def answer(self, key: Key, seconds: float | None, started: float) -> None:
        """A reconcile that started at `started` (monotonic) says when to come back (None: not unless asked).
        It replaces what was asked before it started; what was asked since (an event it may not have seen) stays."""
        with self._cv:
            if key in self._due and self._asked[key] >= started:
                if seconds is not None:
                    self.soon(key, seconds)
                return
            if seconds is None:
                self._due.pop(key, None)
            else:
                self._set(key, time.monotonic() + seconds)

    def forget(self, key: Key) -> None:
        with self._cv:
            self._due.pop(key, None)

    def _next(self) -> Key | None:
        with self._cv:
            while not self._stopped:
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # superseded (or forgotten) entry
                if self._heap and self._heap[0][0] <= time.monotonic():
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._cv.wait(timeout=(self._heap[0][0] - time.monotonic()) if self._heap else None)
            return None

    def _run(self) -> None:
        while (key := self._next()) is not None:
            try:
                self._work(key)  # which asks to come back (or forgets the key) itself
            except Exception:  # noqa: BLE001 (never let the queue die; the resync comes back to it)
                logging.getLogger(__name__).exception("reconciling %s/%s failed", *key)
                self.after(key, RESYNC_SECONDS)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Event handlers only: Kopf keeps no diff base or progress and writes nothing on any object. Owned objects
    # are selected by the server (our label), so the operator never receives the cluster's other Deployments.
    for group, version, plural in OWNED_RESOURCES:
        settings.watching.label_selectors[group, version, plural] = OWNED_SELECTOR
    # A watch that silently stops is the classic "zombie operator": bound every stream and request.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 10
    settings.posting.enabled = False  # our Events are posted by the reconciler itself, before its status writes
    memo.reconciler = Reconciler(Kube(load_api_client(QUEUE_WORKERS)), check_health=check_endpoints,
                                 watched=Watched(memo.get("trust_watch_seconds", TRUST_SECONDS)))
    memo.locks = {}
    memo.seen = {}  # per AdminApi: what of it asks for a reconcile (uid, generation, retry annotation)
    memo.requeue = Requeue(lambda key: reconcile_now(*key, memo, instance_logger(*key)), workers=QUEUE_WORKERS)
    memo.requeue.start()


def instance_logger(namespace: str, name: str) -> logging.LoggerAdapter:
    """Our lines about an instance name it as Kopf's own do: `[ns/name]` in plain logs, `object` in JSON."""
    return logging.LoggerAdapter(logging.getLogger(__name__), {"k8s_skip": True, "k8s_ref": {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "namespace": namespace, "name": name}})


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    if "requeue" in memo:
        memo.requeue.stop()


def _reconcile(namespace: str, name: str, memo: kopf.Memo, logger: logging.LoggerAdapter) -> float | None:
    """Reconcile one instance now; returns when to come back (None: it is gone; AT_REST: on a watch event only).
    Never raises an API error: a busy or unreachable API server is tried again in seconds."""
    watched = memo.reconciler.watched
    for attempt in range(CONFLICT_RETRIES + 1):
        try:
            # The latest version the watch showed or our own status write produced; a status write is
            # preconditioned on it, so a change still on its way is a 409, and then it is read from the API.
            latest = (watched.latest(KIND, namespace, name) if attempt == 0 else None) or watched.read(
                memo.reconciler.kube.get_adminapi(namespace, name))
            if latest is None or latest["metadata"].get("deletionTimestamp"):
                return None
            outcome = memo.reconciler.reconcile(latest)
            break
        except ApiException as e:
            if e.status == 409 and attempt < CONFLICT_RETRIES:
                continue  # it changed after we read it (its spec, say): read it again, now
            if e.status in (409, 429) or e.status >= 500:
                logger.info("the Kubernetes API answered %s; trying again in %ss", e.status, RETRY_SECONDS)
                return RETRY_SECONDS
            raise
        except urllib3.exceptions.HTTPError as e:
            logger.info("the Kubernetes API is unreachable (%s); trying again in %ss", type(e).__name__, RETRY_SECONDS)
            return RETRY_SECONDS
    for event in outcome.events:
        logger.info("%s: %s", event.reason, event.message)
    if outcome.waiting:
        return outcome.waiting.delay
    return AT_REST if outcome.at_rest else RESYNC_SECONDS


def reconcile_now(namespace: str, name: str, memo: kopf.Memo, logger: logging.LoggerAdapter) -> None:
    """Reconcile under the instance's lock, and say when to come back while still holding it: the answer of
    the latest reconcile replaces an earlier one, so a retry asked for by a reconcile that met an error does
    not outlive the successful reconcile after it (an instance at rest is not reconciled again for nothing)."""
    key = (namespace, name)
    with memo.locks.setdefault(key, threading.Lock()):
        started = time.monotonic()
        delay = _reconcile(namespace, name, memo, logger)
        if delay is None:
            memo.requeue.answer(key, None, started)
            memo.locks.pop(key, None)
        else:  # at rest: an earlier poll or retry is void, only an event brings it back
            memo.requeue.answer(key, None if delay == AT_REST else delay, started)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def adminapi_event(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Created, listed at start (an operator restarted resumes every instance), its spec changed, the retry
    annotation set, or deleted. Our own status writes change none of these, so they bring nothing back."""
    meta = body["metadata"]
    key = (meta["namespace"], meta["name"])
    memo.reconciler.watched.show(body, deleted=event["type"] == "DELETED")
    if event["type"] == "DELETED":
        memo.seen.pop(key, None)
        memo.requeue.soon(key, 0)  # its reconcile finds it gone and forgets it
        return
    asks = (meta.get("uid"), meta.get("generation"), (meta.get("annotations") or {}).get(RETRY_ANNOTATION))
    if memo.seen.get(key) != asks:
        memo.seen[key] = asks
        memo.requeue.soon(key, 0)


def _owner_of(body: kopf.Body) -> tuple[str, str] | None:
    for ref in body["metadata"].get("ownerReferences") or ():
        if ref.get("kind") == KIND and ref.get("apiVersion") == f"{GROUP}/{VERSION}":
            return body["metadata"]["namespace"], ref["name"]
    return None


@kopf.on.event("apps", "v1", "deployments")
@kopf.on.event("", "v1", "services")
@kopf.on.event("policy", "v1", "poddisruptionbudgets")
@kopf.on.event("batch", "v1", "jobs")
async def owned_object_changed(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    owner = _owner_of(body)
    if owner is None:
        return
    watched, deleted = memo.reconciler.watched, event["type"] == "DELETED"
    watched.show(body, deleted)
    if not deleted and (watched.echo(body) or body.get("kind") == "Job" and job_state(body) is None):
        return  # our own write coming back, or a Job still running: nothing a reconcile would act on
    memo.requeue.soon(owner, EVENT_DELAY_SECONDS)
