"""The gateway's FastAPI app: the routers of ingestion, the performance summary and health, on a
spool and a summary reader the app holds for its lifetime."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI

from energy_pipelines.gateway import openapi as doc
from energy_pipelines.gateway.auth import BearerToken
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.gateway.errors import install_error_handlers
from energy_pipelines.gateway.routers import health, ingestion, summary
from energy_pipelines.gateway.state import Gateway

DESCRIPTION = (
    "The original ingestion API on top of landing storage: accepted records are "
    "fsynced to a spool, rolled into Parquet landing files and loaded by the pipeline."
)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    gateway: Gateway = app.state.gateway
    # Recovery lands what an earlier run left before the first request is accepted.
    await asyncio.to_thread(gateway.spool.open)
    try:
        yield
    finally:
        await asyncio.to_thread(gateway.spool.close)
        await gateway.reader.close()


def create_app(config: GatewayConfig | None = None) -> FastAPI:
    """The app for `config` (default: from the environment). Posts need the bearer token when
    one is configured; the app's state holds the Gateway (spool, summary reader, value checks)."""
    config = config or GatewayConfig.from_env()
    app = FastAPI(
        title="Energy ingestion gateway",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.gateway = Gateway.create(config)
    install_error_handlers(app)
    token: list[Any] = [Depends(BearerToken(config.token))] if config.token else []
    app.include_router(
        ingestion.router,
        dependencies=token,
        responses=doc.configured_ingestion_responses(config),
    )
    app.include_router(summary.router)
    app.include_router(health.router)
    doc.install(app, config)
    return app
