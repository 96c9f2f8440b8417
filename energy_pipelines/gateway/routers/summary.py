"""GET /v1/analytics/performance/{vehicleId}: the 24-hour summary, as the CLI prints it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from energy_pipelines.analytics.performance import UnknownVehicle, parse_as_of
from energy_pipelines.gateway import openapi as doc
from energy_pipelines.gateway.errors import GatewayError
from energy_pipelines.gateway.reads import DatabaseUnavailable
from energy_pipelines.gateway.state import Gateway
from energy_pipelines.validate.ids import id_rule_broken

log = logging.getLogger(__name__)

PERFORMANCE_PATH = "/v1/analytics/performance/{vehicleId}"
# The window must stay within what Python's datetime can hold on the way back. No reading is
# older than year 2000 (a validation rule), so clamping changes no number, only the window shown.
_EARLIEST_AS_OF = datetime(1, 1, 2, tzinfo=UTC)
_LATEST_AS_OF = datetime(9999, 12, 31, tzinfo=UTC)

router = APIRouter(tags=["analytics"])


def _clamped_utc(when: datetime) -> datetime:
    try:
        utc = when.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00+05:00 is in year 0 in UTC
        return _EARLIEST_AS_OF if when.year < 5000 else _LATEST_AS_OF
    return min(max(utc, _EARLIEST_AS_OF), _LATEST_AS_OF)


def window_end(as_of: str | None) -> datetime:
    """The end of the summary's window: `as_of` (ISO-8601, UTC without an offset), or now."""
    if not as_of:
        return datetime.now(UTC)
    try:
        return _clamped_utc(parse_as_of(as_of))
    except ValueError:
        raise GatewayError(
            400, f"asOf {as_of!r} is not an ISO-8601 time such as 2026-02-11T10:30:00Z"
        ) from None


@router.get(
    PERFORMANCE_PATH,
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
    request: Request,
    vehicle_id: Annotated[str, Path(alias="vehicleId")],
    as_of: Annotated[
        str | None, Query(alias="asOf", description="Window end, ISO-8601 (default: now)")
    ] = None,
) -> JSONResponse:
    when = window_end(as_of)
    # An id the file contract forbids (NUL, other control characters, too long, blank)
    # never reached history: unknown without asking the database.
    broken = id_rule_broken(vehicle_id)
    if broken is not None:
        raise GatewayError(404, f"vehicle {vehicle_id!r} is unknown: an id {broken}")
    # The app's state directly, not a dependency: solving one costs about 20 us a request.
    gateway: Gateway = request.app.state.gateway
    try:
        summary = await gateway.reader.summary(vehicle_id, when)
    except UnknownVehicle as exc:
        raise GatewayError(404, str(exc)) from exc
    except (ConnectionError, DatabaseUnavailable) as exc:
        raise GatewayError(503, str(exc), headers={"Retry-After": "1"}) from exc
    except asyncpg.PostgresError as exc:  # e.g. a database not migrated yet
        log.exception("performance summary failed")
        raise GatewayError(503, "database error: " + str(exc).splitlines()[0]) from exc
    return JSONResponse(summary)
