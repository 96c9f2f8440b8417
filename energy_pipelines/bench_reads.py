"""`energy-pipelines bench --reads`: the 24-hour summary over HTTP on days of hourly history.

Builds a database of N days with the product's own loader (simulated files, the Dagster
`ingest_job` in a subprocess), every day partitioned by hour: a small fleet on the old days
(what a read pays for is the partitions, not their rows) and a bigger one on the last day. Then
it starts the real gateway (`energy-pipelines gateway`) and drives its summary endpoint with a
closed-loop keep-alive client at 1, 8 and 32 connections, every request for a random vehicle of
the last day with asOf at that day's end, and checks a sample of the answers against an
independent one-vehicle SQL sum over the same window.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from energy_pipelines.bench import loaded_readings, server_settings, settle_server
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.load.database import connect, execute_admin, redact_url, with_database
from energy_pipelines.read_load import cpu_snapshot, cpu_spent, drive, running_gateway
from energy_pipelines.simulate import simulate

READ_END = datetime(2026, 3, 1, tzinfo=UTC)  # the end of the last simulated day: the asOf
CONCURRENCY = (1, 8, 32)
# One loader run attaches every hour table it created in one transaction (3 locks a table):
# about a month per run stays well inside PostgreSQL's default lock table.
DAYS_PER_RUN = 30
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class HistoryShape:
    days: int = 30
    old_fleet: int = 10  # meters and as many vehicles, on every day but the last
    last_fleet: int = 1000  # on the last day

    @property
    def first_day(self) -> datetime:
        return READ_END - timedelta(days=self.days)


def _write_batch(landing: Path, shape: HistoryShape, day_range: range) -> int:
    """Simulated files for the days of one loader run (one file per old day, one per hour of
    the last day); returns the meter and vehicle readings they hold."""
    old_days = [d for d in day_range if d < shape.days - 1]
    readings = 0
    if old_days:
        summary = simulate(
            landing,
            meters=shape.old_fleet,
            vehicles=shape.old_fleet,
            start=shape.first_day + timedelta(days=old_days[0]),
            minutes=len(old_days) * 1440,
            files_per_stream=len(old_days),
        )
        readings += summary.meter_rows + summary.vehicle_rows
    if shape.days - 1 in day_range:
        summary = simulate(
            landing,
            meters=shape.last_fleet,
            vehicles=shape.last_fleet,
            start=READ_END - timedelta(days=1),
            minutes=1440,
            files_per_stream=24,
            prefix="last",
        )
        readings += summary.meter_rows + summary.vehicle_rows
    return readings


def build_history(database_url: str, work: Path, shape: HistoryShape) -> float:
    """Load `shape` into the (migrated or empty) database; seconds taken. Each run's readings
    must all be loaded, or the build fails."""
    landing = work / "landing"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENERGY_LANDING_DIR": str(landing),
        "ENERGY_SETTLE_SECONDS": "0",
        "ENERGY_MAX_FILES_PER_RUN": "100000",
        # Every simulated day gets 24 hourly leaves per stream, however small its fleet.
        "ENERGY_HOURLY_LEAF_MIN_ROWS": "1",
    }
    started = time.perf_counter()
    expected = 0
    for first in range(0, shape.days, DAYS_PER_RUN):
        shutil.rmtree(landing, ignore_errors=True)
        expected += _write_batch(
            landing, shape, range(first, min(first + DAYS_PER_RUN, shape.days))
        )
        command = [sys.executable, "-m", "energy_pipelines.bench_reads", str(landing)]
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            raise RuntimeError(f"loading history failed:\n{run.stdout}\n{run.stderr}")
        read, loaded = loaded_readings(database_url)
        if (read, loaded) != (expected, expected):
            raise RuntimeError(f"history run loaded {loaded:,} of {expected:,} readings")
        print(f"  loaded days {first + 1}-{min(first + DAYS_PER_RUN, shape.days)}", flush=True)
    shutil.rmtree(landing, ignore_errors=True)
    return time.perf_counter() - started


def _ingest_job_only(landing: str) -> int:
    """The Dagster `ingest_job` in process, as `energy-pipelines ingest` runs it (history, the
    manifest, the hourly totals, hot status), without its daily tables: the 24-hour summary
    does not read them, and a year of daily partitions would cost minutes."""
    import gc

    from energy_pipelines.cli import QUIET_LOGS
    from energy_pipelines.defs import defs

    gc.freeze()  # as the CLI: Dagster's object graph needs no collection passes
    config = {"landing_dir": landing, "settle_seconds": 0.0}
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config={"resources": {"energy": {"config": config}}, **QUIET_LOGS},
        raise_on_error=False,
    )
    return 0 if result.success else 1


def leaf_tables(database_url: str) -> dict[str, int]:
    with connect(database_url) as conn, conn.cursor() as cur:
        # From the catalog alone: pg_partition_tree() locks every partition, which a year of
        # hourly leaves does not fit in the lock table.
        cur.execute(
            "SELECT t, (SELECT count(*) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid"
            "            WHERE c.relkind = 'r' AND c.relname LIKE t || '\\_p%')"
            " FROM unnest($1::text[]) AS t",
            (["meter_readings_history", "vehicle_readings_history"],),
        )
        counts = {name.removesuffix("_readings_history"): int(n) for name, n in cur.fetchall()}
    return {**counts, "total": sum(counts.values())}


def read_targets(database_url: str) -> tuple[datetime, list[str]]:
    """asOf (the end of the newest reading's UTC day) and the vehicles that report in the
    24 hours before it, from hot status: a reused database says its own shape."""
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT date_trunc('day', max(ts), 'UTC') + interval '1 day'"
            " FROM vehicle_current_status"
        )
        (as_of,) = cur.fetchone()
        if as_of is None:
            raise RuntimeError("the database holds no vehicle readings")
        cur.execute(
            "SELECT vehicle_id FROM vehicle_current_status WHERE ts > $1 ORDER BY 1",
            (as_of - timedelta(days=1),),
        )
        vehicles = [row[0] for row in cur.fetchall()]
    return as_of.astimezone(UTC), vehicles


# Written from the tables, not from the summary function or its hourly totals: what the
# 24 hours (as_of - 24 h, as_of] hold for one vehicle and its paired meters, summed exactly (as
# numeric). The bounds are values ($2, $3), not an expression such as `$3 - interval '24 hours'`
# (stable, not immutable): the planner then prunes history to the window's leaves instead of
# opening every one.
_INDEPENDENT_SQL = """
SELECT (SELECT coalesce(sum(v.kwh_delivered_dc::numeric), 0)::text
          FROM vehicle_readings_history v
         WHERE v.vehicle_id = $1 AND v.ts > $2 AND v.ts <= $3),
       (SELECT count(*) FROM vehicle_readings_history v
         WHERE v.vehicle_id = $1 AND v.ts > $2 AND v.ts <= $3),
       (SELECT coalesce(sum(m.kwh_consumed_ac::numeric), 0)::text
          FROM meter_readings_history m
         WHERE m.meter_id IN (SELECT c.meter_id FROM meter_vehicle_correlation c
                               WHERE c.vehicle_id = $1)
           AND m.ts > $2 AND m.ts <= $3)
"""
_ENERGIES = ("totalKwhDeliveredDc", "totalKwhConsumedAc")
# Half a unit of the summary's fourth decimal.
_HALF_UNIT = Decimal("0.00005")


def independent_sums(
    database_url: str, vehicles: list[str], as_of: datetime
) -> dict[str, dict[str, Decimal | int]]:
    """vehicle id -> {totalKwhDeliveredDc, recordCount, totalKwhConsumedAc}, exact."""
    sums: dict[str, dict[str, Decimal | int]] = {}
    with connect(database_url) as conn, conn.cursor() as cur:
        # Planned with the values each time, so only the window's leaves are opened.
        cur.execute("SET plan_cache_mode = force_custom_plan")
        conn.commit()
        for vehicle in vehicles:
            cur.execute(_INDEPENDENT_SQL, (vehicle, as_of - timedelta(hours=24), as_of))
            dc, count, ac = cur.fetchone()
            sums[vehicle] = {
                "totalKwhDeliveredDc": Decimal(dc),
                "recordCount": int(count),
                "totalKwhConsumedAc": Decimal(ac),
            }
            conn.rollback()  # each query's locks go with it
    return sums


def agrees(answer: dict[str, Any], exact: dict[str, Decimal | int]) -> bool:
    """Whether an answer's energies are the exact sums rounded to 4 decimals and its count is
    the count. A sum exactly halfway (x.xxxx5) may be rounded either way: the summary adds
    doubles, and their last-bit error picks the side (about 1 vehicle in 100 here, since the
    readings have 6 decimals)."""
    if answer.get("recordCount") != exact["recordCount"]:
        return False
    for key in _ENERGIES:
        value = answer.get(key)
        if value is None or abs(Decimal(str(value)) - Decimal(exact[key])) > _HALF_UNIT:
            return False
    return True


def mismatches(
    answers: dict[str, set[bytes]], sums: dict[str, dict[str, Decimal | int]]
) -> list[dict[str, Any]]:
    """Answers (JSON bodies per vehicle) that disagree with the independent sums."""
    wrong = []
    for vehicle, bodies in answers.items():
        for body in bodies:
            answer = json.loads(body)
            if not agrees(answer, sums[vehicle]):
                got = {key: answer.get(key) for key in sums[vehicle]}
                exact = {key: str(value) for key, value in sums[vehicle].items()}
                wrong.append({"vehicle": vehicle, "answer": got, "sql": exact})
    return wrong


def check_answers(
    database_url: str, answers: dict[str, set[bytes]], as_of: datetime
) -> list[dict[str, Any]]:
    """Every kept answer against its vehicle's independent sums: the ones that differ."""
    return mismatches(answers, independent_sums(database_url, sorted(answers), as_of))


def measure(
    database_url: str, work: Path, seconds: float, sample: int = 50
) -> tuple[datetime, list[dict[str, Any]], dict[str, set[bytes]]]:
    """The gateway under 1, 8 and 32 connections (after a one-second warm-up that opens its
    pool): the asOf asked for, each phase's report and the sampled 200 answers."""
    as_of, vehicles = read_targets(database_url)
    as_of_text = as_of.isoformat().replace("+00:00", "Z")
    phases: list[dict[str, Any]] = []
    answers: dict[str, set[bytes]] = {}
    # One session for the CPU snapshots: opening one costs the client seconds of CPU once
    # history has thousands of leaves (the driver reads every row type at connect).
    with running_gateway(database_url, work) as (process, base), connect(database_url) as conn:
        drive(base, vehicles, as_of_text, max(CONCURRENCY), 1.0)
        for connections in CONCURRENCY:
            before = cpu_snapshot(conn, process.pid)
            result = drive(base, vehicles, as_of_text, connections, seconds, sample)
            report = result.report()
            report["cpu_seconds"] = cpu_spent(before, cpu_snapshot(conn, process.pid))
            phases.append(report)
            for vehicle, bodies in result.answers.items():
                answers.setdefault(vehicle, set()).update(bodies)
            print(
                f"  {connections:>2} connections: {report['requests_per_s']:8.1f} req/s,"
                f" p50 {report['latency_ms_p50']} ms, p95 {report['latency_ms_p95']} ms,"
                f" p99 {report['latency_ms_p99']} ms, errors {report['errors']};"
                f" CPU s {report['cpu_seconds']}",
                flush=True,
            )
    return as_of, phases, answers


def _database_exists(server_url: str, name: str) -> bool:
    with connect(server_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", (name,))
        return bool(cur.fetchone()[0])


def prepared_database(
    server_url: str, work: Path, shape: HistoryShape, reuse: str | None
) -> tuple[str, float | None]:
    """(database url, build seconds or None when reused). A fresh database is dropped again
    if its build fails."""
    name = reuse or f"energy_bench_{uuid.uuid4().hex[:12]}"
    if not _DATABASE_NAME.match(name):
        raise ValueError(f"--reuse-db {name!r}: use lower-case letters, digits and _")
    database_url = with_database(server_url, name)
    if reuse and _database_exists(server_url, name):
        return database_url, None
    execute_admin(server_url, f"CREATE DATABASE {name}")  # a checked name, see above
    try:
        return database_url, build_history(database_url, work, shape)
    except BaseException:
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        raise


def run_read_bench(
    server_url: str, work: Path, shape: HistoryShape, seconds: float, reuse: str | None = None
) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    print(f"bench --reads: {shape.days} days on {redact_url(server_url)}", flush=True)
    database_url, build_seconds = prepared_database(server_url, work, shape, reuse)
    try:
        if build_seconds is not None:
            # The first reads of freshly loaded rows write (hint bits, visibility map): done
            # once before measuring, as vacuum would in service; then a checkpoint.
            execute_admin(database_url, "VACUUM (ANALYZE)")
        settle_server(server_url)
        leaves = leaf_tables(database_url)
        print(f"  {leaves['total']:,} leaf tables ({leaves})", flush=True)
        as_of, phases, answers = measure(database_url, work, seconds)
        wrong = check_answers(database_url, answers, as_of)
    finally:
        if reuse is None:
            name = database_url.rsplit("/", 1)[1]
            execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    checked = sum(len(bodies) for bodies in answers.values())
    print(
        f"  {checked} answers of {len(answers)} vehicles checked against SQL sums:"
        f" {len(wrong)} differ",
        flush=True,
    )
    config = GatewayConfig.from_env()
    return {
        "days": shape.days,
        "database": None if reuse is None else reuse,
        "build_seconds": None if build_seconds is None else round(build_seconds, 1),
        "leaf_tables": leaves,
        "as_of": as_of.isoformat().replace("+00:00", "Z"),
        "phases": phases,
        "checked_answers": checked,
        "checked_vehicles": len(answers),
        "mismatches": wrong,
        "gateway": {
            "db_pool_size": config.db_pool_size,
            "db_statement_timeout_seconds": config.db_statement_timeout,
            "db_retries": config.db_retries,
        },
        "server": server_settings(server_url),
        "cpus": os.cpu_count(),
    }


def run_from_args(server_url: str, cache_root: Path, args: Any) -> int:
    """`energy-pipelines bench --reads`: prints the report as its last line; exit 1 when an
    answer differs from its SQL sum."""
    shape = HistoryShape(days=args.days or 30, last_fleet=args.vehicles or 1000)
    report = run_read_bench(
        server_url, cache_root / "reads", shape, args.read_seconds, args.reuse_db
    )
    line = json.dumps(report)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    print(line)
    return 1 if report["mismatches"] else 0


if __name__ == "__main__":  # the loader subprocess of build_history
    sys.exit(_ingest_job_only(sys.argv[1]))
