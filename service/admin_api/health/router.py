"""GET /health, /health/db, /health/ready, /health/live: the deployment guide's bodies, field for field.

Liveness answers from the process alone (a database outage must not get pods restarted); readiness
asks PostgreSQL and Redis each time, so it recovers by itself when they come back.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from admin_api.core.deps import ResourcesDep
from admin_api.core.errors import is_unavailable
from admin_api.core.resources import Resources

log = logging.getLogger(__name__)

router = APIRouter(prefix="/health", tags=["health"])

CHECK_TIMEOUT_SECONDS = 2.0  # below the guide's 3 s readiness probe timeout


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _database_ok(resources: Resources) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return await resources.pool.fetchval("SELECT 1") == 1
    except Exception as exc:  # any failure means "not available"; the reason is not the probe's business
        _log_check_failure("database", exc)
        return False


async def _redis_ok(resources: Resources) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            return bool(await resources.redis.ping())
    except Exception as exc:
        _log_check_failure("redis", exc)
        return False


def _log_check_failure(check: str, exc: Exception) -> None:
    if is_unavailable(exc):  # down, unreachable or slow: what the probe is there to see
        log.debug("health check failed", extra={"check": check, "error": type(exc).__name__})
    else:  # not an outage: a bug must not hide behind a 503
        log.exception("health check failed unexpectedly", extra={"check": check})


@router.get("")
async def health(resources: ResourcesDep) -> dict:
    return {
        "status": "healthy",
        "timestamp": _timestamp(),
        "version": resources.settings.app_version,
        "service": "admin-api",
    }


@router.get("/db")
async def health_db(resources: ResourcesDep) -> JSONResponse:
    if await _database_ok(resources):
        return JSONResponse(
            {
                "status": "healthy",
                "database": "connected",
                "timestamp": _timestamp(),
                "db_name": resources.settings.database_name,
            }
        )
    return JSONResponse(
        {
            "status": "unhealthy",
            "database": "disconnected",
            "timestamp": _timestamp(),
            "error": "Database connection failed",
        },
        status_code=503,
    )


@router.get("/ready")
async def health_ready(resources: ResourcesDep) -> JSONResponse:
    database_ok, redis_ok = await asyncio.gather(_database_ok(resources), _redis_ok(resources))
    application_ok = not resources.shutting_down.is_set()
    checks = {
        "database": "ok" if database_ok else "failed",
        "application": "ok" if application_ok else "failed",
        "redis": "ok" if redis_ok else "failed",  # sessions live there: no Redis, no logged-in user
    }
    if database_ok and redis_ok and application_ok:
        return JSONResponse({"status": "ready", "timestamp": _timestamp(), "checks": checks})
    if not database_ok:
        error = "Database not available"
    elif not redis_ok:
        error = "Redis not available"
    else:
        error = "Application shutting down"
    return JSONResponse(
        {"status": "not_ready", "timestamp": _timestamp(), "checks": checks, "error": error}, status_code=503
    )


@router.get("/live")
async def health_live() -> dict:
    return {"status": "alive", "timestamp": _timestamp(), "uptime": "application is running"}
