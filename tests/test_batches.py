"""Many small gateway files loaded as batches: per-file guarantees, bad files in a batch,
refusals, crashes, and the same result whatever the gateway layout."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from energy_pipelines.contract import CORRELATION, METER, VEHICLE
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.layouts import Layout, cut_into_gateways
from energy_pipelines.settings import BatchLimits, Settings
from energy_pipelines.simulate import simulate
from tests.conftest import query
from tests.helpers import METER_HEADER, cli, meter_table, write_csv

TS = "2026-02-11T10:{:02d}:00Z"


def _counts(db, path: str) -> tuple:  # type: ignore[no-untyped-def]
    [row] = query(
        db,
        "SELECT status, rows_read, rows_loaded, rows_rejected, rows_duplicate, rows_conflicting"
        " FROM ingested_files WHERE path = $1",
        (path,),
    )
    return row


def test_a_key_repeated_across_files_of_a_batch_belongs_to_the_first_file(
    db, settings: Settings, landing: Path
) -> None:
    write_csv(landing, "meter", "gw-a/1.csv", METER_HEADER, [f"m-1,0.5,230,{TS.format(0)}"])
    write_csv(
        landing,
        "meter",
        "gw-b/1.csv",
        METER_HEADER,
        [
            f"m-1,0.5,230,{TS.format(0)}",  # the same reading: a duplicate of gw-a's
            f"m-2,0.7,230,{TS.format(0)}",
            f"m-2,0.8,230,{TS.format(0)}",  # repeats row 2 of this file with other values
        ],
    )
    write_csv(landing, "meter", "gw-c/1.csv", METER_HEADER, [f"m-1,0.9,230,{TS.format(0)}"])
    outcomes = ingest_stream(db, METER, settings, run_id="r")
    assert len(outcomes) == 3
    assert _counts(db, "meter/gw-a/1.csv") == ("loaded", 1, 1, 0, 0, 0)
    assert _counts(db, "meter/gw-b/1.csv") == ("loaded", 3, 1, 0, 1, 1)
    assert _counts(db, "meter/gw-c/1.csv") == ("loaded", 1, 0, 0, 0, 1)
    rules = query(
        db,
        "SELECT source_path, row_number, rule FROM rejected_rows ORDER BY source_path, row_number",
    )
    assert rules == [
        (
            "meter/gw-b/1.csv",
            3,
            "same key as row 2 of this file with different values; the first row is kept",
        ),
        (
            "meter/gw-c/1.csv",
            1,
            "same key as row 1 of meter/gw-a/1.csv (an earlier file of the same run) with "
            "different values; that row is kept",
        ),
    ]
    assert query(db, "SELECT meter_id, kwh_consumed_ac FROM meter_readings_history ORDER BY 1") == [
        ("m-1", 0.5),
        ("m-2", 0.7),
    ]
    # Each file's readings carry its own manifest row.
    assert query(
        db,
        "SELECT f.path, count(*) FROM meter_readings_history h JOIN ingested_files f"
        " USING (file_id) GROUP BY 1 ORDER BY 1",
    ) == [("meter/gw-a/1.csv", 1), ("meter/gw-b/1.csv", 1)]


def test_bad_files_in_a_batch_are_handled_alone_and_the_rest_loads(
    db, settings: Settings, landing: Path, monkeypatch
) -> None:
    for gateway in range(3):
        write_csv(
            landing,
            "meter",
            f"gw-{gateway}/ok.csv",
            METER_HEADER,
            [f"m-{gateway},0.5,230,{TS.format(m)}" for m in range(5)],
        )
    table = meter_table()
    pq.write_table(table, landing / "meter" / "gw-3-truncated.parquet")
    whole = (landing / "meter" / "gw-3-truncated.parquet").read_bytes()
    (landing / "meter" / "gw-3-truncated.parquet").write_bytes(whole[: len(whole) // 2])
    write_csv(landing, "meter", "gw-4/foreign.csv", "id,value,when", ["m-4,1,2026-02-11"])
    ahead = datetime.now(UTC) + timedelta(hours=2)
    write_csv(
        landing,
        "meter",
        "gw-5/ahead.csv",
        METER_HEADER,
        [f"m-5,0.5,230,{ahead:%Y-%m-%dT%H:%M:%SZ}", f"m-5,0.5,230,{TS.format(0)}"],
    )
    renamed = write_csv(
        landing, "meter", "gw-6/moving.csv", METER_HEADER, ["m-6,0.5,230," + TS.format(0)]
    )

    # The gateway renames its file while the batch is being read: the batch goes on without it.
    import energy_pipelines.ingest.chunks as chunks

    real_read = chunks.read_landing_file

    def read_then_rename(file, stream, limits):  # type: ignore[no-untyped-def]
        raw = real_read(file, stream, limits)
        if file.path == renamed:
            renamed.rename(renamed.with_name("moved.csv.part"))
        return raw

    monkeypatch.setattr(chunks, "read_landing_file", read_then_rename)
    outcomes = ingest_stream(db, METER, settings, run_id="r")
    statuses = sorted((o.manifest.path, o.manifest.status) for o in outcomes)
    assert statuses == [
        ("meter/gw-0/ok.csv", "loaded"),
        ("meter/gw-1/ok.csv", "loaded"),
        ("meter/gw-2/ok.csv", "loaded"),
        ("meter/gw-3-truncated.parquet", "quarantined"),
        ("meter/gw-4/foreign.csv", "quarantined"),
        ("meter/gw-5/ahead.csv", "loaded"),
    ]
    assert _counts(db, "meter/gw-5/ahead.csv") == ("loaded", 2, 1, 1, 0, 0)
    [(rule,)] = query(
        db, "SELECT rule FROM rejected_rows WHERE source_path = 'meter/gw-5/ahead.csv'"
    )
    assert "after the ingestion time" in rule
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(16,)]
    assert (landing / "meter" / "gw-6" / "moved.csv.part").exists()
    assert not query(db, "SELECT 1 FROM ingested_files WHERE path LIKE 'meter/gw-6/%'")
    errors = dict(query(db, "SELECT path, error FROM ingested_files WHERE status = 'quarantined'"))
    assert "meterId" in errors["meter/gw-4/foreign.csv"]
    assert errors["meter/gw-3-truncated.parquet"]


def test_a_file_postgresql_refuses_is_quarantined_alone(
    db, settings: Settings, landing: Path
) -> None:
    # The day's table exists; then a rule PostgreSQL enforces and our validation does not know.
    write_csv(landing, "meter", "first.csv", METER_HEADER, [f"m-0,0.5,230,{TS.format(9)}"])
    ingest_stream(db, METER, settings, run_id="first")
    with db.cursor() as cur:
        cur.execute(
            "ALTER TABLE meter_readings_history ADD CONSTRAINT no_refused"
            " CHECK (meter_id <> 'm-refused')"
        )
    db.commit()
    write_csv(landing, "meter", "a.csv", METER_HEADER, [f"m-1,0.5,230,{TS.format(0)}"])
    write_csv(landing, "meter", "b.csv", METER_HEADER, [f"m-refused,0.5,230,{TS.format(0)}"])
    write_csv(landing, "meter", "c.csv", METER_HEADER, [f"m-3,0.5,230,{TS.format(0)}"])
    outcomes = ingest_stream(db, METER, settings, run_id="r")
    assert sorted((o.manifest.path, o.manifest.status) for o in outcomes) == [
        ("meter/a.csv", "loaded"),
        ("meter/b.csv", "quarantined"),
        ("meter/c.csv", "loaded"),
    ]
    [(error,)] = query(db, "SELECT error FROM ingested_files WHERE path = 'meter/b.csv'")
    assert "no_refused" in error
    assert query(db, "SELECT meter_id FROM meter_readings_history ORDER BY 1") == [
        ("m-0",),
        ("m-1",),
        ("m-3",),
    ]


def test_batch_limits_split_a_run_into_several_transactions(
    db, settings: Settings, landing: Path
) -> None:
    for n in range(7):
        write_csv(
            landing, "meter", f"gw-{n}/f.csv", METER_HEADER, [f"m-{n},0.5,230,{TS.format(n)}"]
        )
    small = Settings(**{**settings.__dict__, "batch_limits": BatchLimits(max_files=3)})
    outcomes = ingest_stream(db, METER, small, run_id="r")
    assert [o.manifest.status for o in outcomes] == ["loaded"] * 7
    # Three transactions: the manifest rows of each were written by one statement.
    assert query(
        db,
        "SELECT count(DISTINCT xmin::text) FROM ingested_files",
    ) == [(3,)]


def test_small_parquet_files_holding_more_rows_than_their_size_suggests_are_cut_by_rows(
    db, settings: Settings, landing: Path
) -> None:
    """A small Parquet file's rows are estimated from its size, by the bytes a row of the files
    read before took; once read, a batch is cut where its real rows pass the limit, and every
    file still loads once. Here the first file's rows are long (unique 60-character ids), the
    next four files' rows short, so the four are underestimated."""
    import pyarrow as pa

    start = datetime(2026, 2, 11, 10, 0, tzinfo=UTC)
    (landing / "meter" / "gw").mkdir(parents=True, exist_ok=True)
    sparse = meter_table(
        meterId=pa.array([f"m-{n:060d}" for n in range(40)]),
        kwhConsumedAc=pa.array([0.25 + n / 1000 for n in range(40)]),
        voltage=pa.array([230.0] * 40),
        timestamp=pa.array([start] * 40, pa.timestamp("us", tz="UTC")),
    )
    pq.write_table(sparse, landing / "meter" / "gw" / "a0.parquet")
    for n in range(1, 5):
        ts = [start + timedelta(minutes=m) for m in range(400)]
        table = meter_table(
            meterId=pa.array([f"m-{n}"] * 400),
            kwhConsumedAc=pa.array([0.5] * 400),
            voltage=pa.array([230.0] * 400),
            timestamp=pa.array(ts, pa.timestamp("us", tz="UTC")),
        )
        pq.write_table(table, landing / "meter" / "gw" / f"f{n}.parquet")
    limits = BatchLimits(max_rows=1000)
    outcomes = ingest_stream(
        db, METER, Settings(**{**settings.__dict__, "batch_limits": limits}), "r"
    )
    assert [o.manifest.rows_loaded for o in outcomes] == [40] + [400] * 4
    # At most 1,000 rows a transaction: a0 (planned alone, nothing read yet), then f1-f4,
    # planned as one batch from a0's bytes a row and cut after f2.
    assert query(db, "SELECT count(DISTINCT xmin::text) FROM ingested_files") == [(3,)]
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(1640,)]


@pytest.mark.parametrize(
    "point", ["after_staging_copy", "after_history_insert", "before_commit", "after_commit"]
)
def test_a_kill_9_inside_a_batch_leaves_it_all_or_nothing_and_the_rerun_loads_each_file_once(
    db, env: dict, landing: Path, point: str
) -> None:
    for gateway in range(20):
        write_csv(
            landing,
            "meter",
            f"gw-{gateway:02d}/f.csv",
            METER_HEADER,
            # Every gateway's rows share minutes with the others': the batches after the
            # first take the conflict-checked path, whose crash points are covered too.
            [f"m-{gateway},0.5,230,{TS.format(m)}" for m in range(3)],
        )
    # Four batches of five files: the kill hits the first batch to reach the point.
    batches = {**env, "ENERGY_BATCH_MAX_FILES": "5"}
    crashed = cli("ingest", env={**batches, "ENERGY_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL
    committed = 5 if point == "after_commit" else 0
    # (A committed batch's new hour table is attached to history when a run ends: the rerun.)
    assert query(
        db, "SELECT count(*), coalesce(sum(rows_loaded), 0)::bigint FROM ingested_files"
    ) == [(committed, committed * 3)]
    assert query(db, "SELECT coalesce(sum(readings), 0)::bigint FROM meter_hourly_totals") == [
        (committed * 3,)
    ]
    rerun = cli("ingest", env=batches)
    assert rerun.returncode == 0, rerun.stderr
    assert query(
        db,
        "SELECT count(*), sum(rows_loaded)::bigint, count(DISTINCT path) FROM ingested_files"
        " WHERE stream = 'meter' AND status = 'loaded'",
    ) == [(20, 60, 20)]
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(60,)]
    assert query(db, "SELECT sum(readings)::bigint FROM meter_hourly_totals") == [(60,)]
    assert not list((landing / "meter").glob("gw-*/*.csv"))


def test_gateway_layouts_load_the_same_readings_as_whole_fleet_files(
    db, settings: Settings, landing: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    simulate(source, 40, 40, datetime(2026, 2, 11, 10, tzinfo=UTC), 30)
    cut_into_gateways(source, landing, Layout("g7x1", gateways=7, file_minutes=1), "parquet")
    assert len(list((landing / "meter").rglob("*.parquet"))) == 7 * 30
    for stream in (CORRELATION, METER, VEHICLE):
        ingest_stream(db, stream, settings, run_id="gateways")
    assert query(db, "SELECT count(*) FROM ingested_files WHERE stream = 'meter'") == [(7 * 30,)]
    # The oracle: the simulator's whole-fleet files, read here with Polars.
    expected = (
        pl.read_parquet(source / "meter" / "*.parquet")
        .select("meterId", pl.col("timestamp").dt.replace_time_zone("UTC"), "kwhConsumedAc")
        .sort("meterId", "timestamp")
        .rows()
    )
    stored = query(
        db,
        "SELECT meter_id, ts, kwh_consumed_ac FROM meter_readings_history ORDER BY 1, 2",
    )
    assert len(stored) == 40 * 30
    assert [(m, t.astimezone(UTC), k) for m, t, k in stored] == [
        (m, t.astimezone(UTC), k) for m, t, k in expected
    ]
    assert query(db, "SELECT count(*) FROM vehicle_readings_history") == [(40 * 30,)]


def _read_at_once(root: Path, files: list[Any] | None = None) -> list[Any] | None:
    """The waiting meter files (or `files`) read together, from their bytes as a batch reads
    them."""
    from energy_pipelines.landing.discover import find_waiting_files
    from energy_pipelines.landing.read_many import read_files_at_once

    files = files if files is not None else find_waiting_files(root, METER, 0)
    return read_files_at_once(files, [f.path.read_bytes() for f in files], METER)


def _assert_read_as_alone(together: list[Any] | None, files: list[Any]) -> None:
    from energy_pipelines.landing.read import read_landing_file

    assert together is not None
    for raw, file in zip(together, files, strict=True):
        alone = read_landing_file(file, METER)
        assert raw.frame.equals(alone.frame), file.relative_path
        assert raw.frame.schema == alone.frame.schema
        assert (raw.source_names, raw.extra_columns) == (alone.source_names, alone.extra_columns)
        assert raw.shape == alone.shape


def test_parquet_files_read_at_once_equal_files_read_one_by_one(tmp_path: Path) -> None:
    from energy_pipelines.landing.discover import find_waiting_files

    folder = tmp_path / "meter" / "gw-1"
    folder.mkdir(parents=True)
    for n in range(3):
        table = meter_table()
        if n == 1:
            table = table.slice(0, 0)  # a file without rows
        pq.write_table(table, folder / f"f{n}.parquet")
    files = find_waiting_files(tmp_path, METER, 0)
    _assert_read_as_alone(_read_at_once(tmp_path), files)

    # One file of another layout (snake_case headers): each is read on its own instead.
    table = meter_table().rename_columns(["meter_id", "kwh_consumed_ac", "voltage", "timestamp"])
    pq.write_table(table, folder / "f9.parquet")
    assert _read_at_once(tmp_path) is None
    # And a truncated one.
    (folder / "f9.parquet").write_bytes((folder / "f0.parquet").read_bytes()[:40])
    assert _read_at_once(tmp_path) is None


def test_csv_files_read_at_once_equal_files_read_one_by_one(tmp_path: Path) -> None:
    from energy_pipelines.landing.discover import find_waiting_files

    rows = [f"m-{n},0.{n},23{n},{TS.format(n)}" for n in range(4)]
    bodies = {
        "a.csv": rows[:2],
        "b.csv": [],  # a header without readings
        "c.csv": [rows[2], "", rows[3], "m-9,not-a-number,230,whenever", ""],  # blank lines
        "d.csv": [rows[0] + ",extra-value"],  # a row wider than the header
    }
    for name, body in bodies.items():
        write_csv(tmp_path, "meter", f"gw-1/{name}", METER_HEADER, body)
    files = [f for f in find_waiting_files(tmp_path, METER, 0) if f.path.name != "d.csv"]
    _assert_read_as_alone(_read_at_once(tmp_path, files), files)
    # The row too wide for its header: read one by one, where its reason is given.
    assert _read_at_once(tmp_path) is None
    # Another header (an extra column) in the folder: one by one.
    (tmp_path / "meter" / "gw-1" / "d.csv").unlink()
    write_csv(tmp_path, "meter", "gw-1/e.csv", METER_HEADER + ",firmware", [rows[0] + ",1.2"])
    assert _read_at_once(tmp_path) is None


def test_stored_and_new_readings_interleaved_in_a_batch_are_told_apart_exactly(
    db, settings: Settings, landing: Path
) -> None:
    minutes = [f"2026-02-11T{h:02d}:{m:02d}:00Z" for h in (10, 11) for m in range(60)]
    stored = [f"m-{d},0.5,230,{ts}" for d in range(20) for ts in minutes[::2]]
    write_csv(landing, "meter", "first.csv", METER_HEADER, stored)
    ingest_stream(db, METER, settings, run_id="first")
    # Every device again, every minute: half of it stored already (one in ten with other
    # values), spread over files of several gateways.
    for gateway in range(4):
        rows = [
            f"m-{d},{0.9 if (d + i) % 10 == 0 and i % 2 == 0 else 0.5},230,{ts}"
            for d in range(gateway, 20, 4)
            for i, ts in enumerate(minutes)
        ]
        write_csv(landing, "meter", f"gw-{gateway}/again.csv", METER_HEADER, rows)
    outcomes = ingest_stream(db, METER, settings, run_id="again")
    totals = [sum(getattr(o.manifest, f"rows_{c}") for o in outcomes) for c in ("read", "loaded")]
    conflicts = sum(o.manifest.rows_conflicting for o in outcomes)
    duplicates = sum(o.manifest.rows_duplicate for o in outcomes)
    assert totals == [20 * 120, 20 * 60]
    assert conflicts == len([1 for d in range(20) for i in range(0, 120, 2) if (d + i) % 10 == 0])
    assert duplicates + conflicts == 20 * 60
    assert query(
        db, "SELECT count(*), count(DISTINCT (meter_id, ts)) FROM meter_readings_history"
    ) == [(20 * 120, 20 * 120)]
    # The stored readings stayed as they were.
    assert query(
        db, "SELECT count(*) FROM meter_readings_history WHERE kwh_consumed_ac <> 0.5"
    ) == [(0,)]


def test_the_run_shows_files_that_need_a_look_first_and_bounds_the_rest() -> None:
    from datetime import datetime

    from energy_pipelines.defs.ingestion.metadata import _TABLE_FILES, _table_files, needs_a_look
    from energy_pipelines.ingest import FileOutcome
    from energy_pipelines.load.manifest import ManifestRow

    def outcome(path: str, status: str = "loaded", rejected: int = 0) -> FileOutcome:
        row = ManifestRow("meter", path, "", 1, status, datetime.now(UTC), None)
        row.rows_rejected = rejected
        return FileOutcome(row, 1, None)

    clean = [outcome(f"meter/gw/{n:05d}.csv") for n in range(_TABLE_FILES + 100)]
    odd = [outcome("meter/x.csv", rejected=2), outcome("meter/y.csv", status="quarantined")]
    shown = _table_files([*clean[:10], odd[0], *clean[10:], odd[1]])
    assert [o.manifest.path for o in shown[:2]] == ["meter/x.csv", "meter/y.csv"]
    assert len(shown) == _TABLE_FILES
    assert [needs_a_look(o) for o in (clean[0], *odd)] == [False, True, True]


def test_streams_loaded_in_worker_processes_count_every_file_like_threads(
    db, env: dict, landing: Path, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    simulate(source, 12, 12, datetime(2026, 2, 11, 10, tzinfo=UTC), 20)
    cut_into_gateways(source, landing, Layout("g3x1", gateways=3, file_minutes=1), "parquet")
    # A bad file in each stream: quarantined alone, in its worker process.
    (landing / "meter" / "gw-000" / "broken.parquet").write_bytes(b"PAR1 not parquet")
    (landing / "vehicle" / "gw-000" / "broken.parquet").write_bytes(b"PAR1 not parquet")
    workers = {**env, "ENERGY_STREAM_WORKERS": "processes"}
    done = cli("ingest", env=workers)
    assert done.returncode == 0, done.stderr
    assert query(
        db,
        "SELECT stream, status, count(*), sum(rows_read)::bigint, sum(rows_loaded)::bigint"
        " FROM ingested_files WHERE stream <> 'correlation' GROUP BY 1, 2 ORDER BY 1, 2",
    ) == [
        ("meter", "loaded", 3 * 20, 12 * 20, 12 * 20),
        ("meter", "quarantined", 1, 0, 0),
        ("vehicle", "loaded", 3 * 20, 12 * 20, 12 * 20),
        ("vehicle", "quarantined", 1, 0, 0),
    ]
    assert query(db, "SELECT count(*) FROM vehicle_readings_history") == [(12 * 20,)]
    # A run of more than 100 files lists the files that need a look, and counts the rest.
    assert "quarantined       meter/gw-000/broken.parquet" in done.stdout
    assert "loaded            meter/gw-000/" not in done.stdout
    assert f"... {2 * 3 * 20 + 1} more files not listed, of which 0 need a look" in done.stdout
    [(files, read)] = query(db, "SELECT count(*), sum(rows_read)::bigint FROM ingested_files")
    assert files == 2 * (3 * 20 + 1) + 1  # the correlation file too
    assert f"total: read {read}, loaded {read}, rejected 0, duplicate 0, conflicting 0" in (
        done.stdout
    )
    assert f"({files} files)" in done.stdout
