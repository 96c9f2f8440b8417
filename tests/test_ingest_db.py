"""Loading into a real PostgreSQL: accounting, exactly-once, duplicates and conflicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from energy_pipelines.contract import CORRELATION, METER, VEHICLE
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.ingest.stream import BatchReader, load_batch
from energy_pipelines.landing.discover import find_waiting_files
from energy_pipelines.landing.read import iter_landing_chunks
from energy_pipelines.load.migrations import list_migrations, upgrade
from energy_pipelines.settings import Settings
from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER, write_csv

COUNTS = "rows_read, rows_loaded, rows_rejected, rows_duplicate, rows_conflicting"


def test_migrations_are_recorded_and_applied_once(db) -> None:
    assert upgrade(db) == []
    versions = [r[0] for r in query(db, "SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == [m.version for m in list_migrations()[1:]]


def test_file_rows_are_all_accounted_for(db, settings: Settings, landing: Path) -> None:
    write_csv(
        landing,
        "meter",
        "gw-1/a.csv",
        METER_HEADER,
        [
            "m-1,0.5,230,2026-02-11T10:30:00Z",
            "m-1,0.5,230,2026-02-11T10:30:00Z",  # exact repeat: duplicate
            "m-1,0.7,230,2026-02-11T10:30:00Z",  # same key, other values: conflicting
            "m-2,-1,230,2026-02-11T10:30:00Z",  # negative kWh: rejected
            '"O\'Brien; DROP TABLE x;--",0.25,231.5,2026-02-11T12:31:00+02:00',
        ],
    )
    [outcome] = ingest_stream(db, METER, settings, run_id="r1")
    assert outcome.manifest.status == "loaded"
    row = query(db, f"SELECT {COUNTS} FROM ingested_files")[0]
    assert row == (5, 2, 1, 1, 1)
    history = query(
        db, "SELECT meter_id, ts::text, kwh_consumed_ac FROM meter_readings_history ORDER BY 1"
    )
    assert history == [
        ("O'Brien; DROP TABLE x;--", "2026-02-11 10:31:00+00", 0.25),
        ("m-1", "2026-02-11 10:30:00+00", 0.5),
    ]
    rejected = query(
        db, "SELECT row_number, column_name, kind, rule, raw_values FROM rejected_rows ORDER BY 1"
    )
    assert [(r[0], r[1], r[2]) for r in rejected] == [
        (3, None, "conflicting"),
        (4, "kwhConsumedAc", "invalid"),
    ]
    assert "between 0 and 10000" in rejected[1][3]
    assert json.loads(rejected[1][4])["kwhConsumedAc"] == "-1"
    assert not (landing / "meter" / "gw-1" / "a.csv").exists()
    assert len(list((landing / "_archive" / "meter").rglob("gw-1/a.csv"))) == 1


def test_same_file_again_and_same_content_under_other_name_load_nothing(
    db, settings: Settings, landing: Path
) -> None:
    path = write_csv(landing, "meter", "a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    content = path.read_bytes()
    ingest_stream(db, METER, settings, run_id="r1")
    (landing / "meter" / "a.csv").write_bytes(content)
    (landing / "meter" / "renamed.csv").write_bytes(content)
    outcomes = ingest_stream(db, METER, settings, run_id="r2")
    statuses = sorted((o.manifest.path, o.manifest.status, o.healed) for o in outcomes)
    # a.csv is the same path and content: an archive move that never happened; renamed.csv
    # is the same content under another name.
    assert statuses == [
        ("meter/a.csv", "loaded", True),
        ("meter/renamed.csv", "skipped_duplicate", False),
    ]
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(1,)]
    assert query(db, "SELECT status, count(*) FROM ingested_files GROUP BY 1 ORDER BY 1") == [
        ("loaded", 1),
        ("skipped_duplicate", 1),
    ]
    assert list((landing / "meter").iterdir()) == []


def test_overlapping_files_count_duplicates_and_keep_stored_reading(
    db, settings: Settings, landing: Path
) -> None:
    write_csv(
        landing,
        "vehicle",
        "first.csv",
        VEHICLE_HEADER,
        ["v-1,50,1.0,25,2026-02-11T10:00:00Z", "v-1,51,1.0,25,2026-02-11T10:01:00Z"],
    )
    ingest_stream(db, VEHICLE, settings, run_id="r1")
    write_csv(
        landing,
        "vehicle",
        "second.csv",
        VEHICLE_HEADER,
        [
            "v-1,50,1.0,25,2026-02-11T10:00:00Z",  # duplicate of stored
            "v-1,99,9.9,25,2026-02-11T10:01:00Z",  # conflicts with stored
            "v-1,52,1.0,25,2026-02-12T00:00:00Z",  # new, next day
        ],
    )
    [outcome] = ingest_stream(db, VEHICLE, settings, run_id="r2")
    m = outcome.manifest
    assert (m.rows_read, m.rows_loaded, m.rows_duplicate, m.rows_conflicting) == (3, 1, 1, 1)
    assert query(
        db, "SELECT soc FROM vehicle_readings_history WHERE ts = '2026-02-11T10:01:00Z'"
    ) == [(51.0,)]
    [(stored, raw)] = query(
        db, "SELECT stored_values, raw_values FROM rejected_rows WHERE kind = 'conflicting'"
    )
    assert json.loads(stored)["soc"] == 51.0
    assert json.loads(raw)["soc"] == "99"
    partitions = query(
        db,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'vehicle_readings_history'::regclass ORDER BY 1",
    )
    assert partitions == [
        ("vehicle_readings_history_p20260211",),
        ("vehicle_readings_history_p20260212",),
    ]


def test_correlation_pairs_load_once(db, settings: Settings, landing: Path) -> None:
    write_csv(landing, "correlation", "c1.csv", "meterId,vehicleId", ["m-1,v-1", "m-2,v-1"])
    ingest_stream(db, CORRELATION, settings, run_id="r1")
    write_csv(landing, "correlation", "c2.csv", "meter_id,vehicle_id", ["m-1,v-1", "m-3,v-3"])
    [outcome] = ingest_stream(db, CORRELATION, settings, run_id="r2")
    assert (outcome.manifest.rows_loaded, outcome.manifest.rows_duplicate) == (1, 1)
    assert query(db, "SELECT count(*) FROM meter_vehicle_correlation") == [(3,)]


def test_unreadable_file_is_quarantined_with_reason(db, settings: Settings, landing: Path) -> None:
    write_csv(
        landing, "meter", "gw/semi.csv", "meterId;kwhConsumedAc;voltage;timestamp", ["m;1;2;3"]
    )
    (landing / "meter" / "broken.parquet").write_bytes(b"PAR1 not really parquet")
    write_csv(landing, "meter", "good.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    outcomes = ingest_stream(db, METER, settings, run_id="r1")
    assert sorted((o.manifest.path, o.manifest.status) for o in outcomes) == [
        ("meter/broken.parquet", "quarantined"),
        ("meter/good.csv", "loaded"),
        ("meter/gw/semi.csv", "quarantined"),
    ]
    report = json.loads(
        (landing / "_quarantine" / "meter" / "gw" / "semi.csv.error.json").read_text()
    )
    assert "semicolon" in report["error"]
    assert (landing / "_quarantine" / "meter" / "broken.parquet").exists()
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(1,)]


def test_file_copied_back_after_archive_is_not_loaded_twice(
    db, settings: Settings, landing: Path
) -> None:
    path = write_csv(landing, "meter", "x.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    content = path.read_bytes()
    ingest_stream(db, METER, settings, run_id="r1")
    shutil.rmtree(landing / "_archive")
    path.write_bytes(content)
    [outcome] = ingest_stream(db, METER, settings, run_id="r2")
    assert outcome.healed
    assert query(db, "SELECT count(*) FROM ingested_files") == [(1,)]


def _history_tables(db, table: str) -> list[tuple]:  # type: ignore[no-untyped-def]
    """(name, kind, parent or None, has a primary key) of every table of a history table's days:
    kind 'p' for a day partitioned by hour, 'r' for a table holding rows."""
    return query(
        db,
        "SELECT c.relname, c.relkind::text, p.relname,"
        " EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)"
        " FROM pg_class c LEFT JOIN pg_inherits h ON h.inhrelid = c.oid"
        " LEFT JOIN pg_class p ON p.oid = h.inhparent"
        " WHERE c.relkind IN ('r', 'p') AND c.relname LIKE $1 ORDER BY 1",
        (table + "_p%",),
    )


def _load_the_waiting_file_and_stop(db, settings: Settings, landing: Path) -> None:
    """The one waiting meter file loaded the way a run loads each file, then the run stops
    before its end (before it indexes and attaches the tables it loaded)."""
    [waiting] = find_waiting_files(landing, METER, 0, limit=10)
    batch = BatchReader([waiting], METER, settings, "stopped").read_next()
    assert batch is not None
    load_batch(db, batch, METER, settings)


def test_new_days_are_indexed_and_attached_when_the_run_ends(
    db, settings: Settings, landing: Path
) -> None:
    write_csv(
        landing,
        "meter",
        "a.csv",
        METER_HEADER,
        ["m-1,0.5,230,2026-02-11T23:59:00Z", "m-1,0.6,230,2026-02-12T00:00:00Z"],
    )
    write_csv(landing, "meter", "b.csv", METER_HEADER, ["m-2,0.5,230,2026-02-12T10:00:00Z"])
    outcomes = ingest_stream(db, METER, settings, run_id="r1")
    assert [o.manifest.rows_loaded for o in outcomes] == [2, 1]
    assert _history_tables(db, "meter_readings_history") == [
        ("meter_readings_history_p20260211", "r", "meter_readings_history", True),
        ("meter_readings_history_p20260212", "r", "meter_readings_history", True),
    ]
    assert query(db, "SELECT count(*) FROM meter_readings_history")[0][0] == 3


def test_a_day_left_pending_by_a_stopped_run_is_finished_before_a_conflict_check(
    db, settings: Settings, landing: Path
) -> None:
    write_csv(landing, "meter", "a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:00:00Z"])
    _load_the_waiting_file_and_stop(db, settings, landing)
    assert _history_tables(db, "meter_readings_history") == [
        ("meter_readings_history_p20260211", "r", None, False)
    ]
    # Committed, not yet visible through history: the manifest counts it.
    assert query(db, "SELECT rows_loaded FROM ingested_files")[0][0] == 1
    assert query(db, "SELECT count(*) FROM meter_readings_history")[0][0] == 0

    # A file overlapping it needs the key index: the pending day is finished first.
    write_csv(
        landing,
        "meter",
        "b.csv",
        METER_HEADER,
        ["m-1,0.9,230,2026-02-11T10:00:00Z", "m-1,0.5,230,2026-02-11T10:01:00Z"],
    )
    [outcome] = ingest_stream(db, METER, settings, run_id="next")
    assert (outcome.manifest.rows_loaded, outcome.manifest.rows_conflicting) == (1, 1)
    assert _history_tables(db, "meter_readings_history") == [
        ("meter_readings_history_p20260211", "r", "meter_readings_history", True)
    ]
    assert query(db, "SELECT kwh_consumed_ac, file_id FROM meter_readings_history ORDER BY ts") == [
        (0.5, 1),
        (0.5, 2),
    ]


def test_a_run_with_no_files_finishes_days_a_stopped_run_left_pending(
    db, settings: Settings, landing: Path
) -> None:
    write_csv(landing, "meter", "a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:00:00Z"])
    _load_the_waiting_file_and_stop(db, settings, landing)
    assert ingest_stream(db, METER, settings, run_id="next") == []
    assert query(db, "SELECT meter_id FROM meter_readings_history") == [("m-1",)]


def test_hours_that_bring_many_readings_are_leaves_indexed_when_the_run_ends(
    db, settings: Settings, landing: Path, monkeypatch
) -> None:
    import energy_pipelines.load.history as history

    # Bulk hourly exports at test size: two readings per hour count as many.
    monkeypatch.setattr(history, "HOURLY_LEAF_MIN_ROWS", 2)
    write_csv(
        landing,
        "meter",
        "a.csv",
        METER_HEADER,
        ["m-1,0.5,230,2026-02-11T23:10:00Z", "m-2,0.5,230,2026-02-11T23:10:00Z"],
    )
    # One file loaded the way a run does it, then the run stops before its end: the hour's
    # table holds the rows, committed and counted, without an index and not yet attached.
    _load_the_waiting_file_and_stop(db, settings, landing)
    day = "meter_readings_history_p2026021"
    assert _history_tables(db, "meter_readings_history") == [
        (f"{day}1", "p", "meter_readings_history", True),
        (f"{day}1_h23", "r", None, False),
    ]
    assert query(db, "SELECT rows_loaded FROM ingested_files")[0][0] == 2
    assert query(db, "SELECT count(*) FROM meter_readings_history")[0][0] == 0

    write_csv(
        landing,
        "meter",
        "b.csv",
        METER_HEADER,
        [
            "m-1,0.5,230,2026-02-12T00:05:00Z",
            "m-2,0.5,230,2026-02-12T00:05:00Z",
            "m-1,0.5,230,2026-02-12T01:05:00Z",
            "m-2,0.5,230,2026-02-12T01:05:00Z",
        ],
    )
    # Overlaps a.csv: it needs the key index of the pending hour, which is finished first.
    write_csv(
        landing,
        "meter",
        "c.csv",
        METER_HEADER,
        ["m-1,0.9,230,2026-02-11T23:10:00Z", "m-3,0.5,230,2026-02-11T23:10:00Z"],
    )
    outcomes = ingest_stream(db, METER, settings, run_id="next")
    assert [(o.manifest.rows_loaded, o.manifest.rows_conflicting) for o in outcomes] == [
        (4, 0),
        (1, 1),
    ]
    assert _history_tables(db, "meter_readings_history") == [
        (f"{day}1", "p", "meter_readings_history", True),
        (f"{day}1_h23", "r", f"{day}1", True),
        (f"{day}2", "p", "meter_readings_history", True),
        (f"{day}2_h00", "r", f"{day}2", True),
        (f"{day}2_h01", "r", f"{day}2", True),
    ]
    # Attached with their CHECK constraints dropped: the partition bounds say the same.
    assert query(
        db,
        "SELECT count(*) FROM pg_constraint WHERE contype = 'c'"
        " AND conrelid::regclass::text LIKE 'meter_readings_history_p%'",
    ) == [(0,)]
    assert query(db, f"SELECT count(*) FROM {day}1_h23") == [(3,)]
    assert query(db, "SELECT count(*) FROM meter_readings_history")[0][0] == 7


def test_a_day_file_read_in_chunks_keeps_its_day_in_one_table(
    db, settings: Settings, landing: Path
) -> None:
    from dataclasses import replace

    chunked = replace(
        settings, file_limits=replace(settings.file_limits, stream_above_rows=2, chunk_rows=2)
    )
    # Sorted by device, like a gateway's day export: every chunk spans the day's hours.
    rows = [f"m-{m},0.5,230,2026-02-11T{h:02d}:00:00Z" for m in (1, 2) for h in (0, 8, 16)]
    write_csv(landing, "meter", "day.csv", METER_HEADER, rows)
    [outcome] = ingest_stream(db, METER, chunked, run_id="r1")
    assert outcome.manifest.rows_loaded == 6
    assert _history_tables(db, "meter_readings_history") == [
        ("meter_readings_history_p20260211", "r", "meter_readings_history", True)
    ]


def test_a_file_read_in_chunks_accounts_for_every_row_like_a_whole_file(
    db, settings: Settings, landing: Path, monkeypatch
) -> None:
    from dataclasses import replace

    import energy_pipelines.ingest.chunks as ingest

    chunk_heights: list[int] = []

    def recording_chunks(*args, **kwargs):  # type: ignore[no-untyped-def]
        for chunk in iter_landing_chunks(*args, **kwargs):
            chunk_heights.append(chunk.frame.height)
            yield chunk

    monkeypatch.setattr(ingest, "iter_landing_chunks", recording_chunks)
    chunked = replace(
        settings,
        file_limits=replace(settings.file_limits, stream_above_rows=2, chunk_rows=2),
    )
    write_csv(landing, "meter", "old.csv", METER_HEADER, ["m-4,0.5,230,2026-02-11T09:00:00Z"])
    ingest_stream(db, METER, settings, run_id="r0")
    write_csv(
        landing,
        "meter",
        "big.csv",
        METER_HEADER,
        [
            "m-1,0.5,230,2026-02-11T10:00:00Z",  # chunk 1
            "m-2,0.5,230,2026-02-11T10:00:00Z",
            "m-1,0.5,230,2026-02-11T10:00:00Z",  # chunk 2: repeats row 1: duplicate
            "m-2,0.9,230,2026-02-11T10:00:00Z",  # other values than row 2: conflicting
            "m-3,-1,230,2026-02-11T10:00:00Z",  # chunk 3: invalid
            "m-4,0.7,230,2026-02-11T09:00:00Z",  # conflicts with the stored reading
            "m-3,0.5,230,2026-02-12T00:01:00Z",  # chunk 4: the next day
        ],
    )
    [outcome] = ingest_stream(db, METER, chunked, run_id="r1")
    assert outcome.manifest.status == "loaded"
    assert chunk_heights == [2, 2, 2, 1]
    assert query(
        db,
        f"SELECT {COUNTS}, min_ts::text, max_ts::text, days_touched::text[]"
        " FROM ingested_files WHERE path = 'meter/big.csv'",
    ) == [
        (
            7, 3, 1, 1, 2,
            "2026-02-11 09:00:00+00", "2026-02-12 00:01:00+00", ["2026-02-11", "2026-02-12"],
        )
    ]  # fmt: skip
    assert query(
        db,
        "SELECT meter_id, ts::text, kwh_consumed_ac FROM meter_readings_history"
        " WHERE file_id = 2 ORDER BY 1, 2",
    ) == [
        ("m-1", "2026-02-11 10:00:00+00", 0.5),
        ("m-2", "2026-02-11 10:00:00+00", 0.5),
        ("m-3", "2026-02-12 00:01:00+00", 0.5),
    ]
    rejected = query(
        db,
        "SELECT row_number, kind, rule, stored_values IS NOT NULL FROM rejected_rows"
        " WHERE file_id = 2 ORDER BY 1",
    )
    assert [(r[0], r[1], r[3]) for r in rejected] == [
        (4, "conflicting", False),
        (5, "invalid", False),
        (6, "conflicting", True),
    ]
    assert "row 2 of this file" in rejected[0][2]
    assert query(db, "SELECT readings FROM meter_hourly_totals ORDER BY hour, meter_id") == [
        (1,), (1,), (1,), (1,),
    ]  # fmt: skip
