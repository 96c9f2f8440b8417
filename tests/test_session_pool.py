"""A stream's batches on a pool of sessions: batches of different hours in flight at once without
waiting for each other, batches of one hour in path order, a lost session's batch loaded again."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from energy_pipelines.contract import METER
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.ingest.stream import StreamOutcomes
from energy_pipelines.load.database import connect
from energy_pipelines.settings import Settings
from tests.conftest import query
from tests.helpers import METER_HEADER, cli, write_csv

HOURS = 4

# Sessions of a run that hold hour locks (a row lock leaves a RowShareLock on its table).
HOLDING_HOURS = (
    "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.relation = 'loader_hour_locks'::regclass AND l.granted"
    " AND a.application_name LIKE 'energy-pipelines%'"
)


def _pooled(settings: Settings, sessions: int = 8) -> Settings:
    # One file a batch: each hour's file is a batch of its own.
    return replace(
        settings, sessions=sessions, batch_limits=replace(settings.batch_limits, max_files=1)
    )


def _one_file_an_hour(landing: Path) -> None:
    for hour in range(HOURS):
        write_csv(
            landing,
            "meter",
            f"gw-{hour}/h.csv",
            METER_HEADER,
            [f"m-{n},0.{n + 1},230,2026-02-11T1{hour}:{n:02d}:00Z" for n in range(5)],
        )


def _load_in_background(settings: Settings) -> tuple[threading.Thread, list]:
    """ingest_stream on a thread and a session of its own (the test's session watches)."""
    done: list[StreamOutcomes | BaseException] = []

    def load() -> None:
        assert settings.database_url
        conn = connect(settings.database_url)
        try:
            done.append(ingest_stream(conn, METER, settings, run_id="r"))
        except BaseException as error:  # the test reports it
            done.append(error)
        finally:
            conn.close()

    thread = threading.Thread(target=load)
    thread.start()
    return thread, done


def _sessions_holding_hours(db, want: int, seconds: float = 20.0) -> list[tuple]:  # type: ignore[no-untyped-def]
    seen: list[tuple] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        seen = query(db, HOLDING_HOURS)
        if len(seen) >= want:
            break
        time.sleep(0.05)
    return seen


def _hours_held_for_3_seconds(  # type: ignore[no-untyped-def]
    db, settings: Settings, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Thread, list, list[tuple]]:
    """A file an hour loading on 8 sessions, each batch holding its hour's lock 3 s before it
    writes: the load's thread, where its result lands, and the sessions seen holding hours."""
    _one_file_an_hour(landing)
    monkeypatch.setenv("ENERGY_PAUSE_AT", "after_locks")
    monkeypatch.setenv("ENERGY_PAUSE_SECONDS", "3")
    thread, done = _load_in_background(_pooled(settings))
    return thread, done, _sessions_holding_hours(db, HOURS)


def test_batches_of_different_hours_are_in_flight_at_once_and_never_wait(
    db, settings: Settings, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, done, holding = _hours_held_for_3_seconds(db, settings, landing, monkeypatch)
    thread.join(timeout=120)
    assert len(holding) == HOURS  # every batch in flight, each on a session of its own
    [outcomes] = done
    assert isinstance(outcomes, StreamOutcomes), outcomes
    assert [o.manifest.rows_loaded for o in outcomes] == [5] * HOURS
    # No batch waited for another: not in the run (their turn), not in PostgreSQL (locks).
    assert outcomes.turn_wait_seconds < 1.0
    assert sum(o.stage_seconds.get("lock_wait", 0.0) for o in outcomes) < 1.0
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(5 * HOURS,)]


def test_batches_of_one_hour_load_in_path_order_whatever_the_pool(
    db, settings: Settings, landing: Path
) -> None:
    # The same key in three files of one hour, each a batch: the first file's value is kept,
    # although the first takes longest to prepare (the later ones are ready first).
    many = [f"m-{n:05d},0.5,230,2026-02-11T10:{n % 60:02d}:00Z" for n in range(2, 60_000)]
    for name, value, more in (("gw-a", "0.1", many), ("gw-b", "0.2", []), ("gw-c", "0.3", [])):
        write_csv(
            landing,
            "meter",
            f"{name}/x.csv",
            METER_HEADER,
            [f"m-1,{value},230,2026-02-11T10:00:00Z", f"{name},1,230,2026-02-11T10:00:00Z", *more],
        )
    outcomes = ingest_stream(db, METER, _pooled(settings), run_id="r")
    counts = [
        (o.manifest.path, o.manifest.rows_loaded, o.manifest.rows_conflicting) for o in outcomes
    ]
    assert counts == [
        ("meter/gw-a/x.csv", 2 + len(many), 0),
        ("meter/gw-b/x.csv", 1, 1),
        ("meter/gw-c/x.csv", 1, 1),
    ]
    assert query(
        db, "SELECT kwh_consumed_ac FROM meter_readings_history WHERE meter_id = 'm-1'"
    ) == [(0.1,)]


def test_a_batch_whose_session_the_server_ends_is_loaded_again_and_the_others_go_on(
    db, settings: Settings, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thread, done, holding = _hours_held_for_3_seconds(db, settings, landing, monkeypatch)
    assert len(holding) == HOURS
    # One batch's session ends while it holds its hour and has written nothing yet.
    assert query(db, "SELECT pg_terminate_backend($1::int)", (holding[0][0],)) == [(True,)]
    monkeypatch.setenv("ENERGY_PAUSE_SECONDS", "0")  # its second try goes straight on
    thread.join(timeout=120)
    [outcomes] = done
    assert isinstance(outcomes, StreamOutcomes), outcomes
    assert sorted(o.manifest.path for o in outcomes) == [
        f"meter/gw-{h}/h.csv" for h in range(HOURS)
    ]
    assert query(
        db,
        "SELECT count(*), sum(rows_loaded)::int FROM ingested_files WHERE status = 'loaded'",
    ) == [(HOURS, 5 * HOURS)]
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(5 * HOURS,)]


def test_two_runs_loading_files_of_one_content_without_readings_load_it_once(
    db, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two landing folders (two runs at once) each with an export whose only row is rejected,
    # byte for byte alike: no hour tells their batches apart, so both write at once, and the
    # manifest's index makes the later commit screen its file again, as a duplicate.
    runs = []
    for gateway in ("gw-a", "gw-b"):
        root = tmp_path / gateway
        write_csv(
            root, "meter", f"{gateway}/bad.csv", METER_HEADER, ["m-1,abc,230,2026-02-11T10:00:00Z"]
        )
        runs.append(replace(_pooled(settings), landing_dir=root))
    monkeypatch.setenv("ENERGY_PAUSE_AT", "after_locks")
    monkeypatch.setenv("ENERGY_PAUSE_SECONDS", "1")
    started = [_load_in_background(run) for run in runs]
    for thread, _done in started:
        thread.join(timeout=120)
    outcomes = [o for _thread, done in started for o in done[0]]
    assert sorted((o.manifest.status, o.manifest.rows_read) for o in outcomes) == [
        ("loaded", 1),
        ("skipped_duplicate", 0),
    ]
    assert query(db, "SELECT count(*) FROM ingested_files WHERE status = 'quarantined'") == [(0,)]


@pytest.mark.parametrize("point", ["after_locks", "after_history_insert", "after_commit"])
def test_kill_9_with_batches_in_flight_side_by_side_then_rerun_loads_each_file_once(
    db, env: dict, landing: Path, point: str
) -> None:
    _one_file_an_hour(landing)
    pooled = {**env, "ENERGY_LOAD_SESSIONS": "4", "ENERGY_BATCH_MAX_FILES": "1"}
    # The first batch to reach the point kills the process while the others are in flight.
    crashed = cli("ingest", env={**pooled, "ENERGY_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL
    rerun = cli("ingest", env=pooled)
    assert rerun.returncode == 0, rerun.stderr
    assert query(
        db,
        "SELECT path, status, rows_read, rows_loaded FROM ingested_files ORDER BY path",
    ) == [(f"meter/gw-{h}/h.csv", "loaded", 5, 5) for h in range(HOURS)]
    assert query(
        db, "SELECT count(*), count(DISTINCT (meter_id, ts)) FROM meter_readings_history"
    ) == [(5 * HOURS, 5 * HOURS)]
    assert query(db, "SELECT count(*) FROM history_new_tables") == [(0,)]
    assert not [p for p in landing.rglob("*.csv") if "_archive" not in p.parts]


def test_rows_in_flight_wait_for_room_and_a_batch_above_the_budget_runs_alone() -> None:
    from energy_pipelines.ingest.pool import RowBudget

    budget = RowBudget()
    first = budget.acquire(600, total=1000)
    took: list[int] = []
    waiting = threading.Thread(target=lambda: took.append(budget.acquire(5000, total=1000)))
    waiting.start()
    waiting.join(timeout=0.3)
    assert waiting.is_alive() and not took  # 5,000 rows wait until the budget is free
    budget.release(first)
    waiting.join(timeout=5)
    assert took == [1000]  # then take all of it, alone
    blocked: list[int] = []
    small = threading.Thread(target=lambda: blocked.append(budget.acquire(1, total=1000)))
    small.start()
    small.join(timeout=0.3)
    assert small.is_alive()  # nothing fits beside it
    budget.release(took[0])
    small.join(timeout=5)
    assert blocked == [1]
    budget.release(1)
    assert budget.acquire(400, total=1000) == 400
