"""The `get_current_user` dependency (`user: AuthenticatedUser` in a route): every /api/v1 route except
login depends on it (401 without a session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from admin_api.core.deps import resources_of

SESSION_COOKIE = "admin_api_session"


@dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    is_admin: bool
    session_id_hash: str


async def get_current_user(request: Request) -> CurrentUser:
    # One dependency, not a chain (store <- Redis, settings): every API request solves it.
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated.")
    session = await resources_of(request).sessions.load(session_id)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Session expired or invalid; log in again.")
    return CurrentUser(
        id=session.user_id, username=session.username, is_admin=session.is_admin, session_id_hash=session.id_hash
    )


# Put `user: AuthenticatedUser` in a route's parameters to require a session.
AuthenticatedUser = Annotated[CurrentUser, Depends(get_current_user)]
