"""Every error the gateway answers, in one JSON shape: {statusCode, error, message, ...}."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from energy_pipelines.gateway.shape import ShapeError

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    408: "Request Timeout",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    503: "Service Unavailable",
}


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    reason = _REASONS.get(status) or HTTPStatus(status).phrase
    body = {"statusCode": status, "error": reason, "message": message}
    return JSONResponse({**body, **extra}, status_code=status, headers=headers)


class GatewayError(Exception):
    """Raised by a dependency or route: the request ends with this error response."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


async def _gateway_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return error_response(exc.status, exc.message, headers=exc.headers)


async def _shape_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ShapeError)
    errors = [p.as_json() for p in exc.problems]
    return error_response(exc.status, exc.message, errors=errors, errorCount=exc.total)


async def _http_error(_: Request, exc: Exception) -> Response:
    # Unknown paths and methods answer in the same JSON shape as every other error.
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, str(exc.detail), headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(ShapeError, _shape_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
