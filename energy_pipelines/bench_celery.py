"""`energy-pipelines bench --executor celery --workers N`: the units job on N Celery workers.

For each N (1, 2 and 4 unless told), on the same generated files, in a fresh database that also
holds Dagster's storage: N workers are started on a queue of their own (solo pool, one unit at a
time each), `energy-pipelines ingest --executor celery` runs, and the report gives the wall
time and readings/s, each worker's busy seconds (wall time inside units, from the units' own
output) and CPU seconds, and the seconds units spent waiting for locks, sampled from
pg_stat_activity every 20 ms: waits for a stream's loader lock (`stream_lock_wait_seconds`,
measured from the start of the locking statement) and every lock wait (`lock_wait_seconds`,
from the samples). A run that lost or doubled a reading is refused.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from energy_pipelines.bench import BenchSize, cached_files, loaded_readings, settle_server
from energy_pipelines.defs.scale.executors import CelerySettings
from energy_pipelines.load.database import connect, execute_admin, with_database

DEFAULT_WORKERS = (1, 2, 4)
WORKER_APP = "energy-bench-worker"
_SAMPLE_SECONDS = 0.02


class WorkerPool:
    """N Celery worker processes on one queue, started and stopped by the bench."""

    def __init__(self, env: dict[str, str], count: int, logs: Path) -> None:
        self.env, self.logs, self.queue = env, logs, env["ENERGY_CELERY_QUEUE"]
        self.processes: list[subprocess.Popen[bytes]] = []
        for n in range(1, count + 1):
            command = [
                sys.executable,
                *("-m", "celery", "-A", "energy_pipelines.celery_app", "worker"),
                *("--pool", "solo", "--queues", self.queue, "--loglevel", "WARNING"),
                *("--hostname", f"w{n}-{self.queue}@%h", "--without-mingle", "--without-gossip"),
            ]
            url = f"{env['DATABASE_URL']}?application_name={WORKER_APP}-{n}"
            with (logs / f"worker-{n}.log").open("wb") as out:
                self.processes.append(
                    subprocess.Popen(
                        command,
                        env={**env, "DATABASE_URL": url},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every worker listens (its connection to the broker is up)."""
        from kombu import Connection

        deadline = time.monotonic() + timeout
        with Connection(self.env["ENERGY_CELERY_BROKER"]) as connection:
            while time.monotonic() < deadline:
                for n, process in enumerate(self.processes, 1):
                    if process.poll() is not None:
                        log = (self.logs / f"worker-{n}.log").read_text(errors="replace")
                        raise RuntimeError(f"worker {n} exited:\n{log[-2000:]}")
                if self._consumers(connection) >= len(self.processes):
                    return
                time.sleep(0.2)
        raise RuntimeError(f"{len(self.processes)} workers not ready within {timeout} s")

    def _consumers(self, connection: Any) -> int:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(self.queue, passive=True).consumer_count)
        except Exception:  # the queue does not exist until a worker declares it
            return 0
        finally:
            channel.close()

    def cpu_seconds(self) -> list[float]:
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = []
        for process in self.processes:
            fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            seconds.append((int(fields[11]) + int(fields[12])) / ticks)
        return seconds

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()
        from kombu import Connection

        with Connection(self.env["ENERGY_CELERY_BROKER"]) as connection:
            channel = connection.channel()
            channel.queue_delete(self.queue)
            channel.close()


class LockWaits:
    """Samples pg_stat_activity of the workers' sessions: how long units wait for locks."""

    def __init__(self, database_url: str) -> None:
        self.url, self.samples = database_url, 0
        self.stream_waits: dict[tuple[int, Any], float] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        with connect(self.url, autocommit=True) as conn, conn.cursor() as cur:
            while not self.stop_event.is_set():
                cur.execute(
                    "SELECT pid, query_start, extract(epoch FROM clock_timestamp() - query_start),"
                    " query LIKE '%loader_locks%' FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND application_name LIKE $1",
                    (f"{WORKER_APP}-%",),
                )
                for pid, since, waited, on_stream_lock in cur.fetchall():
                    self.samples += 1
                    if on_stream_lock:
                        self.stream_waits[(pid, since)] = float(waited)
                time.sleep(_SAMPLE_SECONDS)

    def stop(self) -> dict[str, float]:
        self.stop_event.set()
        self.thread.join()
        return {
            "lock_wait_seconds": round(self.samples * _SAMPLE_SECONDS, 2),
            "stream_lock_wait_seconds": round(sum(self.stream_waits.values()), 2),
            "stream_lock_waits": len(self.stream_waits),
        }


def _unit_outputs(dagster_home: Path, run_id: str) -> list[dict[str, Any]]:
    """The units' own reports (worker, seconds, cpu_seconds) from Dagster's event log."""
    import dagster as dg

    outputs = []
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT):
            event = entry.dagster_event
            if event is None or not (event.step_key or "").startswith("load_unit_files["):
                continue
            metadata = event.step_output_data.metadata
            outputs.append({k: getattr(v, "value", v) for k, v in metadata.items()})
    return outputs


def _run_once(
    server_url: str, files: Path, work: Path, workers: int, readings: int
) -> dict[str, Any]:
    name = f"energy_bench_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    url = with_database(server_url, name)
    run_dir = work / f"workers-{workers}"
    shutil.rmtree(run_dir, ignore_errors=True)
    landing, home = run_dir / "landing", run_dir / "dagster_home"
    shutil.copytree(files, landing, ignore=shutil.ignore_patterns(".complete"))
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {url}\ntelemetry:\n  enabled: false\n"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DAGSTER_HOME": str(home.resolve()),
        "ENERGY_LANDING_DIR": str(landing.resolve()),
        "ENERGY_SETTLE_SECONDS": "0",
        "ENERGY_EXECUTOR": "celery",
        "ENERGY_CELERY_BROKER": CelerySettings.from_env().broker,
        "ENERGY_CELERY_QUEUE": f"energy-bench-{uuid.uuid4().hex[:12]}",
    }
    pool = WorkerPool(env, workers, run_dir)
    try:
        pool.wait_ready()
        settle_server(server_url)
        cpu_before = pool.cpu_seconds()
        waits = LockWaits(url)
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "energy_pipelines.cli", "ingest", "--executor", "celery"],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - started
        locks = waits.stop()
        cpu = [after - before for before, after in zip(cpu_before, pool.cpu_seconds(), strict=True)]
        if done.returncode != 0:
            raise RuntimeError(f"the run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        read, loaded = loaded_readings(url)
        if (read, loaded) != (readings, readings):
            raise RuntimeError(
                f"expected {readings} readings read and loaded, got {read}, {loaded}"
            )
        run_id = next(
            line.split()[1] for line in done.stdout.splitlines() if line.startswith("run ")
        )
        units = _unit_outputs(home, run_id)
        pids = {str(p.pid): n for n, p in enumerate(pool.processes, 1)}
        busy = dict.fromkeys(range(1, workers + 1), 0.0)
        for unit in units:
            busy[pids[unit["worker"].rsplit(":", 1)[1]]] += float(unit["seconds"])
        first = min(float(u["started_at"]) for u in units)
        last = max(float(u["started_at"]) + float(u["seconds"]) for u in units)
        return {
            "workers": workers,
            "seconds": round(seconds, 2),
            "units_wall_seconds": round(last - first, 2),
            "rows_per_second": round(readings / seconds),
            "units": len(units),
            "worker_busy_seconds": {str(n): round(s, 2) for n, s in busy.items()},
            "worker_cpu_seconds": {str(n): round(s, 2) for n, s in enumerate(cpu, 1)},
            "busy_share_of_wall": round(sum(busy.values()) / (workers * seconds), 2),
            **locks,
        }
    finally:
        pool.stop()
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_celery_bench(
    server_url: str, cache: Path, size: BenchSize, worker_counts: tuple[int, ...]
) -> dict[str, Any]:
    files = cached_files(cache, size)
    report: dict[str, Any] = {
        "readings": size.rows,
        "files": sum(1 for p in files.rglob("*") if p.is_file() and p.name != ".complete"),
        "unit_limits": "ENERGY_BATCH_MAX_FILES / _MB / _ROWS",
        "runs": [],
    }
    for workers in worker_counts:
        print(f"  {workers} worker(s) ...", flush=True)
        report["runs"].append(_run_once(server_url, files, cache / "celery", workers, size.rows))
    return report


def run_from_args(server_url: str, cache: Path, args: Any) -> int:
    """The bench command's --executor celery: sizes as for the pipeline bench."""
    import json

    if args.quick:
        size = BenchSize(200, 200, 240, 4, args.format)
    else:
        vehicles = args.vehicles if args.vehicles is not None else args.meters
        size = BenchSize(args.meters, vehicles, args.minutes, args.files_per_stream, args.format)
    counts = tuple(args.workers or DEFAULT_WORKERS)
    if min(counts) < 1:
        raise ValueError("--workers must be at least 1")
    report = run_celery_bench(server_url, cache, size, counts)
    line = json.dumps(report)
    if args.json:
        Path(args.json).write_text(line + "\n", encoding="utf-8")
    print(line)
    return 0
