"""GET /health: liveness and the spool's state."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from energy_pipelines.gateway import openapi as doc
from energy_pipelines.gateway.state import GatewayDep

router = APIRouter(tags=["operations"])


@router.get(
    "/health",
    summary="Liveness and spool state",
    response_class=JSONResponse,
    responses={200: {"description": "Up", "content": doc.json_content("Health")}},
)
async def health(gateway: GatewayDep) -> JSONResponse:
    return JSONResponse({"status": "ok", "spool": gateway.spool.status()})
