"""Faults an operator meets (issue 20): a lock another role holds, a sensor run that failed, a
gateway clock in the future, a full disk, a daily run that never happened, an open gateway."""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import pytest

from energy_pipelines.load.database import connect
from energy_pipelines.load.manifest import stream_lock_holder
from tests.conftest import query
from tests.helpers import METER_HEADER, as_user, cli, write_csv

ROWS = [f"m-{n},0.5,230,2026-02-11T10:{n:02d}:00Z" for n in range(5)]


# --- 2. the loader's lock: only the loader role can take it, and a wait is bounded ---------


def test_the_analyst_role_cannot_take_the_loaders_lock_nor_stall_ingest(
    db, env: dict, landing: Path, database_url: str
) -> None:
    from energy_pipelines.load.manifest import lock_stream

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
    holder = connect(as_user(database_url, "energy_loader") + "?application_name=stuck-job")
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
