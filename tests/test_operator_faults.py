"""Faults an operator meets: a lock another role holds, a sensor run that failed, a
gateway clock in the future, a full disk, a daily run that never happened, an open gateway."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from energy_pipelines.load.database import connect
from energy_pipelines.load.locks import stream_lock_holder
from tests.conftest import query
from tests.gateway_helpers import free_port, process_env_for, start_gateway
from tests.helpers import METER_HEADER, as_user, cli, write_csv

ROWS = [f"m-{n},0.5,230,2026-02-11T10:{n:02d}:00Z" for n in range(5)]


# --- 2. the loader's lock: only the loader role can take it, and a wait is bounded ---------


def test_the_analyst_role_cannot_take_the_loaders_lock_nor_stall_ingest(
    db, env: dict, landing: Path, database_url: str
) -> None:
    from energy_pipelines.load.locks import lock_stream

    write_csv(landing, "meter", "a.csv", METER_HEADER, ROWS)
    analyst = connect(as_user(database_url, "energy_analyst"))
    try:
        with analyst.cursor() as cur, pytest.raises(Exception, match="permission denied"):
            lock_stream(cur, "meter", timeout_seconds=1)
        analyst.rollback()
        # What stalled ingest before: an advisory lock on the stream's old key, which any role
        # may take. It no longer guards anything.
        with analyst.cursor() as cur:
            old_key = (0x656E_6572 << 32) | zlib.crc32(b"meter")
            cur.execute("SELECT pg_advisory_lock($1)", (old_key,))
        run = cli("ingest", env={**env, "ENERGY_LOCK_TIMEOUT_SECONDS": "20"})
    finally:
        analyst.close()
    assert run.returncode == 0, run.stderr
    assert query(db, "SELECT status, rows_loaded FROM ingested_files") == [("loaded", 5)]


def test_a_held_loader_lock_fails_ingest_fast_naming_the_holder_and_touches_no_file(
    db, env: dict, landing: Path, database_url: str
) -> None:
    path = write_csv(landing, "meter", "gw-1/a.csv", METER_HEADER, ROWS)
    loader_url = as_user(database_url, "energy_loader")
    # The embedded server's URL carries its socket folder as a query already.
    named = ("&" if "?" in loader_url else "?") + "application_name=stuck-job"
    holder = connect(loader_url + named)
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT stream FROM loader_locks WHERE stream = 'meter' FOR UPDATE")
            cur.fetchall()
            cur.execute("SELECT pg_backend_pid()")
            pid = int(cur.fetchone()[0])
        with db.cursor() as cur:
            seen = stream_lock_holder(cur, "meter")
        db.rollback()
        assert seen is not None and seen.pid == pid and seen.role == "energy_loader"
        started = time.monotonic()
        run = cli("ingest", env={**env, "ENERGY_LOCK_TIMEOUT_SECONDS": "1.5"})
        elapsed = time.monotonic() - started
    finally:
        holder.rollback()
        holder.close()
    assert run.returncode == 3, run.stderr
    assert elapsed < 60
    assert "loader lock was not free within 1.5 s" in run.stderr
    assert f"pid {pid}, role energy_loader, application_name 'stuck-job'" in run.stderr
    assert "in a transaction since 20" in run.stderr
    assert path.exists() and path.read_text().count("\n") == 6
    assert not (landing / "_quarantine").exists() and not (landing / "_archive").exists()
    assert query(db, "SELECT count(*) FROM ingested_files") == [(0,)]
    again = cli("ingest", env=env)
    assert again.returncode == 0, again.stderr
    assert query(db, "SELECT status, rows_loaded FROM ingested_files") == [("loaded", 5)]


# --- 5. a clock in the future; a writer that goes on after the load ----------------------


def test_a_file_dated_in_the_future_settles_by_this_machines_clock_and_says_so(
    db, env: dict, landing: Path
) -> None:
    from energy_pipelines.contract import METER
    from energy_pipelines.landing.discover import find_waiting_files

    path = write_csv(landing, "meter", "gw-9/a.csv", METER_HEADER, ROWS)
    ahead = time.time() + 3 * 86400  # a gateway whose clock runs three days ahead
    os.utime(path, (ahead, ahead))
    assert find_waiting_files(landing, METER, settle_seconds=5) == []  # not settled yet
    later = find_waiting_files(landing, METER, settle_seconds=5, now=time.time() + 6)
    assert [f.relative_path for f in later] == ["meter/gw-9/a.csv"]
    assert "in the future" in (later[0].clock_note or "")

    time.sleep(1.2)
    run = cli("ingest", env={**env, "ENERGY_SETTLE_SECONDS": "1"})
    assert run.returncode == 0, run.stderr
    assert "note: modification time" in run.stdout and "in the future" in run.stdout
    assert query(db, "SELECT status, rows_loaded FROM ingested_files") == [("loaded", 5)]
    notes = query(db, "SELECT note FROM ingested_file_notes")
    assert len(notes) == 1 and "settled by this machine's inode change time" in notes[0][0]


@pytest.mark.parametrize("path_taken", ["batch", "one_by_one"])
def test_a_file_that_changes_after_its_load_is_noted_in_the_manifest(
    db, env: dict, landing: Path, path_taken: str
) -> None:
    path = write_csv(landing, "meter", "gw-1/a.csv", METER_HEADER, ROWS)
    run_env = {**env, "ENERGY_PAUSE_AT": "after_commit", "ENERGY_PAUSE_SECONDS": "3"}
    if path_taken == "one_by_one":
        run_env["ENERGY_BATCH_FILE_MAX_ROWS"] = "0"
    running = cli("ingest", env=run_env, wait=False)
    try:
        deadline = time.monotonic() + 60
        while not query(db, "SELECT 1 FROM ingested_files") and time.monotonic() < deadline:
            time.sleep(0.05)
        with path.open("a", encoding="utf-8") as writer:  # the writer goes on after the load
            writer.write("m-9,0.5,230,2026-02-11T11:00:00Z\n")
        out, err = running.communicate(timeout=120)
    finally:
        running.kill()
    assert running.returncode == 0, err
    assert query(db, "SELECT status, rows_read, rows_loaded FROM ingested_files") == [
        ("loaded", 5, 5)
    ]
    notes = query(db, "SELECT note FROM ingested_file_notes")
    assert len(notes) == 1 and "changed after it was loaded" in notes[0][0], notes
    assert "not loaded" in notes[0][0]
    assert "note: changed after it was loaded" in out
    archived = list((landing / "_archive" / "meter").rglob("a.csv"))
    assert len(archived) == 1 and archived[0].read_text().count("\n") == 7


# --- 6. a full disk, no inode left: the manifest tells each file's story once -------------


@contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs is mounted only when the tests run as root")
    path.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed although root: {mounted.stderr.strip()}")
    try:
        for stream in ("meter", "vehicle", "correlation"):
            (path / stream).mkdir()
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(root: Path, what: str) -> Path:
    """Use up the filesystem's blocks (`space`) or inodes (`inodes`) in a hidden folder."""
    filler = root / ".filler"
    filler.mkdir()
    try:
        if what == "space":
            with (filler / "blob").open("wb") as blob:
                while True:
                    blob.write(b"\0" * 65536)
                    blob.flush()
        count = 0
        while True:
            (filler / str(count)).touch()
            count += 1
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    return filler


def _paths(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".filler" not in p.parts
    )


def _path_env(env: dict, root: Path, path_taken: str) -> dict:
    changed = {**env, "ENERGY_LANDING_DIR": str(root)}
    if path_taken == "one_by_one":
        changed["ENERGY_BATCH_FILE_MAX_ROWS"] = "0"
    return changed


@pytest.mark.parametrize("path_taken", ["batch", "one_by_one"])
def test_no_inode_left_for_the_archive_leaves_a_loaded_file_in_landing_with_one_row(
    db, env: dict, tmp_path: Path, path_taken: str
) -> None:
    with tmpfs(tmp_path / "small-landing", "size=8m,nr_inodes=64") as root:
        write_csv(root, "meter", "a.csv", METER_HEADER, ROWS)
        filler = fill(root, "inodes")
        run_env = _path_env(env, root, path_taken)
        full = cli("ingest", env=run_env)
        assert full.returncode == 0, full.stderr
        assert query(db, "SELECT status, rows_loaded FROM ingested_files") == [("loaded", 5)]
        assert _paths(root) == ["meter/a.csv"]
        assert "could not be moved to the archive" in full.stderr
        assert "stays in landing" in full.stderr

        shutil.rmtree(filler)
        again = cli("ingest", env=run_env)
        assert again.returncode == 0, again.stderr
        assert query(db, "SELECT status, rows_loaded FROM ingested_files") == [("loaded", 5)]
        [archived] = _paths(root)
        assert archived.startswith("_archive/meter/") and archived.endswith("/a.csv")


@pytest.mark.parametrize("path_taken", ["batch", "one_by_one"])
def test_a_full_disk_leaves_a_rejected_file_in_landing_then_quarantines_it_whole(
    db, env: dict, tmp_path: Path, path_taken: str
) -> None:
    with tmpfs(tmp_path / "small-landing", "size=1m") as root:
        # No kWh column: the whole file is rejected.
        header, row = "meterId,voltage,timestamp", "m-1,230,2026-02-11T10:00:00Z"
        write_csv(root, "meter", "a.csv", header, [row])
        filler = fill(root, "space")
        run_env = _path_env(env, root, path_taken)
        full = cli("ingest", env=run_env)
        assert full.returncode == 0, full.stderr
        rows = query(db, "SELECT file_id, status FROM ingested_files")
        assert [status for _, status in rows] == ["quarantined"]
        # Nothing half-written anywhere: the file where it was, no report, no temporary.
        assert _paths(root) == ["meter/a.csv"]
        assert "could not be moved to quarantine" in full.stderr
        assert "stays in landing" in full.stderr

        shutil.rmtree(filler)
        again = cli("ingest", env=run_env)
        assert again.returncode == 0, again.stderr
        assert query(db, "SELECT file_id, status FROM ingested_files") == rows
        assert _paths(root) == ["_quarantine/meter/a.csv", "_quarantine/meter/a.csv.error.json"]
        report = json.loads((root / "_quarantine/meter/a.csv.error.json").read_text())
        assert "kwh" in report["error"].lower() and report["file"] == "meter/a.csv"


# --- 3 and 4. the landing sensor: each stream its share; a failed run is retried ----------


def _landing_sensor():  # type: ignore[no-untyped-def]
    from energy_pipelines.defs import defs
    from energy_pipelines.defs.ingestion.sensors import build_landing_sensor

    return build_landing_sensor(defs.resolve_job_def("ingest_job"))


def test_each_stream_gets_its_share_of_a_tick(
    landing: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from energy_pipelines.defs.resources import EnergyStorage

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENERGY_MAX_FILES_PER_RUN", "2")
    for n in range(6):
        write_csv(landing, "meter", f"m{n}.csv", METER_HEADER, ROWS[:1])
    write_csv(landing, "vehicle", "v.csv", "vehicleId,soc,kwhDeliveredDc,batteryTemp,timestamp", [])
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
    energy = EnergyStorage(landing_dir=str(landing), settle_seconds=0)
    result = _landing_sensor()(dg.build_sensor_context(resources={"energy": energy}))
    [request] = result.run_requests
    paths = request.run_config["ops"]["load_landing_files"]["config"]["paths"]
    assert paths == ["correlation/c.csv", "meter/m0.csv", "meter/m1.csv", "vehicle/v.csv"]
    assert request.tags["energy/files_waiting_after"] == "4"


def test_files_still_waiting_after_a_failed_run_are_requested_again_after_a_back_off(
    db, landing: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from energy_pipelines.defs import defs
    from energy_pipelines.defs.resources import EnergyStorage
    from energy_pipelines.load.database import with_database
    from energy_pipelines.settings import SensorRetry

    assert [SensorRetry(30, 900).delay(n) for n in (1, 2, 3, 5, 6, 40)] == [
        30,
        60,
        120,
        480,
        900,
        900,
    ]
    write_csv(landing, "meter", "gw-1/a.csv", METER_HEADER, ROWS)
    energy = EnergyStorage(landing_dir=str(landing), settle_seconds=0)
    sensor = _landing_sensor()
    job = defs.resolve_job_def("ingest_job")
    config = {"landing_dir": str(landing), "settle_seconds": 0}
    resources = {"resources": {"energy": {"config": config}}}
    monkeypatch.setenv("ENERGY_SENSOR_RETRY_SECONDS", "600")
    with dg.instance_for_test() as instance:

        def tick():  # type: ignore[no-untyped-def]
            return sensor(dg.build_sensor_context(instance=instance, resources={"energy": energy}))

        def run(request: dg.RunRequest) -> dg.ExecuteInProcessResult:
            return job.execute_in_process(
                run_config={**request.run_config, **resources},
                tags=request.tags,
                instance=instance,
                raise_on_error=False,
            )

        [first] = tick().run_requests
        # The database is missing while the requested run goes: it fails, the files stay.
        monkeypatch.setenv("DATABASE_URL", with_database(database_url, "energy_no_such_db"))
        failed = run(first)
        assert not failed.success
        monkeypatch.setenv("DATABASE_URL", database_url)

        waiting = tick()
        assert isinstance(waiting, dg.SkipReason), waiting
        message = waiting.skip_message or ""
        assert f"retrying after failed run {failed.run_id} in " in message
        assert "attempt 2" in message
        seconds_left = float(message.split(" in ", 1)[1].split(" s", 1)[0])
        assert 500 < seconds_left <= 600

        monkeypatch.setenv("ENERGY_SENSOR_RETRY_SECONDS", "0")
        [again] = tick().run_requests
        assert again.run_key == f"{first.run_key}-attempt2"
        assert again.tags["energy/attempt"] == "2"
        assert run(again).success
        assert query(db, "SELECT status, rows_loaded FROM ingested_files") == [("loaded", 5)]
        assert isinstance(tick(), dg.SkipReason)


# --- 7. the daily sensor's position is its cursor; the watermark follows finished runs -----


def test_days_whose_daily_run_never_happened_are_requested_again(
    db, landing: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from energy_pipelines.analytics.daily import pending_days
    from energy_pipelines.defs import defs
    from energy_pipelines.defs.analytics.sensors import build_daily_sensor
    from energy_pipelines.defs.resources import EnergyStorage

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENERGY_SENSOR_RETRY_SECONDS", "600")
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,1.0,230,2026-02-11T10:30:00Z"])
    write_csv(
        landing,
        "vehicle",
        "v.csv",
        "vehicleId,soc,kwhDeliveredDc,batteryTemp,timestamp",
        ["v-1,50,0.9,25,2026-02-11T10:30:00Z", "v-1,51,0.9,25,2026-02-12T10:30:00Z"],
    )
    instance = dg.DagsterInstance.ephemeral()
    loaded = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config={
            "resources": {"energy": {"config": {"landing_dir": str(landing), "settle_seconds": 0}}}
        },
        instance=instance,
    )
    assert loaded.success
    energy = EnergyStorage(landing_dir=str(landing))
    sensor = build_daily_sensor(
        defs.resolve_job_def("daily_analytics_job"), defs.resolve_job_def("daily_quality_job")
    )

    def tick(cursor: str | None) -> dg.SensorResult:
        return sensor(dg.build_sensor_context(resources={"energy": energy}, cursor=cursor))

    def said(result: dg.SensorResult) -> str:
        return result.skip_reason.skip_message or "" if result.skip_reason else ""

    def daily_days(result: dg.SensorResult) -> list[str]:
        return [
            r.partition_key
            for r in result.run_requests or []
            if r.job_name == "daily_analytics_job"
        ]

    watermark = "SELECT stream, last_file_id FROM daily_analytics_watermarks ORDER BY 1"
    before = query(db, watermark)
    first = tick(None)
    assert daily_days(first) == ["2026-02-11", "2026-02-12"]
    # The evaluation's result is lost (the daemon stopped, the tick timed out): nothing in
    # PostgreSQL moved, and the next evaluation asks for the same days.
    assert query(db, watermark) == before
    assert daily_days(tick(None)) == ["2026-02-11", "2026-02-12"]

    # Its result kept: no second request while the runs may come; once none is in progress
    # and the days are still not recomputed, they are asked for again after a back-off.
    waiting = tick(first.cursor)
    assert not waiting.run_requests
    assert "2 requested days are not recomputed" in said(waiting)
    assert "requesting them again in 600 s" in said(waiting)
    monkeypatch.setenv("ENERGY_SENSOR_RETRY_SECONDS", "0")
    retried = tick(waiting.cursor)
    assert daily_days(retried) == ["2026-02-11", "2026-02-12"]
    assert all(r.run_key.endswith("-retry1") for r in retried.run_requests)

    # One day's run happens: the vehicle file touched both days, so its stream's watermark
    # waits for the other one (the pairing's only day so far is done: its stream moves on).
    daily = defs.resolve_job_def("daily_analytics_job")
    assert daily.execute_in_process(partition_key="2026-02-11", instance=instance).success
    behind = (
        "SELECT w.last_file_id < f.file_id FROM daily_analytics_watermarks w"
        " JOIN ingested_files f USING (stream) WHERE stream = 'vehicle'"
    )
    assert query(db, behind) == [(True,)]
    assert daily_days(tick(retried.cursor)) == ["2026-02-12"]
    assert daily.execute_in_process(partition_key="2026-02-12", instance=instance).success
    assert query(db, watermark) != before
    assert pending_days(db).days == []
    done = tick(retried.cursor)
    assert not done.run_requests
    assert said(done) == "no loaded files since the last daily refresh"


# --- 8. the gateway: no quiet opening to the network; idle and slow connections closed ------


@contextmanager
def gateway(env: dict[str, str], log: Path, *args: str) -> Iterator[int]:
    """`energy-pipelines gateway ARGS` as its own process, up, for the block; its port."""
    process, url = start_gateway(env, log, *args)
    try:
        yield int(httpx.URL(url).port or 0)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_gateway_refuses_to_listen_beyond_loopback_without_a_token(
    landing: Path, tmp_path: Path
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "energy_pipelines.cli", "gateway", "--host", "0.0.0.0"]
    refused = subprocess.run(
        [*command, "--port", str(port)],
        env=process_env_for(landing, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    assert "refusing to listen on 0.0.0.0" in refused.stderr
    assert "--allow-unauthenticated-remote" in refused.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_gateway_opens_to_the_network_only_when_told_and_then_warns_loudly(
    landing: Path, tmp_path: Path
) -> None:
    log = tmp_path / "open.log"
    with gateway(
        process_env_for(landing, tmp_path),
        log,
        "--host",
        "0.0.0.0",
        "--allow-unauthenticated-remote",
    ):
        pass
    assert "WARNING: the gateway listens on 0.0.0.0" in log.read_text()
    assert "WITHOUT AUTHENTICATION" in log.read_text()
    quiet = tmp_path / "token.log"
    with gateway(
        process_env_for(landing, tmp_path, ENERGY_GATEWAY_TOKEN="s3cret"),
        quiet,
        "--host",
        "0.0.0.0",
    ):
        pass
    assert "WARNING" not in quiet.read_text()


def _closed_after(sock: socket.socket, limit: float) -> float:
    """Seconds until the server closes the connection (reading and dropping what it sends)."""
    started = time.monotonic()
    sock.settimeout(limit)
    while True:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except ConnectionResetError:
            return time.monotonic() - started


def test_idle_and_slow_connections_are_closed_after_their_timeouts(
    landing: Path, tmp_path: Path
) -> None:
    env = process_env_for(
        landing,
        tmp_path,
        ENERGY_GATEWAY_KEEP_ALIVE_SECONDS="1",
        ENERGY_GATEWAY_READ_TIMEOUT_SECONDS="2",
    )
    with gateway(env, tmp_path / "gw.log") as port:
        address = ("127.0.0.1", port)
        # Connects and says nothing.
        with socket.create_connection(address) as silent:
            assert 1.5 < _closed_after(silent, 15) < 6
        # Sends its request head a byte every half second.
        with socket.create_connection(address) as trickle:
            started = time.monotonic()
            with pytest.raises(OSError):
                for byte in b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Slow: " + b"a" * 60:
                    trickle.sendall(bytes([byte]))
                    time.sleep(0.5)
                    if time.monotonic() - started > 20:
                        break
                trickle.settimeout(1)
                if not trickle.recv(1):
                    raise ConnectionResetError("closed")
            assert time.monotonic() - started < 8
        # Gets its answer, then stays idle on the kept-alive connection.
        with socket.create_connection(address) as idle:
            idle.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            idle.settimeout(5)
            assert idle.recv(65536).startswith(b"HTTP/1.1 200")
            assert _closed_after(idle, 15) < 4.5  # uvicorn's own default is 5 s
        # Announces a body and sends a tenth of it.
        with socket.create_connection(address) as slow_body:
            slow_body.sendall(
                b"POST /v1/ingestion/meter HTTP/1.1\r\nHost: gateway\r\n"
                b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"meterId"'
            )
            slow_body.settimeout(15)
            started = time.monotonic()
            answer = b""
            while chunk := slow_body.recv(65536):  # until the server closes
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"did not arrive within 2 s" in answer
            assert time.monotonic() - started < 6


# --- Raw quarantined values: reasons and counts for analysts, raw values for their own role --


def test_analysts_read_reasons_and_counts_but_not_the_raw_values_sent(
    db, env: dict, landing: Path, database_url: str
) -> None:
    write_csv(
        landing,
        "meter",
        "a.csv",
        METER_HEADER,
        ["m-1,0.5,230,2026-02-11T10:00:00Z", "m-2,secret-looking text,230,2026-02-11T10:00:00Z"],
    )
    assert cli("ingest", env=env).returncode == 0
    analyst = connect(as_user(database_url, "energy_analyst"))
    try:
        with analyst.cursor() as cur, pytest.raises(Exception, match="permission denied"):
            cur.execute("SELECT raw_values FROM rejected_rows")
        analyst.rollback()
        rows = query(analyst, "SELECT source_path, row_number, column_name FROM v_rejected_rows")
        assert rows == [("meter/a.csv", 2, "kwhConsumedAc")]
        counts = query(analyst, "SELECT stream, kind, rows, files FROM v_rejection_counts")
        assert counts == [("meter", "invalid", 1, 1)]
        columns = query(
            analyst,
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name IN ('v_rejected_rows', 'v_rejection_counts')",
        )
        assert columns and ("raw_values",) not in columns
    finally:
        analyst.close()
    with db.cursor() as cur:
        cur.execute("SET ROLE energy_quarantine_reader")
        cur.execute("SELECT raw_values::text FROM rejected_rows")
        assert "secret-looking text" in cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM meter_readings_history")  # and what analysts read
        assert cur.fetchone() == (1,)
    db.rollback()


def test_the_landing_sensor_leaves_files_to_the_run_that_holds_them(
    landing: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    from energy_pipelines.defs import defs
    from energy_pipelines.defs.resources import EnergyStorage

    monkeypatch.setenv("DATABASE_URL", database_url)
    write_csv(landing, "meter", "gw-1/a.csv", METER_HEADER, ROWS)
    energy = EnergyStorage(landing_dir=str(landing), settle_seconds=0)
    sensor = _landing_sensor()
    job = defs.resolve_job_def("ingest_job")
    with dg.instance_for_test() as instance:

        def tick():  # type: ignore[no-untyped-def]
            return sensor(dg.build_sensor_context(instance=instance, resources={"energy": energy}))

        [first] = tick().run_requests
        # The run has not started yet (the daemon's queue) ...
        instance.create_run_for_job(
            job,
            run_config=first.run_config,
            tags=first.tags,
            status=dg.DagsterRunStatus.NOT_STARTED,
        )
        # ... so a file landing meanwhile gets a run of its own, without the queued run's file.
        write_csv(landing, "meter", "gw-2/b.csv", METER_HEADER, ROWS)
        [second] = tick().run_requests
        assert second.run_config["ops"]["load_landing_files"]["config"]["paths"] == [
            "meter/gw-2/b.csv"
        ]
        instance.create_run_for_job(
            job,
            run_config=second.run_config,
            tags=second.tags,
            status=dg.DagsterRunStatus.STARTED,
        )
        skipped = tick()
        assert isinstance(skipped, dg.SkipReason)
        assert "belong to runs queued or running" in (skipped.skip_message or "")
