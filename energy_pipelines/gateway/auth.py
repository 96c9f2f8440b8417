"""The bearer-token dependency of the ingestion routes (ENERGY_GATEWAY_TOKEN).

Declared on the router when a token is configured, it runs before the body is read, and, being
an HTTPBearer, puts the scheme and each route's security requirement in the OpenAPI document.
"""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.security import HTTPBearer

from energy_pipelines.gateway.errors import GatewayError

SCHEME_NAME = "bearerToken"
UNAUTHORIZED = "a valid bearer token is required (Authorization: Bearer <token>)"


class BearerToken(HTTPBearer):
    """Lets a request through only with `Authorization: Bearer <token>` (any case of the
    scheme, spaces around the token ignored); otherwise 401 with WWW-Authenticate: Bearer."""

    def __init__(self, token: str) -> None:
        super().__init__(scheme_name=SCHEME_NAME, auto_error=False)
        self._expected = token.encode()

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        # HTTPBearer's own parsing builds a pydantic model a request; this is the same rule.
        # Header values arrive decoded as Latin-1: encoded back, they are the bytes sent.
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        # Constant time, so the answer's timing does not tell how much of a guess was right.
        candidate = given.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
        if not candidate or not hmac.compare_digest(candidate, self._expected):
            raise GatewayError(401, UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
