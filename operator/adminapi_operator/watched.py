"""What the watches last showed of each supporting object (Service, PodDisruptionBudget), so that a reconcile
reads one again only when it changed.

A reconcile that finds (or makes) such an object as desired remembers the resourceVersion it saw; while the
watch shows that same version, the next reconcile trusts it without a request. Anything the watch has not shown
(an operator just started, an event still on its way, a deletion) is read as before. Two short strings per
object: a fleet's bodies are never kept.
"""
from __future__ import annotations

from typing import Any

from . import builders

Key = tuple[str, str, str]  # kind, namespace, name


class Watched:
    def __init__(self) -> None:
        self._shown: dict[Key, str] = {}  # the latest resourceVersion a watch event showed
        self._found: dict[Key, tuple[str, str]] = {}  # resourceVersion and applied hash last found as desired

    def show(self, kind: str, namespace: str, name: str, resource_version: str | None) -> None:
        """A watch event (resource_version None: the object was deleted)."""
        key = (kind, namespace, name)
        if resource_version is None:
            self._shown.pop(key, None)
            self._found.pop(key, None)
        else:
            self._shown[key] = resource_version

    def found(self, obj: dict[str, Any]) -> None:
        """`obj`, as the API server answered, is what we want."""
        meta = obj["metadata"]
        self._found[(obj["kind"], meta["namespace"], meta["name"])] = (meta["resourceVersion"], _applied(obj))

    def unchanged(self, desired: dict[str, Any]) -> bool:
        """Whether the object is, as the watch shows, the version last found to be `desired` (hash annotated)."""
        meta = desired["metadata"]
        key = (desired["kind"], meta["namespace"], meta["name"])
        found, shown = self._found.get(key), self._shown.get(key)
        return found is not None and found == (shown, _applied(desired))


def _applied(obj: dict[str, Any]) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(builders.APPLIED_HASH_ANNOTATION)
