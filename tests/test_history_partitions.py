"""Which tables of history are new (loaded without their key, not yet attached) is held in
history_new_tables, written when such a table is created and deleted when it is attached."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from energy_pipelines.contract import METER
from energy_pipelines.load.database import connect
from energy_pipelines.load.key_builds import KeyBuilds, finish_new_tables
from tests.conftest import query
from tests.helpers import as_user

NEW_TABLES = (
    "SELECT table_name, kind, partition_of, ts_from::text FROM history_new_tables ORDER BY 1"
)


def test_the_loader_creates_records_and_attaches_new_tables(database_url: str, db) -> None:
    loader = connect(as_user(database_url, "energy_loader"))
    try:
        with loader.cursor() as cur:
            cur.execute(
                "SELECT day_table_for_new_rows_of('meter_readings_history', '2026-02-11', true),"
                " day_table_for_new_rows_of('meter_readings_history', '2026-02-12', false),"
                " hour_table_for_new_rows('meter_readings_history', '2026-02-12 07:10+00')"
            )
            assert cur.fetchone() == (
                "meter_readings_history_p20260211",
                None,
                "meter_readings_history_p20260212_h07",
            )
            cur.execute(
                "INSERT INTO meter_readings_history_p20260212_h07"
                " VALUES ('m-1', '2026-02-12 07:10+00', 1, 230, 1)"
            )
        loader.commit()
        assert query(db, NEW_TABLES) == [
            (
                "meter_readings_history_p20260211",
                "day",
                "meter_readings_history",
                "2026-02-11 00:00:00+00",
            ),
            (
                "meter_readings_history_p20260212_h07",
                "hour",
                "meter_readings_history_p20260212",
                "2026-02-12 07:00:00+00",
            ),
        ]
        # Not visible through history before it is attached.
        assert query(db, "SELECT count(*) FROM meter_readings_history") == [(0,)]

        # The conflict path attaches the one new table it needs.
        with loader.cursor() as cur:
            cur.execute(
                "SELECT ensure_hour_partition('meter_readings_history', '2026-02-12 07:59+00')"
            )
            assert cur.fetchone() == ("meter_readings_history_p20260212_h07",)
        loader.commit()
        assert [row[0] for row in query(db, NEW_TABLES)] == ["meter_readings_history_p20260211"]
        assert query(db, "SELECT count(*) FROM meter_readings_history") == [(1,)]

        with loader.cursor() as cur:
            cur.execute("SELECT finish_new_tables('meter_readings_history')")
            assert cur.fetchall() == [("meter_readings_history_p20260211",)]
        loader.commit()
    finally:
        loader.close()
    assert query(db, NEW_TABLES) == []
    assert query(
        db,
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'meter_readings_history'::regclass ORDER BY 1",
    ) == [("meter_readings_history_p20260211",), ("meter_readings_history_p20260212",)]


def test_a_table_named_like_a_partition_is_not_taken_for_a_new_one(db) -> None:
    # An operator's copy of a day, under the name a partition of that day would have.
    with db.cursor() as cur:
        cur.execute("CREATE TABLE meter_readings_history_p20260211 (LIKE meter_readings_history)")
        cur.execute("SELECT finish_new_tables('meter_readings_history')")
        assert cur.fetchall() == []
    db.commit()
    assert query(
        db,
        "SELECT relispartition FROM pg_class WHERE relname = 'meter_readings_history_p20260211'",
    ) == [(False,)]


def test_retention_drops_the_new_tables_of_the_days_it_drops(db) -> None:
    # A stopped run left an old day's hour and a kept day's table loaded, not yet attached.
    with db.cursor() as cur:
        cur.execute(
            "SELECT hour_table_for_new_rows('vehicle_readings_history', '2026-02-01 09:00+00'),"
            " day_table_for_new_rows_of('vehicle_readings_history', '2026-02-06', true)"
        )
        cur.execute("SELECT drop_day_partitions_before('vehicle_readings_history', '2026-02-06')")
        assert cur.fetchall() == [
            ("vehicle_readings_history_p20260201_h09",),
            ("vehicle_readings_history_p20260201",),
        ]
        cur.execute("SELECT finish_new_tables('vehicle_readings_history')")
        assert cur.fetchall() == [("vehicle_readings_history_p20260206",)]
    db.commit()
    assert query(db, "SELECT to_regclass('vehicle_readings_history_p20260201_h09')") == [(None,)]
    assert query(db, NEW_TABLES) == []


def _four_new_hours(database_url: str) -> list[str]:
    """Four new hour tables of one day, a reading in each, as a load leaves them."""
    loader = connect(as_user(database_url, "energy_loader"))
    names = []
    try:
        with loader.cursor() as cur:
            for hour in range(4):
                ts = f"2026-02-12 0{hour}:30+00"
                cur.execute(
                    "SELECT hour_table_for_new_rows('meter_readings_history', $1::timestamptz)",
                    (ts,),
                )
                [name] = cur.fetchone()
                cur.execute(f"INSERT INTO {name} VALUES ('m-1', $1::timestamptz, 1, 230, 1)", (ts,))
                names.append(name)
        loader.commit()
    finally:
        loader.close()
    return names


@contextmanager
def _finishing_behind_a_reader(
    database_url: str, tables: list[str], sessions: int
) -> Iterator[list[KeyBuilds]]:
    """finish_new_tables of the meter stream on a thread while another session reads `tables`
    (a key build, ACCESS EXCLUSIVE, waits for it); yields the list its result lands in. The
    reader lets go on leaving."""
    blocker = connect(database_url)
    with blocker.cursor() as cur:
        for name in tables:
            cur.execute(f"LOCK TABLE {name} IN ACCESS SHARE MODE")
    finished: list[KeyBuilds] = []
    loader_url = as_user(database_url, "energy_loader")
    loader = connect(loader_url)
    thread = threading.Thread(
        target=lambda: finished.append(finish_new_tables(loader, loader_url, METER, sessions))
    )
    thread.start()
    try:
        yield finished
    finally:
        blocker.rollback()
        blocker.close()
        thread.join(timeout=60)
        loader.close()


def _waiting_for(db, sql: str, params: tuple, count: int) -> list[tuple]:  # type: ignore[no-untyped-def]
    """Rows of `sql` once there are `count` of them (or what there is after 10 s)."""
    rows: list[tuple] = []
    for _ in range(200):
        rows = query(db, sql, params)
        if len(rows) >= count:
            break
        time.sleep(0.05)
    return rows


def test_the_keys_of_a_streams_new_tables_are_built_side_by_side(database_url: str, db) -> None:
    names = _four_new_hours(database_url)
    # The builds in flight at once are the sessions waiting for the reader, each on its table.
    with _finishing_behind_a_reader(database_url, names, sessions=8) as finished:
        waiting = _waiting_for(
            db,
            "SELECT DISTINCT l.pid, c.relname::text FROM pg_locks l"
            " JOIN pg_class c ON c.oid = l.relation WHERE NOT l.granted"
            " AND c.relname LIKE 'meter_readings_history_p20260212_h%' ORDER BY 2",
            (),
            len(names),
        )
        assert sorted(name for _pid, name in waiting) == names
        assert len({pid for pid, _name in waiting}) == len(names)  # one session each
    [builds] = finished
    assert builds.tables == names and len(builds.session_seconds) == len(names)
    assert query(db, NEW_TABLES) == []
    assert query(
        db,
        "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indrelid = i.inhrelid"
        " WHERE i.inhparent = 'meter_readings_history_p20260212'::regclass AND x.indisprimary",
    ) == [(4,)]
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(4,)]


def test_key_builds_hold_the_streams_lock_so_no_batch_writes_meanwhile(
    database_url: str, db, monkeypatch: pytest.MonkeyPatch
) -> None:
    from energy_pipelines.load.locks import lock_stream

    _four_new_hours(database_url)
    holder = connect(database_url)
    try:
        with holder.cursor() as cur:
            lock_stream(cur, "meter")
        loader = connect(as_user(database_url, "energy_loader"))
        try:
            # The batch holding the lock keeps the builds from starting: the finish's own
            # wait runs out (lock_timeout) and nothing is attached.
            monkeypatch.setenv("ENERGY_LOCK_TIMEOUT_SECONDS", "1")
            with pytest.raises(Exception, match="lock"):
                finish_new_tables(loader, as_user(database_url, "energy_loader"), METER, 8)
            assert len(query(db, NEW_TABLES)) == 4
        finally:
            loader.close()
    finally:
        holder.rollback()
        holder.close()


def test_a_key_build_whose_session_the_server_ends_is_built_again_on_a_new_one(
    database_url: str, db
) -> None:
    names = _four_new_hours(database_url)
    with _finishing_behind_a_reader(database_url, [names[1]], sessions=2) as finished:
        waiting_builder = (
            "SELECT DISTINCT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE NOT l.granted AND c.relname = $1"
        )
        [(pid,)] = _waiting_for(db, waiting_builder, (names[1],), 1)
        assert query(db, "SELECT pg_terminate_backend($1::int)", (pid,)) == [(True,)]
    [builds] = finished
    assert builds.retried == [names[1]]
    assert query(db, NEW_TABLES) == []
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(4,)]
