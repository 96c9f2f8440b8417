"""`energy-pipelines bench --live MINUTES`: the real Dagster daemon, fed at the fleet's rate.

The readings of the next MINUTES are generated first and cut into a gateway layout (each of G
gateways one file per stream every M minutes). The daemon then runs against the project's
definitions and the shipped instance configuration (.dagster_home/dagster.yaml) with its
sensors on, while each window's files are dropped into landing as soon as the wall clock has
passed the window. Every second the bench reads what the database says happened (the manifest,
the hot-status and daily watermarks) and what Dagster's instance holds (runs launched, queued),
and reports lags from each file's drop: to its manifest row, to hot status, to the daily tables.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from energy_pipelines.dagster_home import dagster_home
from energy_pipelines.layouts import Layout, cut_into_gateways
from energy_pipelines.load.database import connect, execute_admin, with_database
from energy_pipelines.load.migrations import upgrade
from energy_pipelines.read_load import nearest_rank
from energy_pipelines.simulate import simulate

_WORKSPACE = """load_from:
  - python_module:
      module_name: energy_pipelines.defs
      attribute: defs
"""


@dataclass(frozen=True)
class LiveShape:
    minutes: int
    gateways: int = 50
    file_minutes: int = 1
    meters: int = 5000
    vehicles: int = 5000
    # After the last drop: how long to wait for the pipeline to catch up.
    drain_seconds: float = 360.0


@dataclass
class _Observed:
    dropped: dict[str, float] = field(default_factory=dict)  # landing path -> drop time
    manifest: dict[str, tuple[int, str, float]] = field(default_factory=dict)  # id, stream, t
    hot_at: dict[int, float] = field(default_factory=dict)  # file_id -> first seen in hot
    daily_at: dict[int, float] = field(default_factory=dict)  # file_id -> first seen in daily
    samples: list[dict[str, Any]] = field(default_factory=list)


def _windows(staging: Path) -> dict[str, list[Path]]:
    """Staged files by their window's name stamp (`meter-20260210T0140.parquet`)."""
    windows: dict[str, list[Path]] = {}
    for path in sorted(staging.rglob("*.parquet")):
        if path.parent.parent.name in ("meter", "vehicle"):
            windows.setdefault(path.stem.rsplit("-", 1)[1], []).append(path)
    return windows


def _drop(path: Path, staging: Path, landing: Path, observed: _Observed) -> None:
    relative = path.relative_to(staging).as_posix()
    destination = landing / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, destination)  # atomic: the pipeline sees whole files only
    observed.dropped[relative] = time.time()


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "count": 0}
    ordered = sorted(values)
    p50, p95 = (round(nearest_rank(ordered, share), 1) for share in (0.5, 0.95))
    return {"p50": p50, "p95": p95, "max": round(ordered[-1], 1), "count": len(values)}


def _poll_database(conn: Any, observed: _Observed, since_id: int) -> int:
    """New manifest rows, and which files hot status and the daily tables have taken in."""
    now = time.time()
    with conn.cursor() as cur:
        cur.execute(
            "SELECT file_id, stream, path, extract(epoch FROM finished_at)::float8"
            " FROM ingested_files WHERE file_id > $1 ORDER BY file_id",
            (since_id,),
        )
        for file_id, stream, path, finished in cur.fetchall():
            observed.manifest[path] = (int(file_id), stream, float(finished))
            since_id = max(since_id, int(file_id))
        cur.execute("SELECT stream, last_file_id FROM hot_status_watermark")
        hot = dict(cur.fetchall())
        cur.execute("SELECT stream, last_file_id FROM daily_analytics_watermarks")
        daily = dict(cur.fetchall())
    conn.rollback()
    for file_id, stream, _ in observed.manifest.values():
        if file_id not in observed.hot_at and hot.get(stream, 0) >= file_id:
            observed.hot_at[file_id] = now
        if file_id not in observed.daily_at and daily.get(stream, 0) >= file_id:
            observed.daily_at[file_id] = now
    return since_id


def _backlog(landing: Path) -> int:
    count = 0
    for stream in ("meter", "vehicle"):
        for _folder, dirs, files in os.walk(landing / stream):
            dirs[:] = [d for d in dirs if not d.startswith(("_", "."))]
            count += sum(1 for f in files if f.endswith(".parquet"))
    return count


def _run_counts(instance: Any) -> dict[str, int]:
    from dagster import DagsterRunStatus, RunsFilter

    counts = {}
    for name, status in (
        ("queued", DagsterRunStatus.QUEUED),
        ("running", DagsterRunStatus.STARTED),
        ("succeeded", DagsterRunStatus.SUCCESS),
        ("failed", DagsterRunStatus.FAILURE),
    ):
        counts[name] = instance.get_runs_count(RunsFilter(statuses=[status]))
    return counts


def _start_daemon(work: Path, home: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    daemon = Path(sys.executable).with_name("dagster-daemon")
    command = [str(daemon), "run", "-w", str(work / "workspace.yaml")]
    log = (work / "daemon.log").open("wb")
    return subprocess.Popen(
        command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _prepare(work: Path, shape: LiveShape) -> tuple[Path, Path, datetime]:
    """Generate the period's readings, cut into the gateway layout, under work/staging."""
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % shape.file_minutes)
    source, staging = work / "source", work / "staging"
    simulate(source, shape.meters, shape.vehicles, start, shape.minutes + shape.file_minutes)
    layout = Layout("live", shape.gateways, shape.file_minutes)
    cut_into_gateways(source, staging, layout, "parquet")
    return source, staging, start


def run_live(server_url: str, work: Path, shape: LiveShape) -> dict[str, Any]:
    from dagster import DagsterInstance

    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    name = f"energy_live_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    url = with_database(server_url, name)
    home, landing = work / "dagster_home", work / "landing"
    home.mkdir()
    # The instance settings (retries, the postgres_writes pool) of the instance the CLI uses.
    shutil.copy(dagster_home() / "dagster.yaml", home / "dagster.yaml")
    (work / "workspace.yaml").write_text(_WORKSPACE, encoding="utf-8")
    for stream in ("meter", "vehicle", "correlation"):
        (landing / stream).mkdir(parents=True)
    print(f"  generating {shape.minutes} minutes of the fleet ...", flush=True)
    _source, staging, start = _prepare(work, shape)
    windows = _windows(staging)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DATABASE_URL": url,
        "ENERGY_LANDING_DIR": str(landing),
    }
    observed = _Observed()
    daemon = None
    try:
        with connect(url) as conn:
            upgrade(conn)
            for path in sorted((staging / "correlation").iterdir()):
                _drop(path, staging, landing, observed)
            daemon = _start_daemon(work, home, env)
            instance = DagsterInstance.from_config(str(home))
            result = _observe(conn, instance, shape, windows, staging, landing, start, observed)
    finally:
        if daemon is not None:
            _stop(daemon)
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return result


def _observe(
    conn: Any,
    instance: Any,
    shape: LiveShape,
    windows: dict[str, list[Path]],
    staging: Path,
    landing: Path,
    start: datetime,
    observed: _Observed,
) -> dict[str, Any]:
    """Drop each window once it has passed, poll every second, until every dropped file is
    in the daily tables or the drain time is over."""
    stamps = sorted(windows)[: shape.minutes // shape.file_minutes]
    due = {s: start.timestamp() + (i + 1) * shape.file_minutes * 60 for i, s in enumerate(stamps)}
    cpu_before, bench_before = psutil.cpu_times(), psutil.Process().cpu_times()
    writing_started = time.time()
    last_id, last_print, writing_ended = 0, 0.0, None
    while True:
        now = time.time()
        for stamp in [s for s in stamps if due[s] <= now]:
            for path in windows.pop(stamp):
                _drop(path, staging, landing, observed)
            stamps.remove(stamp)
        if not stamps and writing_ended is None:
            writing_ended = now
            cpu_after, bench_after = psutil.cpu_times(), psutil.Process().cpu_times()
        last_id = _poll_database(conn, observed, last_id)
        sample = {"t": round(now - writing_started, 1), "backlog": _backlog(landing)}
        sample.update(_run_counts(instance))
        observed.samples.append(sample)
        if now - last_print >= 30:
            last_print = now
            print(_progress(sample, observed), flush=True)
        caught_up = all(
            path in observed.manifest and observed.manifest[path][0] in observed.daily_at
            for path in observed.dropped
            if not path.startswith("correlation/")
        )
        if writing_ended is not None and (caught_up or now - writing_ended > shape.drain_seconds):
            break
        time.sleep(max(0.0, 1.0 - (time.time() - now)))
    return _report(shape, observed, writing_started, writing_ended, cpu_before, cpu_after) | {
        "bench_process_cpu_seconds": round(
            (bench_after.user + bench_after.system) - (bench_before.user + bench_before.system), 1
        )
    }


def _lags(observed: _Observed) -> dict[str, list[float]]:
    manifest, hot, daily = [], [], []
    for path, dropped in observed.dropped.items():
        entry = observed.manifest.get(path)
        if entry is None:
            continue
        file_id, stream, finished = entry
        manifest.append(finished - dropped)
        if stream == "correlation":
            continue
        if file_id in observed.hot_at:
            hot.append(observed.hot_at[file_id] - dropped)
        if file_id in observed.daily_at:
            daily.append(observed.daily_at[file_id] - dropped)
    return {"manifest": manifest, "hot": hot, "daily": daily}


def _progress(sample: dict[str, Any], observed: _Observed) -> str:
    lags = _lags(observed)
    p95 = {k: _percentiles(v)["p95"] for k, v in lags.items()}
    return (
        f"  {sample['t']:>6.0f} s: dropped {len(observed.dropped)}, in manifest "
        f"{len(observed.manifest)}, backlog {sample['backlog']}, runs queued {sample['queued']}"
        f" running {sample['running']} done {sample['succeeded']} failed {sample['failed']};"
        f" lag p95 manifest {p95['manifest']} s, hot {p95['hot']} s, daily {p95['daily']} s"
    )


def _report(
    shape: LiveShape,
    observed: _Observed,
    writing_started: float,
    writing_ended: float | None,
    cpu_before: Any,
    cpu_after: Any,
) -> dict[str, Any]:
    busy = (cpu_after.user + cpu_after.system + cpu_after.nice + getattr(cpu_after, "irq", 0)) - (
        cpu_before.user + cpu_before.system + cpu_before.nice + getattr(cpu_before, "irq", 0)
    )
    seconds = (writing_ended or time.time()) - writing_started
    cores = psutil.cpu_count() or 1
    lags = _lags(observed)
    backlog = [s["backlog"] for s in observed.samples]
    writing = [s for s in observed.samples if s["t"] <= seconds]
    half = len(writing) // 2
    return {
        "shape": {
            "minutes": shape.minutes,
            "gateways": shape.gateways,
            "file_minutes": shape.file_minutes,
            "devices": shape.meters + shape.vehicles,
            "files_dropped": len(observed.dropped),
        },
        "lag_seconds": {
            "drop_to_manifest": _percentiles(lags["manifest"]),
            "drop_to_hot_status": _percentiles(lags["hot"]),
            "drop_to_daily": _percentiles(lags["daily"]),
        },
        "files_loaded": len(observed.manifest),
        "runs": observed.samples[-1] if observed.samples else {},
        "max_queued_runs": max((s["queued"] for s in observed.samples), default=0),
        "backlog_files": {
            "max": max(backlog, default=0),
            "first_half_of_writing_mean": _mean([s["backlog"] for s in writing[:half]]),
            "second_half_of_writing_mean": _mean([s["backlog"] for s in writing[half:]]),
            "at_end": backlog[-1] if backlog else 0,
        },
        "machine_cpu_percent_while_writing": round(100 * busy / (seconds * cores), 1),
        "cores": cores,
    }


def _mean(values: list[int]) -> float:
    return round(sum(values) / len(values), 1) if values else 0.0
