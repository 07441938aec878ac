"""Which exceptions are a backing service's outage (503) and which are bugs (500): the asyncpg forms of a
connection cut mid-use, seen in test_postgres_outage, are outages; asyncpg's misuse errors stay bugs."""

from __future__ import annotations

import asyncpg
from admin_api.core.errors import is_unavailable


def _chained(outer: BaseException, cause: BaseException) -> BaseException:
    try:
        try:
            raise cause
        except BaseException:
            raise outer  # noqa: B904  (implicit chaining, as asyncpg's __aexit__ does)
    except BaseException as exc:
        return exc


def test_connection_cut_mid_use_is_unavailable():
    assert is_unavailable(asyncpg.exceptions.InternalClientError("cannot switch to state 15; another operation (2) is in progress"))
    assert is_unavailable(
        asyncpg.exceptions.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
    )
    assert is_unavailable(
        _chained(asyncpg.exceptions.InterfaceError("whatever"), asyncpg.exceptions.ConnectionDoesNotExistError("gone"))
    )


def test_misuse_and_bugs_are_not_unavailable():
    assert not is_unavailable(asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"))
    assert not is_unavailable(_chained(asyncpg.exceptions.InterfaceError("misuse"), KeyError("bug")))
    assert not is_unavailable(ValueError("bug"))
