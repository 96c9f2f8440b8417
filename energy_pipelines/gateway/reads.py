"""The 24-hour summary read path of the gateway: a bounded asyncpg pool, transient errors retried.

Requests wait for one of `db_pool_size` connections instead of opening more: the connections
and the lock table of PostgreSQL are shared with the loader, and on a small machine more
concurrent statements only queue inside the server instead of here. The statement and the
JSON are those of the CLI (`analytics.performance`), so both answer alike.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from datetime import datetime
from typing import Any

import asyncpg

from energy_pipelines.analytics.performance import PERFORMANCE_SQL, summary_from_row
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.load.database import resolve_database_url

log = logging.getLogger(__name__)

# Names the pool's sessions in pg_stat_activity (operators, and the tests that count them).
APPLICATION_NAME = "energy-pipelines-gateway"
# Worth another try on a fresh or the same connection: the server was short of a resource
# (class 53: out of shared memory, too many connections), the statement was cancelled (57014),
# the transaction lost a race (40001, 40P01) or a lock wait (55P03), the server is shutting
# down or starting (57P01-57P03), or the connection broke (class 08).
_TRANSIENT_STATES = frozenset({"57014", "57P01", "57P02", "57P03", "40001", "40P01", "55P03"})
_TRANSIENT_CLASSES = frozenset({"53", "08"})
_FIRST_BACKOFF_SECONDS = 0.05
_CONNECT_TIMEOUT_SECONDS = 10.0
_CLOSE_TIMEOUT_SECONDS = 5.0


class DatabaseUnavailable(Exception):
    """The database could not answer now; the message is the reason the 503 gives."""


def is_transient(exc: BaseException) -> bool:
    """Whether the same statement may well succeed if sent again shortly."""
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state in _TRANSIENT_STATES or state[:2] in _TRANSIENT_CLASSES
    if isinstance(exc, asyncpg.exceptions.OutdatedSchemaCacheError):
        return True  # a migration replaced a type asyncpg had cached: the next try re-reads it
    # A socket that broke or never opened, or a connection asyncpg already knows is closed (but
    # not a value asyncpg refused to encode, which is also an InterfaceError).
    return isinstance(exc, OSError) or (
        isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, ValueError)
    )


def describe(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    state = getattr(exc, "sqlstate", None)
    return f"{text} (SQLSTATE {state})" if state else text


def server_settings(config: GatewayConfig) -> dict[str, str]:
    """Sent with each pool connection's startup packet, so they cost no extra round trip."""
    return {
        "application_name": APPLICATION_NAME,
        # Compiling these small queries costs more than running them.
        "jit": "off",
        "statement_timeout": str(max(1, round(config.db_statement_timeout * 1000))),
        # asyncpg prepares every statement: a generic plan would not prune history's partitions
        # when planned and would lock every leaf, so each call is planned with its values.
        "plan_cache_mode": "force_custom_plan",
    }


class SummaryReader:
    """One pool per gateway, opened on the first summary request (a gateway that only takes
    POSTs never needs a database)."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self._rules = config.settings.evidence
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def summary(self, vehicle_id: str, as_of: datetime) -> dict[str, Any]:
        """The JSON summary; UnknownVehicle, DatabaseUnavailable, or a non-transient
        asyncpg.PostgresError (such as a database without the function yet)."""
        record = await self._fetch((vehicle_id, as_of, *self._rules.parameters()))
        return summary_from_row(dict(record), vehicle_id)

    async def _pool_now(self) -> asyncpg.Pool:
        async with self._opening:
            if self._pool is None:
                # May start the embedded server: not on the event loop's thread.
                url = await asyncio.to_thread(resolve_database_url, self._config.settings)
                self._pool = await asyncpg.create_pool(
                    url,
                    min_size=0,  # connections open on demand, so a down server fails a request
                    max_size=self._config.db_pool_size,
                    timeout=_CONNECT_TIMEOUT_SECONDS,
                    server_settings=server_settings(self._config),
                )
            return self._pool

    async def _fetch(self, args: tuple[Any, ...]) -> asyncpg.Record:
        pool = self._pool or await self._pool_now()
        started = time.monotonic()
        delay = _FIRST_BACKOFF_SECONDS
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._fetch_once(pool, args)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                # Retries stay within about one statement timeout: a statement that ran into
                # it is not sent again, one cancelled or refused at once is.
                pause = delay * random.uniform(1.0, 2.0)
                spent = time.monotonic() - started + pause
                if attempt > self._config.db_retries or spent > self._config.db_statement_timeout:
                    raise DatabaseUnavailable(
                        f"database unavailable after {attempt} attempt(s): {describe(exc)}"
                    ) from exc
                log.warning("summary attempt %d failed, retrying: %s", attempt, describe(exc))
                await asyncio.sleep(pause)
                delay *= 2

    async def _fetch_once(self, pool: asyncpg.Pool, args: tuple[Any, ...]) -> asyncpg.Record:
        timeout = self._config.db_acquire_timeout
        waited = time.monotonic()
        try:
            conn = await pool.acquire(timeout=timeout)
        except TimeoutError as exc:
            if time.monotonic() - waited < timeout:
                raise  # opening a connection timed out: a transient error like a refusal
            raise DatabaseUnavailable(
                f"no database connection came free within {timeout:g} s"
                f" (all {self._config.db_pool_size} busy)"
            ) from exc
        try:
            return await conn.fetchrow(PERFORMANCE_SQL, *args)
        finally:
            await pool.release(conn)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT_SECONDS)
        except TimeoutError:
            pool.terminate()
