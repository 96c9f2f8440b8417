"""The durable spool behind the gateway's 202, and its roll into landing Parquet files.

Accepted request bodies are appended, one line per request, to the active segment of their
stream (`<spool>/<stream>/<name>.jsonl`). A committer thread per stream fdatasyncs the segment
and only then releases the requests it covers (group commit). Every N seconds or M records the
committer seals the segment and opens a new one; a roller thread turns sealed segments into
landing files in three fsynced steps (roll.py: staged hidden file, segment deleted, file
published).

After a crash, a segment that still exists is rolled again from scratch (its staged or partial
file is discarded first), and a staged file whose segment is gone is published. At every point
exactly one of segment, staged file or published file holds the records, so an accepted record
is never lost and never landed twice. Segment names carry this spool's id, so recovery only
touches its own files even when several gateways share a landing folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.gateway.roll import HTTP_FOLDER, SEGMENT_SUFFIX, SegmentRoller, fsync_dir

log = logging.getLogger(__name__)

_sync_data = getattr(os, "fdatasync", os.fsync)


class SpoolUnavailable(RuntimeError):
    """The records could not be made durable; nothing is promised, the client should retry."""


class SpoolLocked(RuntimeError):
    pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # the client went away; its records stay durable all the same
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


@dataclass(eq=False)
class Segment:
    name: str
    path: Path
    fd: int
    records: int = 0
    size: int = 0
    # Appends are numbered; `synced` is the highest number an fdatasync has covered.
    written: int = 0
    synced: int = 0
    first_at: float | None = None
    dir_synced: bool = False
    broken: bool = False
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)


class StreamSpool:
    """The spool of one stream: appends, group commit and sealing (see the module docstring)."""

    def __init__(self, spool: Spool, stream: Stream) -> None:
        self.spool = spool
        self.stream = stream
        self.folder = spool.root / stream.name
        self.roller = SegmentRoller(
            stream, self.folder, spool.config.landing_dir / stream.name / HTTP_FOLDER
        )
        self._cond = threading.Condition()
        self._active: Segment | None = None
        self._counter = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self.accepted_records = 0
        self.last_error: str | None = None

    # Names sort by creation time, so landing files are picked up in arrival order.
    def _new_name(self) -> str:
        self._counter += 1
        now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return f"{now}-{self.spool.spool_id}-{self._counter:06d}"

    def _new_segment(self) -> Segment:
        name = self._new_name()
        path = self.folder / f"{name}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        return Segment(name=name, path=path, fd=fd)

    def start(self) -> None:
        self._active = self._new_segment()
        self._thread = threading.Thread(
            target=self._commit_loop, name=f"spool-commit-{self.stream.name}", daemon=True
        )
        self._thread.start()

    async def append(self, line: bytes, records: int) -> None:
        """Append one request's body (one line) and return once it is on disk."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            segment = self._active
            if self._closing or segment is None or segment.broken:
                raise SpoolUnavailable("the gateway is shutting down or its spool failed")
            try:
                _write_all(segment.fd, line)
            except OSError as exc:
                # Cut the partial line off, or the next request's line would be glued to it.
                try:
                    os.ftruncate(segment.fd, segment.size)
                except OSError:
                    segment.broken = True
                    self._cond.notify()
                self.last_error = f"spool write failed: {exc}"
                raise SpoolUnavailable(f"the spool could not store the request: {exc}") from exc
            segment.size += len(line)
            segment.records += records
            segment.written += 1
            if segment.first_at is None:
                segment.first_at = time.monotonic()
            segment.waiters.append((segment.written, future))
            self._cond.notify()
        await future
        self.accepted_records += records

    def _seal_due(self, segment: Segment, now: float) -> bool:
        config = self.spool.config
        if segment.broken or self._closing:
            return True
        if not segment.records or segment.first_at is None:
            return False
        return (
            segment.records >= config.roll_records or now - segment.first_at >= config.roll_seconds
        )

    def _commit_loop(self) -> None:
        try:
            self._commit_forever()
        except BaseException as exc:
            # A bug here must not leave requests waiting forever: fail them and refuse more.
            log.exception("the spool committer of %s stopped", self.stream.name)
            waiting: list[tuple[int, asyncio.Future[None]]] = []
            with self._cond:
                self.last_error = f"the spool committer stopped: {exc!r}"
                segment = self._active
                if segment is not None:
                    segment.broken = True
                    waiting, segment.waiters = segment.waiters, []
            self.spool.resolve([f for _, f in waiting], SpoolUnavailable(self.last_error))

    def _commit_forever(self) -> None:
        retry_at = 0.0
        while True:
            with self._cond:
                while True:
                    segment = self._active
                    assert segment is not None
                    now = time.monotonic()
                    seal = self._seal_due(segment, now) and now >= retry_at
                    if seal or segment.written > segment.synced:
                        break
                    timeout = 1.0
                    if segment.first_at is not None:
                        timeout = segment.first_at + self.spool.config.roll_seconds - now
                    timeout = max(timeout, retry_at - now, 0.001)
                    self._cond.wait(min(timeout, 1.0))
                target = segment.written
                if seal and not self._closing:
                    try:
                        self._active = self._new_segment()
                    except OSError as exc:
                        self.last_error = f"cannot open a new spool segment: {exc}"
                        log.error("%s", self.last_error)
                        seal, retry_at = False, now + 1.0
            error: BaseException | None = None
            try:
                _sync_data(segment.fd)
                if not segment.dir_synced:
                    fsync_dir(self.folder)  # the new file's name must survive a crash too
                    segment.dir_synced = True
            except OSError as exc:
                # After a failed fsync the page cache cannot be trusted: stop using the segment.
                error = SpoolUnavailable(f"the spool could not sync to disk: {exc}")
                self.last_error = str(error)
                segment.broken = True
            with self._cond:
                done = [f for n, f in segment.waiters if n <= target]
                segment.waiters = [(n, f) for n, f in segment.waiters if n > target]
                if error is None:
                    segment.synced = target
            self.spool.resolve(done, error)
            if seal:
                os.close(segment.fd)
                self.spool.submit_roll(self, segment.name)
                if self._closing:
                    return

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()

    def active_records(self) -> int:
        segment = self._active
        return segment.records if segment is not None else 0


class Spool:
    """All streams' spools, the roller thread, and the lock that keeps one gateway per spool."""

    def __init__(self, config: GatewayConfig, streams: Iterable[Stream] = STREAM_ORDER) -> None:
        self.config = config
        self.root = config.spool_dir
        self.spool_id = ""
        self.streams = {s.name: StreamSpool(self, s) for s in streams}
        self._lock_fd: int | None = None
        self._queue: queue.Queue[tuple[StreamSpool, str] | None] = queue.Queue()
        self._roller: threading.Thread | None = None
        self._stopping = threading.Event()
        self.rolled_files = 0
        self.last_roll_error: str | None = None

    def __getitem__(self, stream: str) -> StreamSpool:
        return self.streams[stream]

    def _take_lock(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise SpoolLocked(
                f"another gateway is using the spool {self.root}: give each gateway its own "
                "ENERGY_GATEWAY_SPOOL_DIR"
            ) from exc
        self._lock_fd = fd

    def _load_spool_id(self) -> str:
        path = self.root / "spool-id"
        if path.exists():
            return path.read_text(encoding="ascii").strip()
        spool_id = secrets.token_hex(4)
        temporary = self.root / ".spool-id.tmp"
        with temporary.open("w", encoding="ascii") as handle:
            handle.write(spool_id + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        fsync_dir(self.root)
        return spool_id

    def open(self) -> list[Path]:
        """Lock the spool, land what it holds, then start accepting. Returns the files landed
        by recovery."""
        self._take_lock()
        try:
            self.spool_id = self._load_spool_id()
            landed = [p for s in self.streams.values() for p in s.roller.recover(self.spool_id)]
            for stream_spool in self.streams.values():
                stream_spool.start()
        except BaseException:
            self._release_lock()
            raise
        self._roller = threading.Thread(target=self._roll_loop, name="spool-roller", daemon=True)
        self._roller.start()
        if landed:
            log.warning("landed %d file(s) left in the spool by an earlier run", len(landed))
        return landed

    def resolve(self, futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for future in futures:
            by_loop.setdefault(future.get_loop(), []).append(future)
        for loop, group in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop already closed: nobody waits
                loop.call_soon_threadsafe(_settle, group, error)

    def submit_roll(self, stream_spool: StreamSpool, name: str) -> None:
        self._queue.put((stream_spool, name))

    def pending_rolls(self) -> int:
        return self._queue.qsize()

    def _roll_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            stream_spool, name = item
            delay = 0.5
            while True:
                try:
                    stream_spool.roller.roll(name)
                    self.rolled_files += 1
                    self.last_roll_error = None
                    break
                except Exception as exc:  # disk full and the like: the segment stays, retry
                    self.last_roll_error = f"rolling {stream_spool.stream.name}/{name}: {exc}"
                    log.exception("roll failed; retrying")
                    if self._stopping.wait(delay):
                        return  # left in the spool: the next start rolls it
                    delay = min(delay * 2, 30.0)

    def close(self) -> None:
        """Seal and roll everything, so a clean stop leaves the spool empty."""
        for stream_spool in self.streams.values():
            stream_spool.close()
        if self._roller is not None:
            self._queue.put(None)
            # Rolls that work finish; one that fails is not retried now but at the next start.
            self._stopping.set()
            self._roller.join()
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def status(self) -> dict[str, Any]:
        return {
            "streams": {
                name: {
                    "acceptedRecords": s.accepted_records,
                    "spooledRecords": s.active_records(),
                    "lastError": s.last_error,
                }
                for name, s in self.streams.items()
            },
            "segmentsWaitingToRoll": self.pending_rolls(),
            "filesRolled": self.rolled_files,
            "lastRollError": self.last_roll_error,
        }
