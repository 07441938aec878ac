"""The baseline the service is measured against: a bare FastAPI app on the same uvicorn settings, the same
asyncpg pool and Redis client (built by the service's own functions from the same environment), answering
the same routes with nothing of ours around them: no middleware, no dependencies, no pydantic models, the
same SQL and one Redis round trip for the session.

    python -m tests.bench.bare_app serve --host 127.0.0.1 --port PORT    # environment as for admin-api serve
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from admin_api import conversations
from admin_api.auth.dependencies import SESSION_COOKIE
from admin_api.auth.sessions import KEY_PREFIX, hash_session_id
from admin_api.cli import SERVER_OPTIONS
from admin_api.core.db import create_pool
from admin_api.core.redis import create_redis
from admin_api.history import repository
from admin_api.history.cursor import decode_cursor
from admin_api.settings import Settings
from tests.support.serve import serve_arguments

PAGE = Settings.model_fields["history_messages_page_size"].default  # history/detail's page, as the service's


def _summary(row) -> dict:
    return {
        "cnvs_idt_id": row["CNVS_IDT_ID"],
        "title": row["CNVS_TTL"],
        "reg_dt": row["REG_DT"].isoformat(),
        "upd_dt": row["UPD_DT"].isoformat(),
    }


def create_bare_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.pool = await create_pool(settings)
        app.state.redis = create_redis(settings)
        yield
        await app.state.redis.aclose()
        await app.state.pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health/live")
    async def live() -> dict:
        return {"status": "alive", "timestamp": datetime.now(UTC).isoformat(), "uptime": "application is running"}

    @app.get("/api/v1/auth/me")
    async def me(request: Request) -> Response:
        raw = await request.app.state.redis.getex(
            KEY_PREFIX + hash_session_id(request.cookies.get(SESSION_COOKIE, "")), ex=settings.session_idle_seconds
        )
        if raw is None:
            return JSONResponse({"detail": "Not authenticated."}, status_code=401)
        record = json.loads(raw)
        return JSONResponse({"id": record["user_id"], "username": record["username"], "is_admin": record["is_admin"]})

    @app.post("/bare/history/list")
    async def history_list(request: Request) -> Response:
        """The page's bare queries (list + count) for the user the body names."""
        body = await request.json()
        user_id, page_size = body["user_id"], body.get("page_size", 20)
        async with request.app.state.pool.acquire() as conn:
            if body.get("cursor"):
                reg_dt, cnvs_idt_id = decode_cursor(body["cursor"])
                rows = await repository.list_after_cursor(conn, user_id, page_size + 1, reg_dt, cnvs_idt_id)
            else:
                rows = await repository.list_by_offset(conn, user_id, page_size + 1, (body["page"] - 1) * page_size)
            total = await repository.count_active(conn, user_id)
        return JSONResponse({"items": [_summary(row) for row in rows[:page_size]], "total": total})

    @app.post("/bare/history/detail")
    async def history_detail(request: Request) -> Response:
        body = await request.json()
        async with request.app.state.pool.acquire() as conn:
            row = await conversations.find_active(conn, body["cnvs_idt_id"], body["user_id"])
            newest = await repository.latest_messages(conn, body["cnvs_idt_id"], PAGE + 1)
        messages = newest[:PAGE][::-1]
        detail = _summary(row)
        detail["messages"] = [
            {
                "message_id": m["MSG_IDT_ID"],
                "role": m["ROLE_CD"],
                "content": m["MSG_CN"],
                "status": m["STTS_CD"],
                "reg_dt": m["REG_DT"].isoformat(),
            }
            for m in messages
        ]
        return JSONResponse(detail)

    return app


def main() -> None:
    args = serve_arguments()
    uvicorn.run(create_bare_app(Settings()), host=args.host, port=args.port, **SERVER_OPTIONS)


if __name__ == "__main__":
    main()
