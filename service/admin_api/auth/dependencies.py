"""The `get_current_user` dependency (`user: AuthenticatedUser` in a route): every /api/v1 route except
login depends on it (401 without a session)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from admin_api.auth.sessions import SessionStore
from admin_api.core.deps import RedisDep, SettingsDep

SESSION_COOKIE = "admin_api_session"


@dataclass(frozen=True)
class CurrentUser:
    id: int
    username: str
    is_admin: bool
    session_id_hash: str


async def get_session_store(redis: RedisDep, settings: SettingsDep) -> SessionStore:
    return SessionStore(redis, idle_seconds=settings.session_idle_seconds, max_seconds=settings.session_max_seconds)


async def get_current_user(
    request: Request, sessions: Annotated[SessionStore, Depends(get_session_store)]
) -> CurrentUser:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated.")
    session = await sessions.load(session_id)
    if session is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Session expired or invalid; log in again.")
    return CurrentUser(
        id=session.user_id, username=session.username, is_admin=session.is_admin, session_id_hash=session.id_hash
    )


# Put `user: AuthenticatedUser` in a route's parameters to require a session.
AuthenticatedUser = Annotated[CurrentUser, Depends(get_current_user)]
