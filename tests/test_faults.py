"""Faults an operator meets: the database, not the file, fails; nothing is marked bad."""

from __future__ import annotations

import time
from pathlib import Path

from energy_pipelines.load.database import connect
from energy_pipelines.load.errors import blames_the_file, is_transient, sqlstate_of
from tests.conftest import query
from tests.helpers import METER_HEADER, cli, write_csv


def _waiting_backend(db, relation: str, timeout: float = 60) -> int:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = query(
            db,
            "SELECT pid FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
            (relation,),
        )
        if rows:
            return int(rows[0][0])
        time.sleep(0.1)
    raise AssertionError(f"no backend waited for {relation}")


def test_a_cancelled_load_fails_the_run_and_leaves_the_file_waiting(
    db, env: dict, landing: Path, database_url: str
) -> None:
    write_csv(
        landing,
        "meter",
        "gw-1/a.csv",
        METER_HEADER,
        [f"m-{n},0.5,230,2026-02-11T10:{n:02d}:00Z" for n in range(30)],
    )
    blocker = connect(database_url)
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE meter_hourly_totals IN ACCESS EXCLUSIVE MODE")
        run = cli("ingest", env=env, wait=False)
        loader = _waiting_backend(db, "meter_hourly_totals")
        query(db, "SELECT pg_cancel_backend($1::integer)", (loader,))
    finally:
        blocker.rollback()
        blocker.close()
    code = run.wait(timeout=120)
    _out, err = run.communicate()
    assert code == 3, err
    assert "57014" in err and "transient" in err
    assert (landing / "meter" / "gw-1" / "a.csv").exists()
    assert not (landing / "_quarantine").exists()
    assert query(db, "SELECT count(*) FROM ingested_files") == [(0,)]
    again = cli("ingest", env=env)
    assert again.returncode == 0, again.stderr
    assert query(db, "SELECT status, rows_loaded FROM ingested_files") == [("loaded", 30)]


def test_errors_are_told_apart_by_sqlstate() -> None:
    class Refused(Exception):
        sqlstate = "23514"  # a check constraint: the file's rows

    class Cancelled(Exception):
        sqlstate = "57014"

    assert blames_the_file(Refused()) and not blames_the_file(Cancelled())
    assert blames_the_file(ValueError("a Polars error while shaping the rows"))
    assert sqlstate_of(Exception("ERROR: deadlock detected. SQLSTATE: 40P01")) == "40P01"
    for code in ("57014", "40001", "40P01", "55P03", "53100", "08006", "57P01"):
        assert is_transient(code), code
    for code in ("22003", "23505", "42P01", None):
        assert not is_transient(code), code
