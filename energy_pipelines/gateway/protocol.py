"""uvicorn's HTTP protocol with a deadline for a request's head.

uvicorn closes a keep-alive connection that stays idle after a response (timeout_keep_alive),
but not one that never finishes sending a request: a client that connects and sends nothing,
or trickles its headers a byte at a time, holds the connection (and a file descriptor) forever.
Here the head of every request must arrive within the read timeout of its first byte (of the
connection, for the first request), or the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol


def protocol_with_head_deadline(seconds: float) -> type[asyncio.Protocol]:
    """A protocol class (uvicorn's `http=`) that closes a connection whose request head has not
    arrived `seconds` after it began."""

    class HeadDeadlineProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        _head_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            waiting_for_head = self._between_requests()
            if waiting_for_head and self._head_deadline is None:
                self._arm()
            super().data_received(data)
            if waiting_for_head and not self._between_requests():
                self._disarm()  # the head is complete: the app reads the body with its own limit

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            cycle = getattr(self, "cycle", None)
            return cycle is None or cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._head_deadline = asyncio.get_running_loop().call_later(seconds, self._expire)

        def _disarm(self) -> None:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
                self._head_deadline = None

        def _expire(self) -> None:
            self._head_deadline = None
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

    return HeadDeadlineProtocol
