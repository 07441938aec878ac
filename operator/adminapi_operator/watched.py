"""What the watches last showed of each owned object, against what the operator itself read and wrote, so that
a reconcile reads a supporting object (Service, PodDisruptionBudget) only when it changed, and a watch event that
shows nothing new queues no reconcile.

- A reconcile that finds (or makes) a supporting object as desired remembers the resourceVersion it saw; while
  the watch shows that same version, the next reconcile trusts it without a request.
- An event that shows exactly the version our own write produced is that write coming back: the reconcile that
  wrote it knew it already.
Anything the watch has not shown (an operator just started, an event still on its way, a deletion) is read as
before. A few short strings per object: a fleet's bodies are never kept.
"""
from __future__ import annotations

from typing import Any

from . import builders

Key = tuple[str, str, str]  # kind, namespace, name


def _key(obj: dict[str, Any]) -> Key:
    return obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"]


class Watched:
    def __init__(self) -> None:
        self._shown: dict[Key, str] = {}  # the latest resourceVersion a watch event showed
        self._found: dict[Key, tuple[str, str]] = {}  # resourceVersion and applied hash last found as desired
        self._wrote: dict[Key, str] = {}  # the resourceVersion our last write of it produced

    def show(self, obj: dict[str, Any], deleted: bool = False) -> None:
        """A watch event."""
        key = _key(obj)
        if deleted:
            for seen in (self._shown, self._found, self._wrote):
                seen.pop(key, None)
        else:
            self._shown[key] = obj["metadata"].get("resourceVersion")

    def echo(self, obj: dict[str, Any]) -> bool:
        """Whether a watch event shows the very version our own last write of the object produced."""
        version = obj["metadata"].get("resourceVersion")
        return version is not None and self._wrote.get(_key(obj)) == version

    def wrote(self, obj: dict[str, Any]) -> dict[str, Any]:
        """`obj` as the API server answered our write of it."""
        self._wrote[_key(obj)] = obj["metadata"]["resourceVersion"]
        return obj

    def found(self, obj: dict[str, Any]) -> None:
        """`obj`, as the API server answered (a read or our write), is what we want."""
        self._found[_key(obj)] = (obj["metadata"]["resourceVersion"], builders.applied_hash(obj))

    def unchanged(self, desired: dict[str, Any]) -> bool:
        """Whether the object is, as the watch shows, the version last found to be `desired` (hash annotated)."""
        key = _key(desired)
        found, shown = self._found.get(key), self._shown.get(key)
        return found is not None and found == (shown, builders.applied_hash(desired))
