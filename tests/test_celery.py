"""The units job on Celery workers over the real broker (RabbitMQ on 127.0.0.1:5672): units
spread over workers, a worker killed mid-unit (at each crash point, or kill -9 from outside)
has its unit redelivered and loaded once, a unit delivered twice at once loads once, a broker
that is down, a worker without its database, a stale worker.

Each test gets its own queue (deleted afterwards), its own database (which also holds Dagster's
storage, as dagster-postgres would in production) and its own worker processes, all stopped.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from energy_pipelines.defs.scale.executors import DEFAULT_BROKER
from energy_pipelines.layouts import Layout, cut_into_gateways
from energy_pipelines.simulate import simulate
from tests.conftest import query
from tests.helpers import cli

# Real worker and server processes: the full suite (CI) runs these.
pytestmark = pytest.mark.slow

METERS = VEHICLES = 20
MINUTES = 60
# 4 gateways x 5-minute files: 48 files a stream, 25 readings each, and one correlation file.
LAYOUT = Layout("4 gateways x 5-minute files", 4, 5)
READING_FILES = 2 * 4 * (MINUTES // 5)
ALL_FILES = READING_FILES + 1
# Units of at most 16 files (ENERGY_BATCH_MAX_FILES): 3 a reading stream, 1 for correlation.
UNITS = 3 + 3 + 1
BROKER_HOST, BROKER_PORT = "127.0.0.1", 5672


def _broker_answers() -> bool:
    try:
        with socket.create_connection((BROKER_HOST, BROKER_PORT), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def _broker() -> None:
    if not _broker_answers():
        message = f"RabbitMQ does not answer on {BROKER_HOST}:{BROKER_PORT}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + " (CI starts it: .ci/run)")


@pytest.fixture(scope="module")
def gateway_landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A gateway-layout landing, written once for the module and copied into each test's."""
    whole = tmp_path_factory.mktemp("whole")
    simulate(
        whole,
        meters=METERS,
        vehicles=VEHICLES,
        start=datetime(2026, 2, 10, tzinfo=UTC),
        minutes=MINUTES,
        file_format="parquet",
        files_per_stream=1,
    )
    root = tmp_path_factory.mktemp("gateways")
    assert cut_into_gateways(whole, root, LAYOUT, "parquet") == READING_FILES
    return root


class Workers:
    """Celery worker processes of one test, on its own queue; each stopped at the end."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, **extra_env: str) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}.log"
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "energy_pipelines.celery_app",
            "worker",
            "--pool",
            "solo",
            "--queues",
            self.env["ENERGY_CELERY_QUEUE"],
            "--hostname",
            # Unique on the broker: a worker's control queue is named after it.
            f"{name}-{self.env['ENERGY_CELERY_QUEUE']}@%h",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, env={**self.env, **extra_env}, stdout=out, stderr=subprocess.STDOUT
            )
        self.started[name] = process
        return process

    def wait_ready(self, name: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log(name):
                return
            if self.started[name].poll() is not None:
                raise AssertionError(f"worker {name} exited:\n{self.log(name)[-3000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker {name} not ready in {timeout} s:\n{self.log(name)[-3000:]}")

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def tasks_done(self, name: str) -> int:
        return len(re.findall(r"Task execute_plan\[[^\]]+\] succeeded", self.log(name)))

    def stop_all(self) -> None:
        # Killed, not asked to stop: a message one of them held goes back to the queue, and
        # the queue is deleted next.
        for process in self.started.values():
            if process.poll() is None:
                process.kill()
            process.wait()


def _delete_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    with Connection(broker, connect_timeout=5) as connection:
        channel = connection.channel()
        try:
            channel.queue_delete(queue)
        finally:
            channel.close()


@pytest.fixture
def celery_env(
    env: dict[str, str], database_url: str, tmp_path: Path, landing: Path, gateway_landing: Path
) -> Iterator[dict[str, str]]:
    """The environment of the run's process and of every worker: the test's database (data and
    Dagster storage), landing, a queue of its own, units of at most 6 files."""
    shutil.copytree(gateway_landing, landing, dirs_exist_ok=True)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"storage:\n  postgres:\n    postgres_url: {database_url}\ntelemetry:\n  enabled: false\n"
    )
    queue = f"energy-test-{uuid.uuid4().hex[:12]}"
    variables = {
        **env,
        "DAGSTER_HOME": str(home),
        "ENERGY_EXECUTOR": "celery",
        "ENERGY_CELERY_BROKER": DEFAULT_BROKER,
        "ENERGY_CELERY_QUEUE": queue,
        "ENERGY_BATCH_MAX_FILES": "16",
    }
    for name in ("ENERGY_CRASH_AT", "ENERGY_PAUSE_AT"):
        variables.pop(name, None)
    yield variables
    _delete_queue(DEFAULT_BROKER, queue)


@pytest.fixture
def workers(celery_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    started = Workers(celery_env, tmp_path)
    yield started
    started.stop_all()


def assert_loaded_exactly_once(db, landing: Path) -> None:  # type: ignore[no-untyped-def]
    """Every landing file one manifest row, loaded; history holds every reading once."""
    [(rows, paths, loaded)] = query(
        db,
        "SELECT count(*), count(DISTINCT path), count(*) FILTER (WHERE status = 'loaded')"
        " FROM ingested_files",
    )
    assert (rows, paths, loaded) == (ALL_FILES, ALL_FILES, ALL_FILES)
    for table, device in (
        ("meter_readings_history", "meter_id"),
        ("vehicle_readings_history", "vehicle_id"),
    ):
        [(count, distinct)] = query(
            db, f"SELECT count(*), count(DISTINCT ({device}, ts)) FROM {table}"
        )
        assert count == distinct == METERS * MINUTES
    [(read, stored)] = query(
        db,
        "SELECT sum(rows_read)::bigint, sum(rows_loaded)::bigint FROM ingested_files"
        " WHERE stream <> 'correlation'",
    )
    assert read == stored == (METERS + VEHICLES) * MINUTES
    waiting = [p for p in (landing / "meter").rglob("*.parquet")]
    waiting += [p for p in (landing / "vehicle").rglob("*.parquet")]
    assert waiting == []


def _run_id(output: str) -> str:
    found = re.search(r"^run (\S+) on ", output, re.MULTILINE)
    assert found, output
    return found.group(1)


def test_units_spread_over_two_workers_load_every_file_once(
    workers: Workers, celery_env: dict[str, str], db, landing: Path
) -> None:
    for name in ("w1", "w2"):
        workers.start(name)
    for name in ("w1", "w2"):
        workers.wait_ready(name)
    done = cli("ingest", "--executor", "celery", env=celery_env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_loaded_exactly_once(db, landing)
    # Both workers took steps: the plan, the units and the refresh went to whichever was free.
    assert workers.tasks_done("w1") >= 1 and workers.tasks_done("w2") >= 1
    assert workers.tasks_done("w1") + workers.tasks_done("w2") == 1 + UNITS + 1
    [(refreshed,)] = query(db, "SELECT count(*) FROM meter_current_status")
    assert refreshed == METERS


def _session_paused(db, application_name: str) -> bool:  # type: ignore[no-untyped-def]
    [(paused,)] = query(
        db,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
        " AND state = 'idle in transaction'",
        (application_name,),
    )
    return paused > 0


def _unit_committed(db, doomed: subprocess.Popen[Any]) -> bool:  # type: ignore[no-untyped-def]
    """A unit's files are in the manifest and the worker is still alive (paused after its
    commit, before moving them)."""
    [(files,)] = query(db, "SELECT count(*) FROM ingested_files")
    return files > 0 and doomed.poll() is None


def _wait(condition, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not seen within {timeout} s: {what}")


@pytest.mark.parametrize("fault", ["crash after_history_insert", "kill -9 after_commit"])
def test_a_worker_killed_mid_unit_has_its_unit_redelivered_and_loaded_once(
    fault: str,
    workers: Workers,
    celery_env: dict[str, str],
    database_url: str,
    db,
    landing: Path,
) -> None:
    """Worker `doomed` alone takes the plan and a unit, and dies in the unit's middle: by its
    own crash point inside the unit's transaction, or killed by the test while it pauses after
    the unit's commit, before its files are moved out of landing. Its message, never
    acknowledged, goes to the workers started after it."""
    how, point = fault.split(" ", 1) if fault.startswith("crash") else ("kill", "after_commit")
    if how == "kill":
        doomed_env = {
            "ENERGY_PAUSE_AT": point,
            "ENERGY_PAUSE_SECONDS": "120",
            "DATABASE_URL": f"{database_url}?application_name=doomed-worker",
        }
    else:
        doomed_env = {"ENERGY_CRASH_AT": point}
    doomed = workers.start("doomed", **doomed_env)
    workers.wait_ready("doomed")
    run = cli("ingest", "--executor", "celery", env=celery_env, wait=False)
    try:
        if how == "kill":
            _wait(lambda: _unit_committed(db, doomed), 90, "a unit committed, its files waiting")
            doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=90)
        assert doomed.returncode == -signal.SIGKILL
        for name in ("w1", "w2"):
            workers.start(name)
        _, errors = run.communicate(timeout=240)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 0, errors[-3000:]
    assert_loaded_exactly_once(db, landing)
    # Every step finished once, the killed one on another worker: plan, 17 units, refresh.
    finished = [workers.tasks_done(name) for name in ("doomed", "w1", "w2")]
    assert sum(finished) == 1 + UNITS + 1 and finished[0] >= 1


class Cuttable:
    """A TCP relay to the broker whose connections the test can cut, as a network fault
    between one worker and the broker would: the broker then hands that worker's unacknowledged
    message to another worker while the first is still working on it."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.open = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            upstream = socket.create_connection((BROKER_HOST, BROKER_PORT))
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for s in (source, target):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open = False
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def reopen(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_a_unit_delivered_twice_at_once_loads_once(
    workers: Workers, celery_env: dict[str, str], database_url: str, db, landing: Path
) -> None:
    """`slow` pauses inside a unit's transaction; its broker connection is cut, so the broker
    delivers the same unit to `w1` while `slow` still holds it. `w1` waits for the stream's
    lock, then finds the files done; `slow` commits them. Exactly once either way."""
    relay = Cuttable()
    try:
        slow = workers.start(
            "slow",
            ENERGY_CELERY_BROKER=f"amqp://guest:guest@127.0.0.1:{relay.port}//",
            ENERGY_PAUSE_AT="after_history_insert",
            ENERGY_PAUSE_SECONDS="12",
            DATABASE_URL=f"{database_url}?application_name=slow-worker",
        )
        workers.wait_ready("slow")
        run = cli("ingest", "--executor", "celery", env=celery_env, wait=False)
        try:
            _wait(lambda: _session_paused(db, "slow-worker"), 90, "the unit paused mid-load")
            relay.cut()
            workers.start("w1")
            output, errors = run.communicate(timeout=240)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
        assert run.returncode == 0, errors[-3000:]
        assert slow.poll() is None  # never killed: it finished its copy
    finally:
        relay.close()
    assert_loaded_exactly_once(db, landing)
    run_id = _run_id(output)
    started = _run_logs(celery_env, run_id, "in celery worker")
    steps = [re.search(r"Executing steps (\S+) in", m).group(1) for m in started]  # type: ignore[union-attr]
    assert any(steps.count(step) == 2 for step in steps), "no unit was delivered twice"
    found_done = _run_logs(celery_env, run_id, "found done by another")
    assert found_done, "no copy of the unit recorded that it found the work done"


def _run_logs(env: dict[str, str], run_id: str, text: str) -> list[str]:
    """Messages of the run's event log in Dagster's storage containing `text`."""
    import dagster as dg

    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return [e.message for e in instance.all_logs(run_id) if text in (e.message or "")]


def test_a_run_started_while_the_broker_is_down_fails_clearly_and_touches_no_file(
    celery_env: dict[str, str], db, landing: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    down = {**celery_env, "ENERGY_CELERY_BROKER": f"amqp://guest:guest@127.0.0.1:{port}//"}
    failed = cli("ingest", "--executor", "celery", env=down)
    assert failed.returncode != 0
    assert f"the Celery broker at amqp://guest:***@127.0.0.1:{port}// does not answer" in (
        failed.stderr
    )
    assert query(db, "SELECT count(*) FROM ingested_files") == [(0,)]
    assert len(list((landing / "meter").rglob("*.parquet"))) == READING_FILES // 2


def test_the_executor_itself_fails_the_run_when_the_broker_is_down(
    celery_env: dict[str, str], db, landing: Path
) -> None:
    """Without the command's check (a run launched from the UI or a sensor), the run fails at
    its first step's submission with the broker's error, and nothing is loaded."""
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    down = {**celery_env, "ENERGY_CELERY_BROKER": f"amqp://guest:guest@127.0.0.1:{port}//"}
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "energy_pipelines.defs",
            "-a",
            "defs",
            "-j",
            "ingest_units_job",
        ],
        env=down,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert failed.returncode != 0
    assert "Connection refused" in failed.stdout + failed.stderr
    assert query(db, "SELECT count(*) FROM ingested_files") == [(0,)]


def test_a_worker_without_its_database_refuses_to_start(
    workers: Workers, celery_env: dict[str, str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as unused:
        port = unused.getsockname()[1]
    lost = workers.start("lost", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/none")
    assert lost.wait(timeout=60) == 3
    assert "is not reachable" in workers.log("lost")
    assert "ready." not in workers.log("lost")


def test_a_broker_restart_mid_run_ends_the_run_and_leaves_no_file_half_loaded(
    workers: Workers, celery_env: dict[str, str], db, landing: Path
) -> None:
    """Every connection to the broker (the run's and the workers') drops mid-run and the broker
    comes back, as after a restart. The run completes or fails within a bounded time; every
    manifest row reconciles; a second run loads what is left, each file once."""
    relay = Cuttable()
    through_relay = {
        **celery_env,
        "ENERGY_CELERY_BROKER": f"amqp://guest:guest@127.0.0.1:{relay.port}//",
    }
    try:
        workers.env = through_relay
        for name in ("w1", "w2"):
            workers.start(name)
        for name in ("w1", "w2"):
            workers.wait_ready(name)
        run = cli("ingest", "--executor", "celery", env=through_relay, wait=False)
        try:
            _wait(lambda: _unit_committed(db, run), 120, "a unit committed")
            relay.cut()
            time.sleep(1)
            relay.reopen()
            _, first_errors = run.communicate(timeout=180)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()
                raise AssertionError("the run neither completed nor failed after the restart")
        assert run.returncode == 0 or "ingest failed" in first_errors, first_errors[-3000:]
        [(files, broken)] = query(
            db,
            "SELECT count(*), count(*) FILTER (WHERE rows_read <> rows_loaded + rows_rejected"
            " + rows_duplicate + rows_conflicting) FROM ingested_files",
        )
        assert files > 0 and broken == 0
        [(in_history, counted)] = query(
            db,
            "SELECT (SELECT count(*) FROM meter_readings_history)"
            " + (SELECT count(*) FROM vehicle_readings_history),"
            " (SELECT coalesce(sum(rows_loaded), 0)::bigint FROM ingested_files"
            "  WHERE stream <> 'correlation')",
        )
        assert in_history == counted
    finally:
        relay.close()
    workers.stop_all()
    workers.env = celery_env
    for name in ("w3", "w4"):
        workers.start(name)
    again = cli("ingest", "--executor", "celery", env=celery_env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert_loaded_exactly_once(db, landing)
