"""The batches of one stream's run loaded on a pool of PostgreSQL sessions.

Each batch is one transaction (batch.py) that locks the UTC hours its rows fall on
(load/locks.py): batches of different hours load side by side, on up to
`Settings.load_sessions` sessions. A batch starts writing only after every earlier batch of
the run that shares one of its hours has ended, so a reading repeated across files is kept
from the file that comes first in path order, exactly as when the batches load one after the
other; a batch whose hours are unknown before it loads (a large file read as it loads) waits
for every earlier batch, and every later one waits for it. At most `size` batches are in flight,
and at most `Settings.rows_in_flight` of their rows in the whole process (ROWS_IN_FLIGHT): that,
not the sessions, bounds the memory.

A session the server ends while its batch loads (or whose connection drops) loses that batch's
transaction: the batch is loaded again on a new session, and the other batches go on.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from energy_pipelines.contract import Stream
from energy_pipelines.ingest.files import FileOutcome
from energy_pipelines.load.database import Connection, connect, reconnect
from energy_pipelines.load.errors import SESSION_TRIES, session_lost

log = logging.getLogger(__name__)

# A batch's hours, or None when they are not known before it loads.
Hours = frozenset[datetime] | None
# Loads one batch on a session, holding locks on the given hours (None: the whole stream).
LoadOne = Callable[[Connection, Hours], list[FileOutcome]]


class RowBudget:
    """Rows of batches in flight in this process, across streams: a batch waits for its rows'
    share before it is prepared, and a batch larger than the whole budget runs alone."""

    def __init__(self) -> None:
        self._free = 0
        self._total = 0
        self._changed = threading.Condition()

    def acquire(self, rows: int, total: int) -> int:
        with self._changed:
            if total != self._total:  # the setting of the first run in this process, or a new one
                self._free += total - self._total
                self._total = total
            share = min(max(rows, 1), total)
            self._changed.wait_for(lambda: self._free >= share)
            self._free -= share
            return share

    def release(self, share: int) -> None:
        with self._changed:
            self._free += share
            self._changed.notify_all()


ROWS_IN_FLIGHT = RowBudget()


class _Batch:
    def __init__(self, earlier: list[_Batch]) -> None:
        self.earlier = earlier
        self.hours: Future[Hours] = Future()
        self.ended = threading.Event()


class BatchPool:
    """Submit batches in path order; `results()` gives their outcomes in that order."""

    def __init__(
        self, conn: Connection, url: str, size: int, stream: Stream, rows_in_flight: int
    ) -> None:
        self.url, self.size, self.stream = url, max(1, size), stream
        self.rows_in_flight = rows_in_flight
        # The caller's session first; more are opened as batches in flight need them.
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()
        self._idle.put(conn)
        self._caller = conn
        # The caller's session was lost (and replaced here): the caller needs a new one.
        self.callers_session_lost = False
        self._opened: list[Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.size)
        self._executor = ThreadPoolExecutor(self.size, thread_name_prefix=f"load-{stream.name}")
        self._in_flight: list[_Batch] = []
        self._futures: list[Future[list[FileOutcome]]] = []
        self._failed = threading.Event()
        # Seconds batches waited for earlier batches of their hours (their turn).
        self.turn_wait_seconds = 0.0

    def submit(self, rows: int, prepare_hours: Callable[[], Hours], load: LoadOne) -> bool:
        """Queue a batch of `rows` rows: `prepare_hours` readies its rows and says which hours
        they fall on, `load` writes it. False, and nothing queued, once a batch has failed."""
        self._slots.acquire()
        share = ROWS_IN_FLIGHT.acquire(rows, self.rows_in_flight)
        if self._failed.is_set():
            ROWS_IN_FLIGHT.release(share)
            self._slots.release()
            return False
        self._in_flight = [b for b in self._in_flight if not b.ended.is_set()]
        batch = _Batch(list(self._in_flight))
        self._in_flight.append(batch)
        self._futures.append(self._executor.submit(self._run, batch, prepare_hours, load, share))
        return True

    def results(self) -> list[FileOutcome]:
        """Every batch's outcomes, in submission order; the first failure once all ended."""
        outcomes: list[FileOutcome] = []
        failure: BaseException | None = None
        for future in self._futures:
            try:
                outcomes.extend(future.result())
            except BaseException as error:  # re-raised below, once every batch has ended
                failure = failure or error
        if failure is not None:
            raise failure
        return outcomes

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for conn in self._opened:
            with contextlib.suppress(Exception):
                conn.close()

    def __enter__(self) -> BatchPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(
        self, batch: _Batch, prepare_hours: Callable[[], Hours], load: LoadOne, share: int
    ) -> list:
        try:
            try:
                hours = prepare_hours()
            except BaseException:
                batch.hours.set_result(None)  # later batches wait for this one to end
                raise
            batch.hours.set_result(hours)
            started = time.perf_counter()
            for earlier in batch.earlier:
                if _collide(hours, earlier.hours.result()):
                    earlier.ended.wait()
            with self._lock:
                self.turn_wait_seconds += time.perf_counter() - started
            return self._load(hours, load)
        except BaseException:
            self._failed.set()
            raise
        finally:
            batch.ended.set()
            ROWS_IN_FLIGHT.release(share)
            self._slots.release()

    def _load(self, hours: Hours, load: LoadOne) -> list[FileOutcome]:
        conn = self._session()
        for attempt in range(1, SESSION_TRIES + 1):
            try:
                outcomes = load(conn, hours)
                self._idle.put(conn)
                return outcomes
            except Exception as error:
                if attempt == SESSION_TRIES or not session_lost(error):
                    if not session_lost(error):
                        self._idle.put(conn)
                    elif conn is self._caller:
                        self.callers_session_lost = True
                    raise
                log.warning("a %s batch lost its session (%s); again", self.stream.name, error)
                conn = self._replace(conn)
        raise AssertionError("unreachable")

    def _session(self) -> Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            conn = connect(self.url)
            with self._lock:
                self._opened.append(conn)
            return conn

    def _replace(self, conn: Connection) -> Connection:
        if conn is self._caller:
            self.callers_session_lost = True  # the caller's to close
            fresh = connect(self.url)
        else:
            fresh = reconnect(conn, self.url)
        with self._lock:
            self._opened.append(fresh)
        return fresh


def _collide(hours: Hours, earlier: Hours) -> bool:
    """Whether two batches may hold the same key or content: they share an hour, or one's
    hours are unknown, or neither writes a reading (two files of one content whose rows are all
    rejected: the earlier is the one loaded, the later its duplicate)."""
    if hours is None or earlier is None:
        return True
    return not hours.isdisjoint(earlier) or not (hours or earlier)
