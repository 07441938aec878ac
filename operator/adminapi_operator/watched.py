"""The latest version of each AdminApi and owned object (Deployment, Service, PodDisruptionBudget, Job) that the
watches showed, so that a reconcile reads from memory what a watch event already brought (as controller-runtime's
informer caches do), and a watch event that shows nothing new queues no reconcile.

- Trusted only for an object the watch has shown, and for TRUST_SECONDS after the watch, our own write or a
  read last confirmed it: a reconcile without watches (or before the first event) reads from the API as
  before.
- A version replaces the one kept only if it is newer (the resourceVersions of one etcd compare as integers):
  a watch event that arrives after our own write never takes its place.
- An event that shows exactly the version our own write produced is that write coming back: the reconcile
  that wrote it knew it already.
- An AdminApi's status write is preconditioned on the version the reconcile started from: if it changed since
  (an event still on its way), the write is a 409, and the AdminApi is read from the API (handlers.py).
Kept as JSON without managedFields: a few KB per object, and each reader gets its own copy.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str, str]  # kind, namespace, name
# A broken watch is resumed from its resourceVersion (every event since, deletions included) or, if that is gone,
# re-listed, and a re-list says nothing of what was deleted meanwhile: what a gap may hide is read again in time.
TRUST_SECONDS = 600.0


def _key(obj: dict[str, Any]) -> Key:
    return obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]


def _version(obj: dict[str, Any]) -> int | None:
    try:
        return int(obj["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class _Kept:
    version: int
    json: str
    confirmed: float  # time.monotonic()


class Watched:
    def __init__(self, trust_seconds: float = TRUST_SECONDS) -> None:
        self.trust_seconds = trust_seconds
        self._kept: dict[Key, _Kept] = {}
        self._wrote: dict[Key, str] = {}  # the resourceVersion our last write of each object produced
        self._exists: set[Key] = set()  # shown, written or read, and no deletion shown since
        self._lock = threading.Lock()  # watch events come on Kopf's loop, writes and reads on the queue's workers

    def show(self, obj: dict[str, Any], deleted: bool = False) -> None:
        """A watch event."""
        if deleted:
            with self._lock:
                self._kept.pop(_key(obj), None)
                self._wrote.pop(_key(obj), None)
                self._exists.discard(_key(obj))
        else:
            self._keep(obj, new=True)

    def exists(self, kind: str, namespace: str, name: str) -> bool:
        """Whether the object exists as far as this process saw (a watch, our own write or read): a Job to
        read, not to create."""
        return (kind, namespace, name) in self._exists

    def echo(self, obj: dict[str, Any]) -> bool:
        """Whether a watch event shows the very version our own last write of the object produced."""
        version = obj["metadata"].get("resourceVersion")
        return version is not None and self._wrote.get(_key(obj)) == version

    def wrote(self, obj: dict[str, Any]) -> dict[str, Any]:
        """`obj` as the API server answered our write of it."""
        self._wrote[_key(obj)] = obj["metadata"]["resourceVersion"]
        self._keep(obj)
        return obj

    def read(self, obj: dict[str, Any] | None) -> dict[str, Any] | None:
        """`obj` as the API server answered a read of it."""
        if obj is not None:
            self._keep(obj)
        return obj

    def latest(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The latest version the watch showed (or our own write or read produced since), if still trusted."""
        kept = self._kept.get((kind, namespace, name))
        if kept is None or time.monotonic() - kept.confirmed >= self.trust_seconds:
            return None
        return json.loads(kept.json)

    def _keep(self, obj: dict[str, Any], new: bool = False) -> None:
        """Keep `obj` if it is newer than what is kept; `new`: also if nothing is (only the watch starts one)."""
        key, version = _key(obj), _version(obj)
        if version is None:
            return
        with self._lock:  # compared and replaced at once: an older version never lands over a newer one
            self._exists.add(key)
            kept = self._kept.get(key)
            if (kept is None and not new) or (kept is not None and kept.version > version):
                return
            if kept is not None and kept.version == version:
                kept.confirmed = time.monotonic()
                return
            meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
            self._kept[key] = _Kept(version, json.dumps({**obj, "metadata": meta}, separators=(",", ":")),
                                    time.monotonic())
