"""Units of a run: one stream's waiting files cut into sets that separate workers load.

A unit is one batch of the stream's load (ingest/stream.py plan_batches): a run of small
settled files in landing-path order, bounded by the batch limits (ENERGY_BATCH_MAX_FILES / _MB
/ _ROWS), or one larger file on its own (an hourly fleet file). The units of a stream may load
on different workers at once; they take the stream's lock for their writes, and a file's
manifest row is what makes it load once: a unit that finds its files loaded by another copy of
itself (a task delivered twice, a redelivery after its first worker died) records them as
healed or leaves them alone, and says so.

A unit carries the fingerprint of the code that planned it: a worker running other code refuses
it instead of loading with different rules (`StaleWorker`).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.ingest.stream import plan_batches
from energy_pipelines.ingest.streams import StreamJob, load_stream
from energy_pipelines.landing.discover import LandingFile, find_waiting_files
from energy_pipelines.load.database import connect, resolve_database_url
from energy_pipelines.settings import Settings

_PACKAGE = Path(__file__).resolve().parent
_COUNTS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "rows_conflicting")


@cache
def code_fingerprint() -> str:
    """A digest of the package's Python and SQL sources (and of $ENERGY_SQL_DIR's SQL when it
    replaces them): two processes with the same fingerprint load with the same rules."""
    digest = hashlib.sha256()
    roots = [_PACKAGE]
    if os.environ.get("ENERGY_SQL_DIR"):
        roots.append(Path(os.environ["ENERGY_SQL_DIR"]))
    for root in roots:
        for path in sorted([*root.rglob("*.py"), *root.rglob("*.sql")]):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


class StaleWorker(Exception):
    """The worker's code is not the code that planned the unit."""


@dataclass(frozen=True)
class Unit:
    """One stream's files (landing-relative paths) that one worker loads together."""

    stream: str
    paths: tuple[str, ...]
    code: str

    @property
    def key(self) -> str:
        """A name for the unit, usable as a Dagster mapping key: stream, then a digest of its
        paths (the same files always get the same key)."""
        digest = hashlib.sha256("\0".join(self.paths).encode()).hexdigest()[:10]
        return f"{self.stream}_{digest}"


def plan_units(
    settings: Settings, only_paths: list[str] | None = None, streams: tuple[Stream, ...] = ()
) -> list[Unit]:
    """The waiting files of each stream (or only those listed), cut into units."""
    wanted = set(only_paths) if only_paths else None
    units: list[Unit] = []
    for stream in streams or STREAM_ORDER:
        files = find_waiting_files(settings.landing_dir, stream, settings.settle_seconds)
        if wanted is not None:
            files = [f for f in files if f.relative_path in wanted]
        units.extend(units_of(stream, files, settings))
    return units


def units_of(stream: Stream, files: list[LandingFile], settings: Settings) -> list[Unit]:
    """One unit per batch the stream's load would make of these files (ingest/stream.py)."""
    return [
        Unit(stream.name, tuple(f.relative_path for f in planned.files), code_fingerprint())
        for planned in plan_batches(files, settings)
    ]


@dataclass
class UnitResult:
    """What a worker did with a unit. `already_done` counts the unit's files it found handled
    by someone else (another copy of the unit, an earlier attempt, another run): moved out of
    landing before it looked, or recorded in the manifest under another run (`healed`)."""

    unit: str
    stream: str
    files: int
    loaded: int = 0
    healed: int = 0
    skipped_duplicate: int = 0
    quarantined: int = 0
    already_done: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str = ""
    started_at: float = 0.0

    def describe(self) -> str:
        found = (
            f"; {self.already_done} of its files found done by another worker or run"
            if self.already_done
            else ""
        )
        return (
            f"{self.unit}: {self.files} files, {self.loaded} loaded, {self.healed} healed, "
            f"{self.skipped_duplicate} skipped as duplicates, {self.quarantined} quarantined"
            f"{found} ({self.seconds:.2f} s on {self.worker})"
        )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def load_unit(settings: Settings, unit: Unit, run_id: str) -> UnitResult:
    """Load one unit's files exactly once (ingest/streams.py load_stream: the stream's lock and
    the manifest decide which copy writes), and account for every file of the unit."""
    if unit.code != code_fingerprint():
        raise StaleWorker(
            f"this worker ({worker_name()}) runs code {code_fingerprint()}, the unit was planned "
            f"by code {unit.code}: refused; update the worker (the step is retried elsewhere)"
        )
    started, cpu_started, wall = time.perf_counter(), time.process_time(), time.time()
    load = load_stream(settings, StreamJob(unit.stream, list(unit.paths), reconcile=False), run_id)
    result = UnitResult(unit=unit.key, stream=unit.stream, files=len(unit.paths))
    for outcome in load.outcomes:
        status = outcome.manifest.status
        if outcome.healed:
            result.healed += 1
        elif status == "loaded":
            result.loaded += 1
        elif status == "skipped_duplicate":
            result.skipped_duplicate += 1
        elif status == "quarantined":
            result.quarantined += 1
    handled = {o.manifest.path for o in load.outcomes}
    result.already_done = result.healed + _recorded_elsewhere(settings, unit, handled)
    result.counts = {
        c: sum(int(getattr(o.manifest, c)) for o in load.outcomes if not o.healed) for c in _COUNTS
    }
    result.seconds = time.perf_counter() - started
    result.cpu_seconds = time.process_time() - cpu_started
    result.worker, result.started_at = worker_name(), wall
    return result


def _recorded_elsewhere(settings: Settings, unit: Unit, handled: set[str]) -> int:
    """Files of the unit this load did not see (no longer in landing) that the manifest holds:
    another copy of the unit, or another run, took them first."""
    missing = [p for p in unit.paths if p not in handled]
    if not missing:
        return 0
    with connect(resolve_database_url(settings)) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(DISTINCT path) FROM ingested_files"
            " WHERE stream = $1 AND path = ANY($2::text[])",
            (unit.stream, missing),
        )
        return int(cur.fetchone()[0])
