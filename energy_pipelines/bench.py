"""`energy-pipelines bench`: the pipeline beside PostgreSQL's own COPY, in one run.

(a) baseline_copy_indexed: ADBC binary COPY of the same rows, file by file, into a plain table with
    the same primary key: what a user would write by hand.
(b) baseline_copy_unindexed: the same into a table without any index: the physical limit.
(c) pipeline: the full `energy-pipelines ingest` path (history, manifest, quarantine, hot status,
    daily tables), run as a subprocess so its peak RSS is its own; then the refresh of the day's
    data-quality rows (daily_device_quality), timed on its own.
Each phase gets a fresh database on the same server; the generated files are cached.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from energy_pipelines.contract import ARROW_TYPES, METER, POSTGRES_TYPES, VEHICLE, Stream
from energy_pipelines.load.database import (
    Connection,
    connect,
    execute_admin,
    redact_url,
    with_database,
)
from energy_pipelines.settings import Settings, usable_cores
from energy_pipelines.simulate import simulate

BENCH_START = datetime(2026, 2, 10, tzinfo=UTC)


@dataclass(frozen=True)
class BenchSize:
    meters: int
    vehicles: int
    minutes: int
    files_per_stream: int
    file_format: str

    @property
    def rows(self) -> int:
        return (self.meters + self.vehicles) * self.minutes

    @property
    def key(self) -> str:
        return (
            f"{self.file_format}-m{self.meters}-v{self.vehicles}-t{self.minutes}"
            f"-k{self.files_per_stream}"
        )


def cached_files(cache_root: Path, size: BenchSize, day: int = 0) -> Path:
    """Generate the landing files once per size (and day after the first); later runs reuse
    them."""
    root = cache_root / (size.key + (f"-day{day + 1}" if day else ""))
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        simulate(
            root,
            meters=size.meters,
            vehicles=size.vehicles,
            start=BENCH_START + timedelta(days=day),
            minutes=size.minutes,
            file_format=size.file_format,  # type: ignore[arg-type]
            files_per_stream=size.files_per_stream,
        )
        done.write_text("ok\n")
    return root


def _baseline_table(stream: Stream, indexed: bool) -> str:
    # A scratch table in a throwaway database: the comparison a user would write by hand.
    columns = ", ".join(f"{f.column} {POSTGRES_TYPES[f.kind]} NOT NULL" for f in stream.fields)
    key = f", PRIMARY KEY ({', '.join(stream.key)})" if indexed else ""
    return f"CREATE TABLE baseline_{stream.name} ({columns}{key})"


def _read_for_copy(path: Path, stream: Stream) -> pa.Table:
    import polars as pl

    frame = (
        pl.read_parquet(path)
        if path.suffix == ".parquet"
        else pl.read_csv(path, try_parse_dates=False)
    )
    renamed = frame.rename({f.file_name: f.column for f in stream.fields})
    table = renamed.select(stream.columns).to_arrow()
    columns = []
    for f in stream.fields:
        column = table[f.column]
        if f.kind == "timestamp" and not pa.types.is_timestamp(column.type):
            column = pc.strptime(column, format="%Y-%m-%dT%H:%M:%SZ", unit="us")
        columns.append(column.cast(ARROW_TYPES[f.kind]))
    return pa.table(columns, names=stream.columns)


def settle_server(server_url: str) -> None:
    """Start each phase from the same state: a CHECKPOINT writes out what the previous phase
    left dirty, so no phase pays for another's writes. Needs superuser or pg_checkpoint; without
    it the phases simply run back to back."""
    try:
        execute_admin(server_url, "CHECKPOINT")
    except Exception as exc:
        print(f"  (no CHECKPOINT between phases: {str(exc).splitlines()[0]})")


def baseline_copy(server_url: str, files: Path, indexed: bool, sessions: int = 1) -> float:
    """Seconds to COPY every file into plain tables, one transaction per file, on `sessions`
    sessions side by side (files dealt round-robin): what a user would write by hand."""
    name = f"energy_bench_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    url = with_database(server_url, name)
    try:
        with connect(url) as conn, conn.cursor() as cur:
            for stream in (METER, VEHICLE):
                cur.execute(_baseline_table(stream, indexed))
            conn.commit()
        work = [
            (stream, path)
            for stream in (METER, VEHICLE)
            for path in sorted((files / stream.name).iterdir())
            if not path.name.startswith(".")
        ]
        shares = [work[n::sessions] for n in range(sessions)]
        # Each session connects before the clock starts, as a hand-written loader would.
        conns = [connect(url) for _ in shares]
        started = time.perf_counter()
        try:
            with ThreadPoolExecutor(max_workers=sessions) as pool:
                list(pool.map(_copy_share, conns, shares))
        finally:
            for conn in conns:
                conn.close()
        return time.perf_counter() - started
    finally:
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _copy_share(conn: Connection, share: list[tuple[Stream, Path]]) -> None:
    with conn.cursor() as cur:
        for stream, path in share:
            cur.adbc_ingest(f"baseline_{stream.name}", _read_for_copy(path, stream), mode="append")
            conn.commit()


def server_backend_cpu_seconds(server_url: str) -> float | None:
    """CPU seconds of the server's exited backends so far (the postmaster's reaped children,
    read from /proc). None when the server is not a process of this machine. A run's backends
    exit when it closes its sessions, so the difference around a run is the server's share."""
    try:
        with connect(server_url) as conn, conn.cursor() as cur:
            # A Unix socket or loopback: anything else is another machine's process id.
            cur.execute(
                "SELECT pg_backend_pid(),"
                " coalesce(host(inet_server_addr()) IN ('127.0.0.1', '::1'), true)"
            )
            backend, local = cur.fetchone()
            if not local:
                return None
            # Read while the session lives: its backend exits when it closes.
            status = Path(f"/proc/{int(backend)}/status").read_text()
        postmaster = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")
        )
        # Fields after the command name, which is in parentheses and may hold spaces:
        # cutime and cstime are the 14th and 15th of them.
        fields = Path(f"/proc/{postmaster}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def machine_counters() -> dict[str, float] | None:
    """Machine-wide counters (Linux; None elsewhere): CPU seconds in user and system mode
    (/proc/stat), pages dirtied and written back (/proc/vmstat), and unused memory (MemFree).
    The difference around a run says where its time went beyond the two processes: the same
    pages written at a higher system cost mean the kernel, not the pipeline, worked harder."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()
        vm = dict(line.split() for line in Path("/proc/vmstat").read_text().splitlines())
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        free_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemFree:"))
        return {
            "user_seconds": (int(cpu[1]) + int(cpu[2])) / ticks,
            "system_seconds": (int(cpu[3]) + int(cpu[6]) + int(cpu[7])) / ticks,
            "pages_dirtied": int(vm["nr_dirtied"]),
            "pages_written": int(vm["nr_written"]),
            "memory_free_mb": free_kb // 1024,
        }
    except (OSError, ValueError, IndexError, KeyError, StopIteration):
        return None


def machine_during(
    before: dict[str, float] | None, after: dict[str, float] | None
) -> dict[str, float] | None:
    """What the machine did between two readings; memory is the state at the start. On a
    virtual machine that hands unused memory back to its host (free page reporting, as
    Firecracker VMs do), the first write into such memory costs far more than into memory
    just freed or taken back from the page cache, so runs compare fairly only when they start
    with it alike."""
    if before is None or after is None:
        return None
    spent = {
        name: round(after[name] - before[name], 1 if name.endswith("seconds") else None)
        for name in ("user_seconds", "system_seconds", "pages_dirtied", "pages_written")
    }
    return {**spent, "memory_free_mb_at_start": before["memory_free_mb"]}


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loaded_readings(database_url: str) -> tuple[int, int]:
    """Readings the manifest says were read and loaded so far (meter and vehicle files)."""
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(rows_read), 0)::bigint, coalesce(sum(rows_loaded), 0)::bigint"
            " FROM ingested_files WHERE stream = ANY($1::text[])",
            ([METER.name, VEHICLE.name],),
        )
        read, loaded = cur.fetchone()
    return int(read), int(loaded)


def days_of(size: BenchSize, day: int) -> list[date]:
    """The UTC days the readings of a batch (the bench's day `day`, counted from 0) fall on."""
    first = BENCH_START + timedelta(days=day)
    last = first + timedelta(minutes=size.minutes - 1)
    return [first.date() + timedelta(days=i) for i in range((last.date() - first.date()).days + 1)]


def quality_refresh(database_url: str, days: list[date]) -> dict[str, Any]:
    """Refresh daily_device_quality for the days a load touched, as the daemon does after it:
    wall seconds in all, readings read back from history, rows written."""
    from energy_pipelines.analytics.quality_db import refresh_quality_day

    settings = replace(Settings.from_env(), database_url=database_url)
    seconds, read, rows = 0.0, 0, 0
    with connect(database_url) as conn:
        for day in days:
            result = refresh_quality_day(conn, database_url, day, settings)
            seconds += result.seconds
            read += result.readings_read
            rows += sum(result.rows.values())
    return {"seconds": round(seconds, 3), "readings_read": read, "rows": rows}


def cli_env(database_url: str, landing: Path, work: Path) -> dict[str, str]:
    """The environment of a timed `energy-pipelines` run: its database and landing, files
    settled at once, and the bench's own Dagster instance (the CLI records every run in one),
    not the UI's history."""
    dagster_home = (work / "dagster_home").resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "DATABASE_URL": database_url,
        "ENERGY_LANDING_DIR": str(landing),
        "ENERGY_SETTLE_SECONDS": "0",
    }


def pipeline_runs(
    server_url: str,
    batches: list[Path],
    work: Path,
    rows_per_batch: int,
    quality_days: list[list[date]] | None = None,
) -> list[dict[str, Any]]:
    """Run `energy-pipelines ingest` on a copy of each batch of files in turn, all into one
    fresh database: the second batch (the next day) lands on top of the first. Each run starts
    after a CHECKPOINT, like every phase: a day's load does not pay for writing out the pages
    the day before left dirty (in production, days are hours of checkpoints apart). With
    `quality_days` (one list a batch), the data-quality rows of those days are refreshed right
    after each run, as the daemon requests them, and timed apart."""
    name = f"energy_bench_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    landing = work / "landing"
    stats = work / "stats.json"
    env = cli_env(with_database(server_url, name), landing, work)
    env["ENERGY_MAX_FILES_PER_RUN"] = "100000"
    command = [sys.executable, "-m", "energy_pipelines.cli", "ingest", "--stats-json", str(stats)]
    results = []
    try:
        for files in batches:
            shutil.rmtree(landing, ignore_errors=True)
            shutil.copytree(files, landing, ignore=shutil.ignore_patterns(".complete"))
            settle_server(server_url)
            server_cpu = server_backend_cpu_seconds(server_url)
            client_cpu = _children_cpu_seconds()
            machine = machine_counters()
            started = time.perf_counter()
            process = subprocess.Popen(
                command,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            stdout, stderr = process.communicate()
            seconds = time.perf_counter() - started
            if process.returncode != 0:
                raise RuntimeError(f"pipeline run failed:\n{stdout}\n{stderr}")
            result = json.loads(stats.read_text())
            result["seconds"] = seconds
            # Read before the row check below, whose session is not the run's.
            server_cpu_after = server_backend_cpu_seconds(server_url)
            result["machine"] = machine_during(machine, machine_counters())
            result["cpu_seconds"] = {
                "pipeline": round(_children_cpu_seconds() - client_cpu, 1),
                "postgres_backends": None
                if server_cpu is None or server_cpu_after is None
                else round(server_cpu_after - server_cpu, 1),
            }
            # A fast run that lost rows proves nothing: every generated reading must be loaded.
            expected = rows_per_batch * (len(results) + 1)
            read, loaded = loaded_readings(env["DATABASE_URL"])
            if (read, loaded) != (expected, expected):
                raise RuntimeError(
                    f"pipeline run read {read:,} and loaded {loaded:,} readings;"
                    f" {expected:,} were generated"
                )
            if quality_days is not None:
                result["quality"] = quality_refresh(env["DATABASE_URL"], quality_days[len(results)])
            results.append(result)
        return results
    finally:
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _print_quality(run: dict[str, Any]) -> None:
    quality = run["quality"]
    print(
        f"      quality      {quality['seconds']:7.2f} s after the run: daily_device_quality,"
        f" {quality['rows']:,} rows, {quality['readings_read']:,} readings read back"
    )


def server_settings(server_url: str) -> dict[str, str]:
    names = ["server_version", "shared_buffers", "max_wal_size", "checkpoint_timeout"]
    names += ["wal_compression", "synchronous_commit", "work_mem", "maintenance_work_mem"]
    with connect(server_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT name, current_setting(name) FROM unnest($1::text[]) AS name", (names,))
        return dict(cur.fetchall())


def run_bench(
    server_url: str,
    cache_root: Path,
    size: BenchSize,
    baselines: bool = True,
    days: int = 1,
    sessions: int | None = None,
) -> dict[str, Any]:
    files = cached_files(cache_root, size)
    later_days = [cached_files(cache_root, size, day) for day in range(1, days)]
    work = cache_root / "work"
    work.mkdir(parents=True, exist_ok=True)
    print(f"bench: {size.rows:,} readings ({size.key}) on {redact_url(server_url)}", flush=True)
    unindexed = indexed = unindexed_n = indexed_n = float("nan")
    # The naive load to beat runs as many COPY sessions as the machine has cores.
    sessions = sessions or usable_cores()
    if baselines:
        settle_server(server_url)
        unindexed = baseline_copy(server_url, files, indexed=False)
        print(f"  (b) COPY, no index:    {unindexed:7.1f} s {size.rows / unindexed:12,.0f} rows/s")
        settle_server(server_url)
        indexed = baseline_copy(server_url, files, indexed=True)
        print(f"  (a) COPY, primary key: {indexed:7.1f} s {size.rows / indexed:12,.0f} rows/s")
        settle_server(server_url)
        unindexed_n = baseline_copy(server_url, files, indexed=False, sessions=sessions)
        print(
            f"  (bN) COPY, no index, {sessions} sessions:    {unindexed_n:7.1f} s"
            f" {size.rows / unindexed_n:12,.0f} rows/s"
        )
        settle_server(server_url)
        indexed_n = baseline_copy(server_url, files, indexed=True, sessions=sessions)
        print(
            f"  (aN) COPY, primary key, {sessions} sessions: {indexed_n:7.1f} s"
            f" {size.rows / indexed_n:12,.0f} rows/s"
        )
    quality_days = [days_of(size, day) for day in range(days)]
    pipeline, *later = pipeline_runs(
        server_url, [files, *later_days], work, size.rows, quality_days
    )
    seconds = pipeline["seconds"]
    print(f"  (c) pipeline end to end: {seconds:7.1f} s  {size.rows / seconds:12,.0f} rows/s")
    for stage, value in pipeline["stage_seconds"].items():
        print(f"      {stage:<12} {value:7.2f} s")
    cpu = pipeline["cpu_seconds"]
    print(
        f"      CPU: pipeline {cpu['pipeline']} s, PostgreSQL backends"
        f" {cpu['postgres_backends']} s, on {os.cpu_count()} cores in {seconds:.1f} s"
    )
    if pipeline["machine"] is not None:
        print(f"      machine: {pipeline['machine']}")
    _print_quality(pipeline)

    def rounded(value: float, digits: int = 0) -> float | None:
        # Baselines skipped (--pipeline-only) are reported as null, never as a number.
        return None if value != value else round(value, digits or None)

    report = {
        "rows": size.rows,
        "size": size.key,
        "pipeline_rows_per_s": round(size.rows / seconds),
        "copy_indexed_rows_per_s": rounded(size.rows / indexed),
        "copy_unindexed_rows_per_s": rounded(size.rows / unindexed),
        "ratio_vs_indexed": rounded(indexed / seconds, 3),
        "ratio_vs_unindexed": rounded(unindexed / seconds, 3),
        # The same naive loads on as many sessions as cores (--sessions overrides).
        "baseline_sessions": sessions,
        "copy_indexed_parallel_seconds": rounded(indexed_n, 2),
        "copy_unindexed_parallel_seconds": rounded(unindexed_n, 2),
        "ratio_vs_indexed_parallel": rounded(indexed_n / seconds, 3),
        "ratio_vs_unindexed_parallel": rounded(unindexed_n / seconds, 3),
        # Cores the pipeline kept busy: CPU seconds (its process, PostgreSQL's backends) / wall.
        "cores_busy": _cores_busy(pipeline["cpu_seconds"], seconds),
        "pipeline_seconds": round(seconds, 2),
        "copy_indexed_seconds": rounded(indexed, 2),
        "copy_unindexed_seconds": rounded(unindexed, 2),
        "peak_rss_mb": round(pipeline["peak_rss_mb"], 1),
        "stage_seconds": pipeline["stage_seconds"],
        # Where the wall time went: on 2 cores, CPU seconds near 2 x wall mean CPU-bound.
        "cpu_seconds": pipeline["cpu_seconds"],
        "machine": pipeline["machine"],
        # The day's data-quality refresh after the load (not part of pipeline_seconds).
        "quality_seconds": pipeline["quality"]["seconds"],
        "quality_readings_read": pipeline["quality"]["readings_read"],
        # Each later day loaded on top of the ones before: cost should follow the new data.
        "later_days": [
            {
                "pipeline_seconds": round(day["seconds"], 2),
                "pipeline_rows_per_s": round(size.rows / day["seconds"]),
                "peak_rss_mb": round(day["peak_rss_mb"], 1),
                "stage_seconds": day["stage_seconds"],
                "cpu_seconds": day["cpu_seconds"],
                "machine": day["machine"],
                "quality_seconds": day["quality"]["seconds"],
                "quality_readings_read": day["quality"]["readings_read"],
            }
            for day in later
        ],
        "server": server_settings(server_url),
        "cpus": os.cpu_count(),
    }
    for number, day in enumerate(later, start=2):
        print(
            f"  (c) day {number} on top:     {day['seconds']:7.1f} s "
            f"{size.rows / day['seconds']:12,.0f} rows/s; stages {day['stage_seconds']}"
        )
        if day["machine"] is not None:
            print(f"      machine: {day['machine']}")
        _print_quality(day)
    print(
        f"  ratio (c)/(a) {report['ratio_vs_indexed']}, (c)/(b) {report['ratio_vs_unindexed']};"
        f" against {sessions} sessions (c)/(aN) {report['ratio_vs_indexed_parallel']},"
        f" (c)/(bN) {report['ratio_vs_unindexed_parallel']}; cores busy {report['cores_busy']};"
        f" pipeline peak RSS {report['peak_rss_mb']} MB"
    )
    return report


def _cores_busy(cpu: dict[str, Any], seconds: float) -> dict[str, float | None]:
    server = cpu.get("postgres_backends")
    return {
        "pipeline": round(cpu["pipeline"] / seconds, 2),
        "postgres": None if server is None else round(server / seconds, 2),
    }
