"""The key builds of a stream's new day and hour tables, side by side on a pool of sessions.

A new table was loaded without an index (sql/repeatable/history_partitions.sql); building its
key is a sort of its rows, and the tables of a run are independent of each other: each is built
and attached in a transaction of its own, on one of up to `sessions` sessions at once. The
caller's session holds the stream's load lock meanwhile, so no batch writes into a table while
its key is built, exactly as when one session finished them all. A table's attach commits with
its key, so a crash between two tables leaves each one either finished or still new, and the
next run finishes the rest. A session lost mid-build (the server ended it, the connection
dropped) rolls its table back; the table is built again on a new session, and the other
sessions go on.
"""

from __future__ import annotations

import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from energy_pipelines.contract import Stream
from energy_pipelines.faults import crash_point
from energy_pipelines.load.database import Connection, connect, reconnect
from energy_pipelines.load.errors import SESSION_TRIES, session_lost
from energy_pipelines.load.locks import lock_stream

log = logging.getLogger(__name__)


@dataclass
class KeyBuilds:
    """What a stream's finish did: the tables finished, in name order, and the seconds each
    session spent building (their sum over the wall time is how many ran side by side)."""

    tables: list[str] = field(default_factory=list)
    session_seconds: list[float] = field(default_factory=list)
    # Tables built again after their session was lost.
    retried: list[str] = field(default_factory=list)


def new_tables(conn: Connection, stream: Stream) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("SELECT new_tables_of($1::regclass)", (stream.table,))
        return [row[0] for row in cur.fetchall()]


def finish_new_tables(conn: Connection, url: str, stream: Stream, sessions: int) -> KeyBuilds:
    """Build the key of every new table of the stream (loaded by this run, or by one that
    stopped before its end) and attach it; on up to `sessions` sessions besides `conn`."""
    started = time.perf_counter()
    waiting_before = new_tables(conn, stream)
    conn.rollback()  # the lock below is the first statement of its transaction
    if not waiting_before:
        return KeyBuilds()  # no lock to wait for: a run that creates a table finishes it
    with conn.cursor() as cur:
        lock_stream(cur, stream.name)
    names = new_tables(conn, stream)
    builds = KeyBuilds(tables=names)
    if len(names) <= 1 or sessions <= 1:
        # One after the other in the lock's own transaction: no session to open.
        with conn.cursor() as cur:
            for name in names:
                cur.execute("SELECT finish_new_table($1::regclass, $2)", (stream.table, name))
        builds.session_seconds.append(time.perf_counter() - started)
    else:
        waiting: queue.SimpleQueue[str] = queue.SimpleQueue()
        for name in names:
            waiting.put(name)
        workers = min(sessions, len(names))
        with ThreadPoolExecutor(workers, thread_name_prefix=f"keys-{stream.name}") as pool:
            futures = [
                pool.submit(_build_from, url, stream, waiting, builds.retried)
                for _ in range(workers)
            ]
            builds.session_seconds = [future.result() for future in futures]
    conn.commit()  # the stream's lock
    if names:
        log.info("indexed and attached %s", ", ".join(names))
    return builds


def _build_from(
    url: str, stream: Stream, waiting: queue.SimpleQueue[str], retried: list[str]
) -> float:
    """Take tables from `waiting` until none is left, each in its own transaction; the
    seconds this session was busy."""
    busy = 0.0
    conn = connect(url)
    try:
        while True:
            try:
                name = waiting.get_nowait()
            except queue.Empty:
                return busy
            started = time.perf_counter()
            for attempt in range(1, SESSION_TRIES + 1):
                try:
                    with conn.cursor() as cur:
                        cur.execute(
                            "SELECT finish_new_table($1::regclass, $2)", (stream.table, name)
                        )
                    conn.commit()
                    break
                except Exception as error:
                    if attempt == SESSION_TRIES or not session_lost(error):
                        raise
                    log.warning("key build of %s lost its session (%s); again", name, error)
                    retried.append(name)
                    conn = reconnect(conn, url)
            busy += time.perf_counter() - started
            crash_point("after_key_build")
    finally:
        conn.close()
