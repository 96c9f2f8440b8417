"""The streams of a run, loaded side by side: on threads, or in worker processes when the run
is thousands of small files.

Streams never share a lock or a table, so each loads on its own PostgreSQL session. Large files
spend their time in Polars and PostgreSQL, which release the GIL: threads of one process keep
both cores busy. Small gateway files spend most of theirs in Python (a hash, a footer, a
manifest row and a rename per file): two streams on threads then take turns on one GIL, so on
a machine with cores to spare, a run whose streams each hold at least
`Settings.process_min_files` files loads them in worker processes. A worker costs about 0.5 s
to start (it imports Polars, Arrow and the driver) and sends its outcomes back pickled; below
that size, or with few cores, threads are faster (ENERGY_STREAM_WORKERS overrides).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context

from energy_pipelines.contract import STREAMS, Stream
from energy_pipelines.ingest.files import FileOutcome
from energy_pipelines.ingest.stream import StreamOutcomes, ingest_stream
from energy_pipelines.landing.discover import count_data_files
from energy_pipelines.load.database import Connection, connect, resolve_database_url
from energy_pipelines.load.migrations import upgrade_once
from energy_pipelines.load.reconcile import Reconciliation, reconcile_run
from energy_pipelines.settings import Settings, usable_cores


@dataclass(frozen=True)
class StreamJob:
    """One stream's part of a run: which files (None: every settled one), and whether its
    reconcile check runs."""

    stream: str
    paths: list[str] | None
    reconcile: bool


@dataclass(frozen=True)
class StreamLoad:
    outcomes: StreamOutcomes
    seconds: float
    total_loaded: int
    preview: str
    # None when the run did not select the stream's reconcile check.
    reconciliation: Reconciliation | None


def load_stream(settings: Settings, job: StreamJob, run_id: str) -> StreamLoad:
    """Load one stream's files, then, on the same session, read what the history asset's
    metadata and its reconcile check report. Runs in a worker process or on a thread."""
    stream = STREAMS[job.stream]
    started = time.perf_counter()
    url = resolve_database_url(settings)
    with connect(url) as conn:
        upgrade_once(conn, url)
        outcomes = ingest_stream(conn, stream, settings, run_id, job.paths)
        seconds = time.perf_counter() - started
        if not outcomes.session_replaced:
            return _stream_load(conn, stream, job, run_id, outcomes, seconds)
    # The server ended this session during the load (a batch loaded again on another one).
    with connect(url) as conn:
        return _stream_load(conn, stream, job, run_id, outcomes, seconds)


def _stream_load(
    conn: Connection,
    stream: Stream,
    job: StreamJob,
    run_id: str,
    outcomes: StreamOutcomes,
    seconds: float,
) -> StreamLoad:
    return StreamLoad(
        outcomes,
        seconds,
        total_loaded=_total_loaded(conn, stream),
        preview=_preview(conn, stream, outcomes),
        reconciliation=reconcile_run(conn, stream, run_id) if job.reconcile else None,
    )


# Below this many cores a worker process costs more than it frees: on 2 cores, 100 gateways'
# 1-minute files for 2 hours (24,000 files) took 10.7 s of client CPU on threads, 14.8 s in
# processes (starts and results sent back), with PostgreSQL taking the second core either way.
PROCESS_MIN_CORES = 4


def use_processes(settings: Settings, jobs: list[StreamJob]) -> bool:
    """Worker processes when the setting says so, or ("auto") on a machine of PROCESS_MIN_CORES
    or more when at least two streams each have process_min_files files."""
    if settings.stream_workers != "auto" or len(jobs) < 2:
        return settings.stream_workers == "processes" and len(jobs) >= 2
    if usable_cores() < PROCESS_MIN_CORES:
        return False
    busy = 0
    for job in jobs:
        files = (
            len(job.paths)
            if job.paths is not None
            else count_data_files(settings.landing_dir, STREAMS[job.stream])
        )
        busy += files >= settings.process_min_files
    return busy >= 2


def load_streams(
    settings: Settings, jobs: list[StreamJob], run_id: str
) -> Iterator[tuple[StreamJob, StreamLoad | Exception]]:
    """Each job's StreamLoad (or the error that stopped it), in the jobs' order."""
    # A worker process starts an embedded server only through its URL: resolve it here.
    settings = replace(settings, database_url=resolve_database_url(settings))
    pool: Executor
    if use_processes(settings, jobs):
        pool = ProcessPoolExecutor(max_workers=len(jobs), mp_context=get_context("spawn"))
    else:
        pool = ThreadPoolExecutor(max_workers=len(jobs) or 1, thread_name_prefix="load")
    with pool:
        futures: list[Future[StreamLoad]] = [
            pool.submit(load_stream, settings, job, run_id) for job in jobs
        ]
        for job, future in zip(jobs, futures, strict=True):
            try:
                yield job, future.result()
            except Exception as error:
                yield job, error


def _total_loaded(conn: Connection, stream: Stream) -> int:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(rows_loaded), 0)::bigint FROM ingested_files WHERE stream = $1",
            (stream.name,),
        )
        total = int(cur.fetchone()[0])
    conn.rollback()
    return total


def _preview(conn: Connection, stream: Stream, outcomes: list[FileOutcome]) -> str:
    """The first rows of the run's first loaded file."""
    loaded = [o for o in outcomes if o.file_id and o.manifest.rows_loaded]
    if not loaded:
        return "_no rows loaded in this run_"
    first = loaded[0].manifest
    # The table name is a contract constant; values travel as parameters. The file's time
    # range prunes to the partitions holding its rows: without it the scan would read every
    # older day first, and the run's cost would grow with history.
    sql, params = f"SELECT * FROM {stream.table} WHERE file_id = $1", (loaded[0].file_id,)
    if first.min_ts is not None and first.max_ts is not None:
        sql, params = sql + " AND ts >= $2 AND ts <= $3", (*params, first.min_ts, first.max_ts)
    with conn.cursor() as cur:
        cur.execute(sql + " LIMIT 5", params)
        frame = cur.fetch_polars()
    conn.rollback()
    if frame.height == 0:
        return "_no rows loaded in this run_"
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])
