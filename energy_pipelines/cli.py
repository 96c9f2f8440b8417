"""The `energy-pipelines` command: ingest, db upgrade, simulate, demo, ui."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from energy_pipelines.analytics.performance import parse_as_of
from energy_pipelines.settings import Settings

# The CLI prints its own summary; Dagster's step-by-step log stays in the UI and run storage.
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
COUNT_COLUMNS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "rows_conflicting")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env().with_landing_dir(getattr(args, "landing", None))
    return settings


def _dagster_instance():  # type: ignore[no-untyped-def]
    """The instance `energy-pipelines ui` shows: every CLI run is in its run and asset
    history ($DAGSTER_HOME when exported, else the project's .dagster_home/)."""
    import dagster as dg

    from energy_pipelines.dagster_home import dagster_home

    os.environ["DAGSTER_HOME"] = str(dagster_home())
    return dg.DagsterInstance.get()


def _stage_seconds(result: object, daily_seconds: float) -> dict[str, float]:
    """Where the run's time went, from the assets' own metadata (the same the UI shows)."""
    stages = dict.fromkeys(
        ("read", "validate", "transform", "load", "index", "lock_wait", "turn_wait"), 0.0
    )
    hot = 0.0
    for event in result.asset_materializations_for_node("load_landing_files"):  # type: ignore[attr-defined]
        for stage in stages:
            stages[stage] += event.metadata[f"{stage}_seconds"].value
    for event in result.asset_materializations_for_node("refresh_current_status"):  # type: ignore[attr-defined]
        hot = max(hot, event.metadata["seconds"].value)  # the streams refresh side by side
    return {
        **{k: round(v, 3) for k, v in stages.items()},
        "hot_status": round(hot, 3),
        "daily": round(daily_seconds, 3),
    }


def _finish_stopped_run(settings: Settings) -> None:
    """What a stopped run loaded but did not finish: new tables whose keys it did not build
    (their rows are not visible in history until then), current-status tables not refreshed."""
    from energy_pipelines.contract import METER, STREAM_ORDER, VEHICLE
    from energy_pipelines.hot_status.refresh import refresh_status
    from energy_pipelines.load.database import connect, resolve_database_url
    from energy_pipelines.load.key_builds import finish_new_tables
    from energy_pipelines.load.migrations import upgrade_once

    url = resolve_database_url(settings)
    with connect(url) as conn:
        # A first run may find nothing to load on a database no run has migrated yet.
        upgrade_once(conn, url)
        for stream in STREAM_ORDER:
            if stream.has_timestamp:
                finish_new_tables(conn, url, stream, settings.load_sessions)
        for stream in (METER, VEHICLE):
            refresh_status(conn, stream)


def _files_waiting(settings: Settings, settle_seconds: float) -> bool:
    from energy_pipelines.contract import STREAM_ORDER
    from energy_pipelines.landing.discover import find_waiting_files

    return any(
        find_waiting_files(settings.landing_dir, s, settle_seconds, limit=1) for s in STREAM_ORDER
    )


def _files_left(settings: Settings) -> int:
    """Data files in landing that the run did not take."""
    from energy_pipelines.contract import STREAM_ORDER
    from energy_pipelines.landing.discover import find_waiting_files

    return sum(len(find_waiting_files(settings.landing_dir, s, 0.0)) for s in STREAM_ORDER)


def run_ingest(
    settings: Settings,
    settle_seconds: float | None = None,
    stats_json: str | None = None,
    executor: str | None = None,
) -> int:
    """Execute the same Dagster job the UI runs, in process; print one line per file."""
    import resource
    import time

    settle = settings.settle_seconds if settle_seconds is None else settle_seconds
    if not _files_waiting(settings, settle):
        # Nothing to load: no run to start (importing and running Dagster costs seconds); days a
        # stopped run left stale are still refreshed.
        print("no settled files were waiting in", settings.landing_dir)
        _finish_stopped_run(settings)
        refreshed = refresh_daily(settings, None)
        if refreshed:
            print("daily tables refreshed for " + ", ".join(d.isoformat() for d in refreshed))
        return 0 if refreshed is not None else 1

    from energy_pipelines.defs.scale.launch import execute_ingest, use_executor

    use_executor(executor)  # --executor, else ENERGY_EXECUTOR (in_process)
    from energy_pipelines.load.database import connect, redact_url, resolve_database_url
    from energy_pipelines.load.manifest import run_report

    # Dagster's definitions are a large, long-lived object graph: frozen, the cyclic garbage
    # collector stops re-scanning it during the run and at exit (bench: about 1.5 s at exit).
    gc.freeze()
    resource_config: dict[str, object] = {"landing_dir": str(settings.landing_dir)}
    if settle_seconds is not None:
        resource_config["settle_seconds"] = settle_seconds
    started = time.perf_counter()
    instance = _dagster_instance()
    run_config = {"resources": {"energy": {"config": resource_config}}, **QUIET_LOGS}
    result = execute_ingest(instance, run_config)
    url = resolve_database_url(settings)
    with connect(url) as conn:
        report = run_report(conn, result.run_id)
    print(f"run {result.run_id} on {redact_url(url)}")
    if not report.files:
        print("no settled files were waiting in", settings.landing_dir)
    for row in report.listed:
        counts = ", ".join(f"{c.removeprefix('rows_')} {row[c]}" for c in COUNT_COLUMNS)
        print(
            f"{row['status']:<17} {row['path']}: {counts}"
            + (f" -- {row['error']}" if row["error"] else "")
            + "".join(f" -- note: {note}" for note in row.get("notes") or [])
        )
    if report.files > len(report.listed):
        unlisted_looks = report.need_a_look - sum(r["needs_a_look"] for r in report.listed)
        print(
            f"... {report.files - len(report.listed)} more files not listed, of which"
            f" {unlisted_looks} need a look (every file is in the ingested_files manifest)"
        )
    if report.files:
        totals = report.totals.items()
        print(
            "total: "
            + ", ".join(f"{c.removeprefix('rows_')} {v}" for c, v in totals)
            + f" ({report.files} files)"
        )
    left = _files_left(settings)
    if left:
        print(f"{left} files still wait in landing (not settled yet, or arrived during the run)")
    if result.success:
        daily_started = time.perf_counter()
        refreshed = refresh_daily(settings, instance)
        daily_seconds = time.perf_counter() - daily_started
        if refreshed is None:
            return 1
        if refreshed:
            print("daily tables refreshed for " + ", ".join(d.isoformat() for d in refreshed))
        if stats_json:
            stats = {
                "seconds": round(time.perf_counter() - started, 3),
                "rows_read": report.totals["rows_read"],
                "stage_seconds": _stage_seconds(result, daily_seconds),
                # ru_maxrss is in KiB on Linux.
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
            Path(stats_json).write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    if not result.success:
        return _report_failure(result)
    return 0


# Exit codes: 1 the run failed, 2 bad configuration or usage, 3 the database was unavailable
# or the failure was transient (a cancelled statement, a timeout, a deadlock, a full disk):
# running again later is the remedy.
EXIT_TRANSIENT = 3


def _report_failure(result: Any) -> int:
    from energy_pipelines.load.errors import is_transient, sqlstate_of

    transient = False
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data is not None:
            error = event.step_failure_data.error
            # Dagster wraps the asset's exception; its cause says what failed.
            while error is not None and error.cause is not None:
                error = error.cause
            message = error.message.strip() if error else "unknown error"
            code = sqlstate_of(Exception(message))
            lost = "connection" in message.lower() and code is None
            transient = transient or is_transient(code) or lost
            print(f"error in {event.step_key}: {message}", file=sys.stderr)
    if transient:
        print(
            "ingest stopped by a transient database error; nothing was marked bad, and the files"
            " not loaded stay in landing: run again",
            file=sys.stderr,
        )
        return EXIT_TRANSIENT
    print("ingest failed; files not loaded stay in landing for the next run", file=sys.stderr)
    return 1


def refresh_daily(settings: Settings, instance: object | None) -> list | None:
    """Materialize, in process, every day made stale since the daily watermark (the same
    partitioned assets the UI and the sensor run, recorded in the same instance; opened here
    when the caller has none). None when a day failed."""
    from energy_pipelines.analytics.daily import advance_daily_watermark, pending_days
    from energy_pipelines.load.database import connect, resolve_database_url

    with connect(resolve_database_url(settings)) as conn:
        pending = pending_days(conn)
        if not pending.days:
            if pending.new_files:
                advance_daily_watermark(conn, pending)
            return []
        from energy_pipelines.defs import defs
        from energy_pipelines.defs.analytics.partitions import add_day_partitions

        job = defs.resolve_job_def("daily_analytics_job")
        instance = instance or _dagster_instance()
        add_day_partitions(instance, pending.days)
        for day in pending.days:
            result = job.execute_in_process(
                partition_key=day.isoformat(),
                run_config=QUIET_LOGS,
                raise_on_error=False,
                instance=instance,
            )
            if not result.success:
                print(f"daily materialization of {day} failed", file=sys.stderr)
                return None
        if pending.new_files:
            advance_daily_watermark(conn, pending)
        return pending.days


def run_performance(settings: Settings, vehicle_id: str, as_of: str | None) -> int:
    from energy_pipelines.analytics.performance import UnknownVehicle, vehicle_performance
    from energy_pipelines.load.database import connect, resolve_database_url

    try:
        with connect(resolve_database_url(settings)) as conn:
            summary = vehicle_performance(
                conn, vehicle_id, parse_as_of(as_of) if as_of else None, settings.evidence
            )
    except UnknownVehicle as exc:
        print(f"energy-pipelines: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


def run_quality(settings: Settings, day: str | None) -> int:
    """Recompute one UTC day of daily_device_quality (the Dagster daily_quality_job, in
    process); the daemon's daily_analytics_sensor requests it after every load."""
    from datetime import UTC

    from energy_pipelines.defs import defs
    from energy_pipelines.defs.analytics.partitions import add_day_partitions

    key = day or datetime.now(UTC).date().isoformat()
    instance = _dagster_instance()
    add_day_partitions(instance, [datetime.fromisoformat(key).date()])
    result = defs.resolve_job_def("daily_quality_job").execute_in_process(
        partition_key=key, run_config=QUIET_LOGS, raise_on_error=False, instance=instance
    )
    if not result.success:
        return _report_failure(result)
    print(f"daily_device_quality refreshed for {key}")
    return 0


def run_retention(settings: Settings, keep_days: int | None) -> int:
    from energy_pipelines.load.database import connect, resolve_database_url
    from energy_pipelines.load.retention import drop_old_partitions, retention_cutoff

    keep_days = settings.retention_days if keep_days is None else keep_days
    if keep_days == 0:
        print("retention is off (ENERGY_RETENTION_DAYS=0): every day is kept")
        return 0
    with connect(resolve_database_url(settings)) as conn:
        dropped = drop_old_partitions(conn, keep_days)
    print(f"kept days from {retention_cutoff(keep_days)}; dropped {len(dropped)} partition(s)")
    for name in dropped:
        print(f"dropped {name}")
    return 0


def run_bench(settings: Settings, args: argparse.Namespace) -> int:
    from energy_pipelines.bench import BenchSize, run_bench
    from energy_pipelines.load.database import resolve_database_url

    if args.executor == "celery":
        from energy_pipelines.bench_celery import run_from_args as run_celery

        return run_celery(resolve_database_url(settings), settings.state_dir / "bench", args)
    if args.reads:
        from energy_pipelines.bench_reads import run_from_args

        return run_from_args(resolve_database_url(settings), settings.state_dir / "bench", args)
    if args.live:
        from energy_pipelines.bench_live import LiveShape, run_live

        shape = LiveShape(
            minutes=args.live,
            gateways=args.gateways,
            file_minutes=args.file_minutes,
            meters=args.meters,
            vehicles=_vehicles(args),
        )
        work = settings.state_dir / "bench" / "live"
        live = run_live(resolve_database_url(settings), work, shape)
        print(json.dumps(live))
        if args.json:
            Path(args.json).write_text(json.dumps(live) + "\n", encoding="utf-8")
        return 0
    if args.quick:
        size = BenchSize(200, 200, 240, 4, args.format)
    else:
        size = BenchSize(
            args.meters, _vehicles(args), args.minutes, args.files_per_stream, args.format
        )
    if args.layouts:
        from energy_pipelines.bench_layouts import chosen_layouts, run_layouts

        cache = settings.state_dir / "bench"
        report = run_layouts(
            resolve_database_url(settings), cache, cache / "work", size, chosen_layouts(args.layout)
        )
        print(json.dumps(report))
        return 0
    report = run_bench(
        resolve_database_url(settings),
        settings.state_dir / "bench",
        size,
        baselines=not args.pipeline_only,
        days=args.days or 1,
        sessions=args.sessions,
    )
    line = json.dumps(report)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    print(line)
    return 0


def run_db_settings(args: argparse.Namespace) -> int:
    from energy_pipelines.load import server_settings as rules

    machine = rules.this_machine()
    if args.memory_gb is not None or args.cores is not None:
        memory = int(args.memory_gb * 2**30) if args.memory_gb else machine.memory_bytes
        machine = rules.Machine(memory, args.cores or machine.cores)
    settings = rules.ingest_settings(machine)
    print(
        f"-- {machine.memory_bytes / 2**30:.1f} GiB, {machine.cores} cores"
        if args.format == "alter-system"
        else f"# {machine.memory_bytes / 2**30:.1f} GiB, {machine.cores} cores"
    )
    if args.format == "alter-system":
        print(rules.as_alter_system(settings))
    else:
        print(rules.as_compose_env(settings))
    return 0


def run_db_upgrade(settings: Settings) -> int:
    from energy_pipelines.load.database import connect, redact_url, resolve_database_url
    from energy_pipelines.load.migrations import upgrade

    url = resolve_database_url(settings)
    with connect(url) as conn:
        applied = upgrade(conn)
    print(f"{redact_url(url)}: " + (f"applied {', '.join(applied)}" if applied else "up to date"))
    return 0


def _vehicles(args: argparse.Namespace) -> int:
    return args.vehicles if args.vehicles is not None else args.meters


def run_simulate(args: argparse.Namespace) -> int:
    from energy_pipelines.simulate import default_start, follow, simulate

    if getattr(args, "follow", False):
        vehicles = _vehicles(args)
        print(f"dropping files into {args.out} every {args.interval:g} s; Ctrl-C stops")
        try:
            for landed in follow(
                Path(args.out), args.meters, vehicles, args.interval, args.seed, args.format
            ):
                for path in landed:
                    print(f"landed {path}", flush=True)
        except KeyboardInterrupt:
            pass
        return 0

    start = parse_as_of(args.start) if args.start else default_start()
    summary = simulate(
        Path(args.out),
        meters=args.meters,
        vehicles=_vehicles(args),
        start=start,
        minutes=args.minutes,
        file_format=args.format,
        files_per_stream=args.files_per_stream,
        seed=args.seed,
    )
    print(
        f"wrote {len(summary.files)} files to {args.out}: {summary.meter_rows} meter readings, "
        f"{summary.vehicle_rows} vehicle readings, {summary.correlation_rows} correlations"
    )
    return 0


def run_demo(args: argparse.Namespace) -> int:
    """Simulate a small fleet into landing, ingest it, and show what landed."""
    from datetime import UTC, timedelta

    settings = _settings(args)
    args.out = str(settings.landing_dir)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    yesterday = (now - timedelta(days=1)).date()
    if not args.start:
        # The whole previous UTC day, then today up to now: a day's statuses are about a whole
        # day, and the freshness checks pass on readings that end now.
        args.start = f"{yesterday.isoformat()}T00:00:00+00:00"
        if not args.minutes:
            args.minutes = int((now - datetime.fromisoformat(args.start)).total_seconds() // 60)
    elif not args.minutes:
        args.minutes = 240
    run_simulate(args)
    code = run_ingest(settings, settle_seconds=0)
    if code:
        return code
    _print_demo_tables(settings, yesterday)
    return 0


def _print_demo_tables(settings: Settings, day: Any) -> None:
    from energy_pipelines.load.database import connect, resolve_database_url

    with connect(resolve_database_url(settings)) as conn, conn.cursor() as cur:
        for table in (
            "meter_readings_history",
            "vehicle_readings_history",
            "meter_vehicle_correlation",
            "rejected_rows",
            "meter_current_status",
            "vehicle_current_status",
            "daily_vehicle_efficiency",
            "daily_meter_usage",
        ):
            cur.execute(f"SELECT count(*) FROM {table}")  # fixed table names
            print(f"{table}: {cur.fetchone()[0]} rows")
        cur.execute(
            "SELECT status, count(*) FROM daily_vehicle_efficiency WHERE day = $1"
            " GROUP BY 1 ORDER BY 1",
            (day,),
        )
        counts = ", ".join(f"{s} {n}" for s, n in cur.fetchall()) or "no vehicle reported"
        print(f"status per vehicle on {day.isoformat()} (a whole UTC day): {counts}")
        cur.execute("SELECT status, count(*) FROM v_fleet_efficiency_latest GROUP BY 1 ORDER BY 1")
        print("latest daily status per vehicle: " + ", ".join(f"{s} {n}" for s, n in cur))
    print(
        "next: energy-pipelines ui, then http://127.0.0.1:3000: Assets > daily_vehicle_efficiency"
        " (its checks), Runs (this demo's runs); energy-pipelines performance vehicle-00001"
    )


def run_ui(extra_args: list[str]) -> int:
    """`dg dev` until Ctrl-C; the embedded PostgreSQL it started stops with it (ui.py)."""
    from energy_pipelines.ui import run_ui as run_dg_dev

    return run_dg_dev(extra_args)


GATEWAY_PORT = 8000


def run_gateway(args: argparse.Namespace) -> int:
    from energy_pipelines.gateway import GatewayConfig, serve

    # Not 3000: the Dagster UI listens there, and both run on one machine.
    port = args.port if args.port is not None else int(os.environ.get("PORT") or GATEWAY_PORT)
    config = GatewayConfig.from_env(_settings(args))
    return serve(args.host, port, config, args.allow_unauthenticated_remote)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="energy-pipelines",
        description="Load smart-meter and EV telemetry files from landing storage into PostgreSQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    ingest = commands.add_parser("ingest", help="process every waiting landing file once")
    ingest.add_argument(
        "--landing", help="landing root (default: $ENERGY_LANDING_DIR or ./landing)"
    )
    ingest.add_argument("--stats-json", help="write stage timings and peak memory to this file")
    ingest.add_argument(
        "--settle-seconds",
        type=float,
        help="pick up only files unchanged this long (default: $ENERGY_SETTLE_SECONDS or 5)",
    )
    ingest.add_argument(
        "--executor",
        choices=("in_process", "celery"),
        help="celery: units as steps on Celery workers (default: $ENERGY_EXECUTOR or in_process)",
    )

    db = commands.add_parser("db", help="database maintenance")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply pending migrations from sql/")
    db_settings = db_commands.add_parser(
        "settings", help="PostgreSQL ingest settings for this machine (or another)"
    )
    db_settings.add_argument("--memory-gb", type=float, help="default: this machine's memory")
    db_settings.add_argument("--cores", type=int, help="default: the cores this process may use")
    db_settings.add_argument(
        "--format", choices=("alter-system", "compose-env"), default="alter-system"
    )

    def add_simulation_options(p: argparse.ArgumentParser, meters: int, minutes: int) -> None:
        p.add_argument("--meters", type=int, default=meters)
        p.add_argument("--vehicles", type=int, help="default: as many as --meters")
        p.add_argument("--start", help="first timestamp, ISO-8601 (default: yesterday 00:00 UTC)")
        p.add_argument("--minutes", type=int, default=minutes)
        p.add_argument("--format", choices=("parquet", "csv"), default="parquet")
        p.add_argument("--files-per-stream", type=int, default=1)
        p.add_argument("--seed", type=int, default=0)

    performance = commands.add_parser(
        "performance", help="the 24-hour performance summary of one vehicle, as JSON"
    )
    performance.add_argument("vehicle_id")
    performance.add_argument("--as-of", help="window end, ISO-8601 (default: now)")

    simulate = commands.add_parser("simulate", help="write realistic gateway files")
    add_simulation_options(simulate, meters=100, minutes=1440)
    simulate.add_argument("--out", required=True, help="landing root to write into")
    simulate.add_argument(
        "--follow", action="store_true", help="keep dropping live files until interrupted"
    )
    simulate.add_argument("--interval", type=float, default=60.0, help="seconds between drops")

    quality = commands.add_parser("quality", help="recompute one UTC day of daily_device_quality")
    quality.add_argument("--day", help="YYYY-MM-DD (default: today, UTC)")
    retention = commands.add_parser(
        "retention", help="drop whole history day partitions older than N days"
    )
    retention.add_argument(
        "--keep-days", type=int, help="days kept (default: $ENERGY_RETENTION_DAYS or 90)"
    )

    bench = commands.add_parser(
        "bench", help="the pipeline beside PostgreSQL's own COPY, on generated files"
    )
    bench.add_argument("--meters", type=int, default=5000)
    bench.add_argument("--vehicles", type=int, help="default: as many as --meters")
    bench.add_argument("--minutes", type=int, default=1440)
    bench.add_argument("--files-per-stream", type=int, default=24)
    bench.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    bench.add_argument("--quick", action="store_true", help="a small size, under a minute")
    bench.add_argument("--json", help="also write the JSON report to this file")
    bench.add_argument(
        "--pipeline-only", action="store_true", help="skip the COPY baselines (a) and (b)"
    )
    bench.add_argument(
        "--sessions", type=int, help="sessions of the parallel COPY baselines (default: cores)"
    )
    bench.add_argument(
        "--days", type=int, help="days to load, each on top of the ones before (1; --reads 30)"
    )
    bench.add_argument(
        "--layouts",
        action="store_true",
        help="the same readings as hourly, gateway (1x5, 50x5, 100x1 minutes) and one-file layouts",
    )
    bench.add_argument(
        "--layout",
        action="append",
        help="--layouts: only this one (hourly, 1x5, 50x5, 100x1, one-file; repeatable)",
    )
    bench.add_argument(
        "--live",
        type=int,
        metavar="MINUTES",
        help="the Dagster daemon with its sensors, fed gateway files at the fleet's rate",
    )
    bench.add_argument("--gateways", type=int, default=50, help="--live: gateway folders")
    bench.add_argument("--file-minutes", type=int, default=1, help="--live: minutes a file")
    bench.add_argument(
        "--executor", choices=("in_process", "celery"), help="celery: the units job on workers"
    )
    bench.add_argument(
        "--workers", type=int, action="append", help="--executor celery: workers (1, 2 and 4)"
    )
    bench.add_argument("--reads", action="store_true", help="the 24-hour summary over HTTP instead")
    bench.add_argument("--reuse-db", help="--reads: keep the history in this database, reuse it")
    bench.add_argument("--read-seconds", type=float, default=10.0, help="--reads: per phase")

    demo = commands.add_parser("demo", help="simulate a small fleet, ingest it, show the result")
    add_simulation_options(demo, meters=20, minutes=0)
    demo.add_argument("--landing", help="landing root (default: $ENERGY_LANDING_DIR or ./landing)")

    # Every argument after `ui` (-p 3001, --help) goes to `dg dev`.
    commands.add_parser(
        "ui",
        add_help=False,
        help="the Dagster UI, daemon and code server (dg dev) on the instance the CLI writes "
        "to: $DAGSTER_HOME when exported, else .dagster_home/ in the working folder; Ctrl-C "
        "stops them and the embedded PostgreSQL they used",
    )

    gateway = commands.add_parser(
        "gateway", help="serve the original HTTP API, spooling accepted records into landing"
    )
    gateway.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    gateway.add_argument("--port", type=int, help=f"port (default: $PORT or {GATEWAY_PORT})")
    gateway.add_argument(
        "--landing", help="landing root (default: $ENERGY_LANDING_DIR or ./landing)"
    )
    gateway.add_argument(
        "--allow-unauthenticated-remote",
        action="store_true",
        help="listen beyond loopback without ENERGY_GATEWAY_TOKEN (refused otherwise)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "ui":
        parser.error("unrecognized arguments: " + " ".join(extra))
    try:
        if args.command == "ingest":
            status = run_ingest(
                _settings(args), args.settle_seconds, args.stats_json, args.executor
            )
            gc.freeze()  # what the run left needs no collection pass at exit either
            return status
        if args.command == "db" and args.db_command == "settings":
            return run_db_settings(args)
        if args.command == "db":
            return run_db_upgrade(_settings(args))
        if args.command == "performance":
            return run_performance(_settings(args), args.vehicle_id, args.as_of)
        if args.command == "simulate":
            return run_simulate(args)
        if args.command == "demo":
            return run_demo(args)
        if args.command == "quality":
            return run_quality(_settings(args), args.day)
        if args.command == "retention":
            return run_retention(_settings(args), args.keep_days)
        if args.command == "bench":
            return run_bench(_settings(args), args)
        if args.command == "gateway":
            return run_gateway(args)
        if args.command == "ui":
            return run_ui(extra)
    except (ConnectionError, ValueError) as exc:
        print(f"energy-pipelines: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
