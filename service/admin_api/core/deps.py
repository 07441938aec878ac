"""FastAPI dependencies that hand out the app's resources (no module-level globals anywhere).

They are `async def` on purpose: FastAPI runs plain `def` dependencies in a worker thread, a thread
hop per dependency per request for what is an attribute lookup.
"""

from __future__ import annotations

from typing import Annotated

import asyncpg
from fastapi import Depends, Request
from redis.asyncio import Redis

from admin_api.core.metrics import Metrics
from admin_api.core.resources import Resources
from admin_api.settings import Settings


def resources_of(request: Request) -> Resources:
    return request.app.state.resources


async def get_resources(request: Request) -> Resources:
    return resources_of(request)


async def get_settings(request: Request) -> Settings:
    return resources_of(request).settings


async def get_pool(request: Request) -> asyncpg.Pool:
    return resources_of(request).pool


async def get_redis(request: Request) -> Redis:
    return resources_of(request).redis


async def get_metrics(request: Request) -> Metrics:
    return resources_of(request).metrics


ResourcesDep = Annotated[Resources, Depends(get_resources)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[asyncpg.Pool, Depends(get_pool)]
RedisDep = Annotated[Redis, Depends(get_redis)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
