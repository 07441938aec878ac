"""What the watches showed, kept for the reconciler: the newest version wins, whoever brought it; only what a
watch showed is trusted, and only for a while; a deletion forgets it."""
from __future__ import annotations

from adminapi_operator.watched import Watched


def _deployment(version: int, image: str = "a") -> dict:
    return {"kind": "Deployment", "metadata": {"namespace": "ns", "name": "d", "resourceVersion": str(version),
                                               "managedFields": [{"manager": "kube-controller-manager"}]},
            "spec": {"image": image}}


def _latest(w: Watched) -> dict | None:
    return w.latest("Deployment", "ns", "d")


def test_a_watch_event_older_than_our_own_write_does_not_replace_it():
    w = Watched()
    w.show(_deployment(5, "a"))
    w.wrote(_deployment(7, "b"))
    w.show(_deployment(6, "a"))  # on its way before our write answered
    assert _latest(w)["spec"] == {"image": "b"}
    assert w.echo(_deployment(7)) and not w.echo(_deployment(6))
    w.show(_deployment(8, "c"))  # someone else's change after ours
    assert _latest(w)["spec"] == {"image": "c"}
    assert "managedFields" not in _latest(w)["metadata"]


def test_only_what_a_watch_showed_is_trusted():
    """A reconcile without watches (or before the first event of an object) reads from the API."""
    w = Watched()
    w.wrote(_deployment(3))
    w.read(_deployment(4))
    assert _latest(w) is None
    w.show(_deployment(4))
    assert _latest(w)["metadata"]["resourceVersion"] == "4"


def test_what_exists_is_known_from_a_write_a_read_or_a_watch_until_a_deletion():
    """A Job we created (or read) is read, not created again: its POST would be a 409 each time."""
    for seen in ("wrote", "read", "show"):
        w = Watched()
        assert not w.exists("Deployment", "ns", "d")
        getattr(w, seen)(_deployment(3))
        assert w.exists("Deployment", "ns", "d"), seen
        w.show(_deployment(4), deleted=True)
        assert not w.exists("Deployment", "ns", "d"), seen


def test_a_deletion_forgets_and_trust_expires():
    w = Watched()
    w.show(_deployment(4))
    w.show(_deployment(4), deleted=True)
    assert _latest(w) is None and not w.echo(_deployment(4))
    w.show(_deployment(5))
    w.trust_seconds = 0  # a broken watch re-lists without its deletions: what it kept is read again in time
    assert _latest(w) is None


def test_each_reader_gets_its_own_copy():
    w = Watched()
    w.show(_deployment(4))
    _latest(w)["spec"]["image"] = "changed by a reader"
    assert _latest(w)["spec"] == {"image": "a"}
