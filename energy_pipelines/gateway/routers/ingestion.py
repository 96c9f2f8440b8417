"""POST /v1/ingestion/{meter,vehicle,correlate}: records of the contract, one object or an
array, answered 202 only once they are durable in the spool.

Bodies are read and checked by hand, not parsed by FastAPI into models, for speed and so the
spool can keep their bytes: the size limit counts while reading (a chunked body has no
Content-Length), the body must arrive within the read timeout, and the shape check names every
bad item and field. The token dependency, when configured, runs before any of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response

from energy_pipelines.contract import CORRELATION, METER, VEHICLE, Stream
from energy_pipelines.gateway import openapi as doc
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.gateway.errors import GatewayError
from energy_pipelines.gateway.shape import records_of_body
from energy_pipelines.gateway.spool import SpoolUnavailable
from energy_pipelines.gateway.state import Gateway

INGESTION_ROUTES: tuple[tuple[Stream, str, str], ...] = (
    (METER, "/v1/ingestion/meter", "Meter readings (one object or an array)"),
    (VEHICLE, "/v1/ingestion/vehicle", "Vehicle readings (one object or an array)"),
    (CORRELATION, "/v1/ingestion/correlate", "Meter-vehicle pairings (one object or an array)"),
)


@dataclass(frozen=True)
class AcceptedBody:
    line: bytes  # the body as one spool line
    records: int


def _too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"the body is larger than {limit} bytes")


async def read_body(request: Request, config: GatewayConfig) -> bytes:
    """The whole body, or GatewayError: 413 once it grows past the limit, 408 when it has not
    all arrived within the read timeout of the head."""
    limit = config.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(config.read_timeout_seconds):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise GatewayError(
            408,
            f"the body did not arrive within {config.read_timeout_seconds:g} s",
            headers={"Connection": "close"},
        ) from None
    return b"".join(chunks)


class IngestionBody:
    """The body of a POST of `stream` records, read within the limits, its shape checked (400
    names every problem) and, when the gateway checks values, its values (422)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream

    async def __call__(self, request: Request, gateway: Gateway) -> AcceptedBody:
        body = await read_body(request, gateway.config)
        records = records_of_body(body, self.stream)
        value_check = gateway.value_checks.get(self.stream.name)
        if value_check is not None and records:
            value_check.check(records, datetime.now(UTC))
        # Newlines in valid JSON are whitespace, so the body fits on one spool line as is.
        line = body.replace(b"\n", b" ") + b"\n" if records else b""
        return AcceptedBody(line, len(records))


async def spool_body(gateway: Gateway, stream: Stream, body: AcceptedBody) -> Response:
    if body.records:
        try:
            await gateway.spool[stream.name].append(body.line, body.records)
        except SpoolUnavailable as exc:
            raise GatewayError(503, str(exc), headers={"Retry-After": "1"}) from exc
    return Response(
        b'{"accepted":%d}' % body.records, status_code=202, media_type="application/json"
    )


def _endpoint(stream: Stream) -> Callable[..., Awaitable[Response]]:
    read = IngestionBody(stream)

    # The body is read by a plain call, not a FastAPI dependency: solving one costs about
    # 20-35 us a request, a fifth of what a single-record POST costs the gateway in all.
    async def ingest(request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        return await spool_body(gateway, stream, await read(request, gateway))

    return ingest


router = APIRouter(tags=["ingestion"])
for _stream, _path, _summary in INGESTION_ROUTES:
    router.add_api_route(
        _path,
        _endpoint(_stream),
        methods=["POST"],
        name=f"ingest_{_stream.name}",
        status_code=202,
        summary=_summary,
        responses=doc.ingestion_responses(),
        openapi_extra=doc.ingestion_request_body(_stream),
        response_class=Response,
    )
