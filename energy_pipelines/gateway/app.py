"""The original HTTP API (FastAPI) on top of landing: ingestion posts go to the durable spool,
the performance summary comes from the same function as the CLI."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

import asyncpg
from fastapi import FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from energy_pipelines.analytics.performance import UnknownVehicle, parse_as_of
from energy_pipelines.contract import CORRELATION, METER, VEHICLE, Stream
from energy_pipelines.gateway import openapi as doc
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.gateway.reads import DatabaseUnavailable, SummaryReader
from energy_pipelines.gateway.shape import ShapeError, records_of_body
from energy_pipelines.gateway.spool import Spool, SpoolUnavailable
from energy_pipelines.validate.ids import id_rule_broken

log = logging.getLogger(__name__)

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    503: "Service Unavailable",
}
# The window must stay within what Python's datetime can hold on the way back. No reading is
# older than year 2000 (a validation rule), so clamping changes no number, only the window shown.
_EARLIEST_AS_OF = datetime(1, 1, 2, tzinfo=UTC)
_LATEST_AS_OF = datetime(9999, 12, 31, tzinfo=UTC)
PERFORMANCE_PATH = "/v1/analytics/performance/{vehicleId}"


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    reason = _REASONS.get(status) or HTTPStatus(status).phrase
    body = {"statusCode": status, "error": reason, "message": message}
    return JSONResponse({**body, **extra}, status_code=status, headers=headers)


class BodyTooSlow(Exception):
    """The body did not arrive within the read timeout."""


async def _read_limited(request: Request, limit: int, timeout: float) -> bytes | None:
    """The body, or None once it grows past `limit` (chunked bodies have no Content-Length).
    BodyTooSlow when it has not all arrived `timeout` seconds after the head."""
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return None
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTooSlow from None
    return b"".join(chunks)


def _clamped_utc(when: datetime) -> datetime:
    try:
        utc = when.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is in year 0 in UTC
        return _EARLIEST_AS_OF if when.year < 5000 else _LATEST_AS_OF
    return min(max(utc, _EARLIEST_AS_OF), _LATEST_AS_OF)


def create_app(config: GatewayConfig | None = None) -> FastAPI:
    config = config or GatewayConfig.from_env()
    spool = Spool(config)
    reader = SummaryReader(config)
    expected_auth = f"Bearer {config.token}".encode() if config.token else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Recovery lands what an earlier run left before the first request is accepted.
        await asyncio.to_thread(spool.open)
        try:
            yield
        finally:
            await asyncio.to_thread(spool.close)
            await reader.close()

    app = FastAPI(
        title="Energy ingestion gateway",
        version="1.0.0",
        description=(
            "The original ingestion API on top of landing storage: accepted records are "
            "fsynced to a spool, rolled into Parquet landing files and loaded by the pipeline."
        ),
        lifespan=lifespan,
    )
    app.state.spool = spool
    app.state.config = config

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        # Unknown paths and methods answer in the same JSON shape as every other error.
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    def authorized(request: Request) -> bool:
        if expected_auth is None:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        candidate = f"Bearer {token.strip()}".encode() if scheme.lower() == "bearer" else b""
        return hmac.compare_digest(candidate, expected_auth)

    async def ingest(request: Request, stream: Stream) -> Response:
        if not authorized(request):
            return error_response(
                401,
                "a valid bearer token is required (Authorization: Bearer <token>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        limit = config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return error_response(413, f"the body is larger than {limit} bytes")
        try:
            body = await _read_limited(request, limit, config.read_timeout_seconds)
        except BodyTooSlow:
            return error_response(
                408,
                f"the body did not arrive within {config.read_timeout_seconds:g} s",
                headers={"Connection": "close"},
            )
        if body is None:
            return error_response(413, f"the body is larger than {limit} bytes")
        try:
            records = records_of_body(body, stream)
        except ShapeError as exc:
            return error_response(
                400,
                exc.message,
                errors=[p.as_json() for p in exc.problems],
                errorCount=exc.total,
            )
        if records:
            # Newlines in valid JSON are whitespace, so the body fits on one spool line as is.
            line = body.replace(b"\n", b" ") + b"\n"
            try:
                await spool[stream.name].append(line, len(records))
            except SpoolUnavailable as exc:
                return error_response(503, str(exc), headers={"Retry-After": "1"})
        return Response(
            b'{"accepted":%d}' % len(records), status_code=202, media_type="application/json"
        )

    security = [{"bearerToken": []}] if config.token else None

    def ingestion_route(stream: Stream, path: str, summary: str) -> None:
        async def handler(request: Request) -> Response:
            return await ingest(request, stream)

        handler.__name__ = f"ingest_{stream.name}"
        extra: dict[str, Any] = doc.ingestion_request_body(stream)
        if security:
            extra["security"] = security
        app.post(
            path,
            status_code=202,
            summary=summary,
            tags=["ingestion"],
            responses=doc.ingestion_responses(bool(security)),
            openapi_extra=extra,
            response_class=Response,
        )(handler)

    ingestion_route(METER, "/v1/ingestion/meter", "Meter readings (one object or an array)")
    ingestion_route(VEHICLE, "/v1/ingestion/vehicle", "Vehicle readings (one object or an array)")
    ingestion_route(
        CORRELATION, "/v1/ingestion/correlate", "Meter-vehicle pairings (one object or an array)"
    )

    @app.get(
        PERFORMANCE_PATH,
        tags=["analytics"],
        summary="24-hour performance summary of one vehicle (as `energy-pipelines performance`)",
        response_class=JSONResponse,
        responses={
            200: {"description": "The summary", "content": doc.json_content("PerformanceSummary")},
            400: {"description": "asOf is not ISO-8601", "content": doc.json_content("Error")},
            404: {"description": "Unknown vehicle", "content": doc.json_content("Error")},
            503: {"description": "Database unavailable", "content": doc.json_content("Error")},
        },
    )
    async def performance(
        vehicle_id: Annotated[str, Path(alias="vehicleId")],
        as_of: Annotated[
            str | None, Query(alias="asOf", description="Window end, ISO-8601 (default: now)")
        ] = None,
    ) -> JSONResponse:
        when = datetime.now(UTC)
        if as_of:
            try:
                when = _clamped_utc(parse_as_of(as_of))
            except ValueError:
                return error_response(
                    400, f"asOf {as_of!r} is not an ISO-8601 time such as 2026-02-11T10:30:00Z"
                )
        # An id the file contract forbids (NUL, other control characters, too long, blank)
        # never reached history: unknown without asking the database.
        broken = id_rule_broken(vehicle_id)
        if broken is not None:
            return error_response(404, f"vehicle {vehicle_id!r} is unknown: an id {broken}")
        try:
            summary = await reader.summary(vehicle_id, when)
        except UnknownVehicle as exc:
            return error_response(404, str(exc))
        except (ConnectionError, DatabaseUnavailable) as exc:
            return error_response(503, str(exc), headers={"Retry-After": "1"})
        except asyncpg.PostgresError as exc:  # e.g. a database not migrated yet
            log.exception("performance summary failed")
            return error_response(503, "database error: " + str(exc).splitlines()[0])
        return JSONResponse(summary)

    @app.get(
        "/health",
        tags=["operations"],
        summary="Liveness and spool state",
        response_class=JSONResponse,
        responses={200: {"description": "Up", "content": doc.json_content("Health")}},
    )
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok", "spool": spool.status()})

    def custom_openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for parameter in schema["paths"][PERFORMANCE_PATH]["get"]["parameters"]:
                if parameter["name"] == "asOf":  # a time, not FastAPI's "string or null"
                    parameter["schema"] = {"type": "string", "format": "date-time"}
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(doc.COMPONENT_SCHEMAS)
            if security:
                components["securitySchemes"] = {
                    "bearerToken": {"type": "http", "scheme": "bearer"}
                }
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = custom_openapi  # type: ignore[method-assign]
    return app
