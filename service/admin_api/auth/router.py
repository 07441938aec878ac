"""/api/v1/auth: login, logout, me."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status

from admin_api.auth.dependencies import SESSION_COOKIE, AuthenticatedUser
from admin_api.auth.schemas import LoginRequest, UserOut
from admin_api.auth.service import AuthService, InvalidCredentials, TooManyFailures
from admin_api.core.bounded import Saturated
from admin_api.core.deps import ResourcesDep
from admin_api.core.errors import JSON_WRITE_ERRORS, SESSION_ERRORS, ErrorDetail
from admin_api.settings import Settings

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


async def get_auth_service(resources: ResourcesDep) -> AuthService:
    return AuthService(
        resources.pool, resources.redis, resources.settings, resources.password_checks, resources.sessions
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


@router.post(
    "/login",
    response_model=UserOut,
    responses={
        **JSON_WRITE_ERRORS,
        401: {"model": ErrorDetail, "description": "Invalid username or password."},
        429: {"model": ErrorDetail, "description": "Too many failed logins; see Retry-After."},
        503: {"model": ErrorDetail, "description": "Too many logins at once; see Retry-After."},
    },
)
async def login(body: LoginRequest, request: Request, response: Response, service: AuthServiceDep) -> UserOut:
    try:
        result = await service.login(
            body.username,
            body.password,
            client_ip=request.client.host if request.client else "unknown",
            previous_session=request.cookies.get(SESSION_COOKIE),
        )
    except InvalidCredentials:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Invalid username or password.") from None
    except TooManyFailures as exc:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "Too many failed logins; try again later.",
            headers={"Retry-After": str(exc.retry_after)},
        ) from None
    except Saturated as saturated:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Too many logins at once; try again shortly.",
            headers={"Retry-After": str(saturated.retry_after)},
        ) from None
    _set_session_cookie(response, result.session_id, service.settings)
    return UserOut(id=result.user.id, username=result.user.username, is_admin=result.user.is_admin)


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, responses={**JSON_WRITE_ERRORS, **SESSION_ERRORS}
)
async def logout(user: AuthenticatedUser, service: AuthServiceDep) -> Response:
    await service.logout(user.session_id_hash)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=service.settings.cookie_secure, httponly=True, samesite="lax"
    )
    return response


@router.get("/me", response_model=UserOut, responses=SESSION_ERRORS)
async def me(user: AuthenticatedUser) -> UserOut:
    return UserOut(id=user.id, username=user.username, is_admin=user.is_admin)


def _set_session_cookie(response: Response, session_id: str, settings: Settings) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=settings.session_max_seconds,
        path="/",
        secure=settings.cookie_secure,
        httponly=True,  # not readable by page scripts
        samesite="lax",  # not sent on cross-site subresource requests or cross-site POSTs
    )
