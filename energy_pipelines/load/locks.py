"""The loaders' locks: a stream's row of loader_locks (sql/020) and its hours' rows of
loader_hour_locks (sql/025). Batches of one stream that write different UTC hours load side by
side; work on the whole stream waits for them all."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from energy_pipelines.load.errors import sqlstate_of
from energy_pipelines.settings import lock_timeout_seconds

_LOCK_NOT_AVAILABLE = "55P03"


class StreamLockTimeout(Exception):
    """Another session held the stream's lock longer than lock_timeout. Transient: nothing of
    the file was written, it stays in landing."""

    sqlstate = _LOCK_NOT_AVAILABLE


@dataclass(frozen=True)
class LockHolder:
    pid: int
    role: str | None
    application_name: str | None
    client: str | None
    since: datetime | None  # the holder's transaction start (NULL when the role may not see it)
    state: str | None

    def describe(self) -> str:
        since = self.since.isoformat(timespec="seconds") if self.since else "a time not visible"
        return (
            f"pid {self.pid}, role {self.role or '?'}, application_name "
            f"{self.application_name or '(none)'!r}, client {self.client or 'local socket'}, "
            f"in a transaction since {since}, state {self.state or 'not visible'}"
        )


def lock_stream(cur: Any, stream: str, timeout_seconds: float | None = None) -> None:
    """Work on the whole stream (the key builds of its new tables): its row of loader_locks FOR
    UPDATE, so every batch of the stream waits, and it waits for every batch in flight. The
    first statement of its transaction.

    Locking a row needs UPDATE on its table: only roles with it (the loader, the owner) can take
    the lock (sql/020). The wait, and every later lock wait of the transaction, is bounded by
    lock_timeout (ENERGY_LOCK_TIMEOUT_SECONDS); when it runs out the error names the session
    holding the lock."""
    _take(
        cur,
        stream,
        timeout_seconds,
        [("SELECT stream FROM loader_locks WHERE stream = $1 FOR UPDATE", (stream,))],
    )


def lock_hours(
    cur: Any, stream: str, hours: list[datetime], timeout_seconds: float | None = None
) -> None:
    """A batch's writes: the stream's row FOR SHARE, then the rows of the UTC hours it writes FOR
    UPDATE, in hour order (sql/025). Batches of other hours go on side by side; a batch of one of
    these hours waits, and duplicate and conflict checks against history are exact, since every
    key lies in its hour. A batch without rows locks no hour. The first statements of its
    transaction, bounded and explained like lock_stream's."""
    ordered = sorted(set(hours))
    literal = "{" + ",".join(h.isoformat() for h in ordered) + "}"
    statements: list[tuple[str, tuple[Any, ...]]] = [
        ("SELECT stream FROM loader_locks WHERE stream = $1 FOR SHARE", (stream,))
    ]
    if ordered:
        statements += [
            (
                "INSERT INTO loader_hour_locks (stream, hour)"
                " SELECT $1, h FROM unnest($2::timestamptz[]) AS h ORDER BY h"
                " ON CONFLICT DO NOTHING",
                (stream, literal),
            ),
            (
                "SELECT hour FROM loader_hour_locks WHERE stream = $1"
                " AND hour = ANY($2::timestamptz[]) ORDER BY hour FOR UPDATE",
                (stream, literal),
            ),
        ]
    _take(cur, stream, timeout_seconds, statements)


def _take(
    cur: Any,
    stream: str,
    timeout_seconds: float | None,
    statements: list[tuple[str, tuple[Any, ...]]],
) -> None:
    seconds = lock_timeout_seconds() if timeout_seconds is None else timeout_seconds
    cur.execute(
        "SELECT set_config('lock_timeout', $1, true)", (f"{max(1, round(seconds * 1000))}ms",)
    )
    found: list[Any] = []
    try:
        for number, (sql, params) in enumerate(statements):
            cur.execute(sql, params)
            rows = cur.fetchall()
            found = rows if number == 0 else found
    except Exception as error:
        if sqlstate_of(error) != _LOCK_NOT_AVAILABLE:
            raise
        # The locks are the transaction's first statements: nothing is lost by ending it
        # here, and a new one can ask who holds the lock.
        cur.connection.rollback()
        holder = stream_lock_holder(cur, stream)
        cur.connection.rollback()
        who = holder.describe() if holder else "a session that has just ended"
        raise StreamLockTimeout(
            f"the {stream} stream's loader lock was not free within {seconds:g} s "
            f"(ENERGY_LOCK_TIMEOUT_SECONDS); held by {who}. Nothing was written; the files stay "
            f"in landing (SQLSTATE: {_LOCK_NOT_AVAILABLE})"
        ) from None
    if not found:
        raise RuntimeError(f"loader_locks has no row for {stream}: run energy-pipelines db upgrade")


def stream_lock_holder(cur: Any, stream: str) -> LockHolder | None:
    """The session whose transaction holds the stream's lock row FOR UPDATE, or else one of its
    hours' rows, if any. A row locked by one transaction carries its id in xmax, and that
    transaction holds a lock on its own id while it lasts. (Rows shared by several batches
    carry a multixact instead: their holders are not named.)"""
    cur.execute(
        """
        SELECT a.pid, a.usename::text, a.application_name, host(a.client_addr), a.xact_start,
               a.state
          FROM (SELECT xmax, 0 AS rank FROM loader_locks WHERE stream = $1
                UNION ALL
                SELECT xmax, 1 FROM loader_hour_locks WHERE stream = $1) k
          JOIN pg_locks l ON l.locktype = 'transactionid' AND l.transactionid = k.xmax
               AND l.granted AND l.mode = 'ExclusiveLock'
          JOIN pg_stat_activity a ON a.pid = l.pid
         ORDER BY k.rank
         LIMIT 1
        """,
        (stream,),
    )
    row = cur.fetchone()
    if row is None:
        return None
    pid, role, application_name, client, since, state = row
    return LockHolder(int(pid), role, application_name, client, since, state)
