"""Set-based writes of one file's rows into history and quarantine, in the caller's transaction."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from energy_pipelines.contract import HOURLY_TOTALS_TABLES, Stream
from energy_pipelines.faults import crash_point
from energy_pipelines.transform.readings import minute_bit, utc_hour

STAGING_TABLE = "staging_rows"
# The ADBC driver encodes one record batch, then sends it: in batches this size, PostgreSQL
# stores one batch while the next is encoded. 300,000 meter readings took 0.43 s to COPY in
# one batch, 0.29 s in batches of 20,000 (benchmarks/copy_batch_size.py).
COPY_BATCH_ROWS = 20_000
# A new day is partitioned by hour when the rows that open it bring at least this many readings
# per hour; otherwise it stays one table. A day file of 7.2 M readings, read in chunks of
# 100,000 rows, split each chunk into 24 COPYs of 4,200 rows: 110.7 s against 71.2 s for one
# table (bench --files-per-stream 1 --pipeline-only).
# ENERGY_HOURLY_LEAF_MIN_ROWS overrides it (tests and benchmarks that need many leaves fast).
HOURLY_LEAF_MIN_ROWS = int(os.environ.get("ENERGY_HOURLY_LEAF_MIN_ROWS") or 20_000)
REJECT_STAGING_TABLE = "staging_rejected_rows"
_HOUR_KEYS_TABLE = "staging_hour_keys"
_NO_CONFLICTS = pl.DataFrame(schema={"row_number": pl.Int64, "stored_values": pl.String})
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def _ident(name: str) -> str:
    # Only contract constants reach SQL text; values always travel as parameters or via COPY.
    if not _IDENTIFIER.match(name):
        raise ValueError(f"unexpected identifier {name!r}")
    return name


@dataclass(frozen=True)
class HistoryWrite:
    loaded: int
    duplicate: int
    # row_number of the staged row, the stored reading it conflicts with (JSON text).
    conflicts: pl.DataFrame
    # row_numbers of staged rows whose key history already held (duplicates and conflicts).
    existing_rows: pl.Series
    # True when every row was provably new and COPYed straight in.
    fast_path: bool


def copy_rows(cur: Any, table: str, rows: pa.Table, **ingest: Any) -> None:
    """COPY rows into a table through ADBC, in batches of COPY_BATCH_ROWS (zero-copy slices)."""
    batches = rows.to_batches(max_chunksize=COPY_BATCH_ROWS)
    cur.adbc_ingest(table, pa.Table.from_batches(batches, schema=rows.schema), **ingest)


def ensure_hour_partitions(cur: Any, stream: Stream, hours: list[datetime]) -> None:
    """Make the hours real partitions with their key index
    (sql/repeatable/history_partitions.sql)."""
    for hour in hours:
        cur.execute("SELECT ensure_hour_partition($1::regclass, $2)", (stream.table, hour))


def _naive_ts(rows: pa.Table) -> pa.ChunkedArray:
    # UTC wall time without the zone: Arrow then floors without converting every value through
    # the zone's rules (10 times faster).
    return rows["ts"].cast(pa.timestamp(rows["ts"].type.unit))


def _hours_in(rows: pa.Table, ts_range: tuple[datetime, datetime]) -> list[datetime]:
    """The UTC hours the rows fall on; the range alone answers for a file within one hour."""
    low, high = ts_range
    first_hour = low.replace(minute=0, second=0, microsecond=0)
    if high < first_hour + timedelta(hours=1):
        return [first_hour]
    hours = pc.unique(pc.floor_temporal(_naive_ts(rows), unit="hour")).to_pylist()
    return sorted(hour.replace(tzinfo=UTC) for hour in hours)


def _split_by_day(rows: pa.Table, hours: list[datetime]) -> list[tuple[date, pa.Table]]:
    """The rows of each UTC day, in their order. Most files hold one day."""
    days = sorted({hour.date() for hour in hours})
    if len(days) == 1:
        return [(days[0], rows)]
    row_days = pc.floor_temporal(_naive_ts(rows), unit="day")
    return [
        (
            day,
            rows.filter(
                pc.equal(row_days, pa.scalar(datetime(day.year, day.month, day.day), row_days.type))
            ),
        )
        for day in days
    ]


def _split_by_hour(rows: pa.Table, hours: list[datetime]) -> list[tuple[datetime, pa.Table]]:
    """The rows of each of the given UTC hours, in their order (key order within each hour)."""
    if len(hours) == 1:
        return [(hours[0], rows)]
    # One stable sort by hour, then zero-copy slices (one filter per hour costs 6 times more).
    row_hours = pc.floor_temporal(_naive_ts(rows), unit="hour")
    ordered = rows.take(pc.sort_indices(row_hours))
    per_hour = {
        entry["values"].replace(tzinfo=UTC): entry["counts"]
        for entry in pc.value_counts(row_hours).to_pylist()
    }
    parts, offset = [], 0
    for hour in hours:
        parts.append((hour, ordered.slice(offset, per_hour[hour])))
        offset += per_hour[hour]
    return parts


def _copy_new_rows(
    cur: Any, stream: Stream, rows: pa.Table, ts_range: tuple[datetime, datetime]
) -> None:
    """COPY rows no stored reading can share a key with into their days' tables: the day's
    single table, or, for a day partitioned by hour, each hour's leaf or new table."""
    hours = _hours_in(rows, ts_range)
    for day, day_rows in _split_by_day(rows, hours):
        day_hours = [hour for hour in hours if hour.date() == day]
        # Few readings per hour (a chunk of a day file, a small file): a new day stays one
        # table.
        whole_day = day_rows.num_rows < HOURLY_LEAF_MIN_ROWS * len(day_hours)
        cur.execute(
            "SELECT day_table_for_new_rows_of($1::regclass, $2::date, $3)",
            (stream.table, day, whole_day),
        )
        day_table = cur.fetchone()[0]
        if day_table is not None:
            copy_rows(cur, _ident(day_table), day_rows, mode="append")
            continue
        for hour, hour_rows in _split_by_hour(day_rows, day_hours):
            cur.execute("SELECT hour_table_for_new_rows($1::regclass, $2)", (stream.table, hour))
            copy_rows(cur, _ident(cur.fetchone()[0]), hour_rows, mode="append")


def _stored_json(stream: Stream) -> str:
    pairs = ", ".join(f"'{f.file_name}', h.{_ident(f.column)}" for f in stream.fields)
    return f"jsonb_build_object({pairs}, 'fileId', h.file_id)::text"


def may_overlap_history(cur: Any, stream: Stream, ts_range: tuple[datetime, datetime]) -> bool:
    """Whether history can hold any key in the file's time range. Every stored reading came from
    a loaded file and lies within that file's [min_ts, max_ts], so the small manifest answers it
    exactly (the caller holds the stream lock, so no load is in flight)."""
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM ingested_files WHERE stream = $1 AND status = 'loaded'"
        " AND rows_loaded > 0 AND min_ts <= $3 AND max_ts >= $2)",
        (stream.name, *ts_range),
    )
    return bool(cur.fetchone()[0])


def with_file_ids(staged: pa.Table, file_ids: pa.Array | int) -> pa.Table:
    """The staged rows with the manifest file_id of each (one id for a whole file)."""
    if isinstance(file_ids, int):
        file_ids = pa.repeat(pa.scalar(file_ids, pa.int64()), staged.num_rows)
    return staged.append_column("file_id", file_ids)


def _range_of(rows: pa.Table) -> tuple[datetime, datetime]:
    extremes = pc.min_max(rows["ts"])
    return extremes["min"].as_py(), extremes["max"].as_py()


def _maybe_stored(cur: Any, stream: Stream, rows: pa.Table) -> pa.ChunkedArray:
    """Per row, whether history may already hold its key: true when its device reported in the
    same minute before (the minute bitmaps of sql/014, kept in the same transactions as
    history, so a clear bit proves the key new). One small lookup per device and hour."""
    device = stream.key[0]
    keyed = (
        pl.from_arrow(rows.select([device, "ts"]))
        .lazy()
        .with_columns(utc_hour(pl.col("ts")).alias("hour"), minute_bit(pl.col("ts")).alias("bit"))
    )
    hours = keyed.select(device, "hour").unique().collect()
    cur.adbc_ingest(_HOUR_KEYS_TABLE, hours.to_arrow(), mode="replace", temporary=True)
    table, dev = _ident(HOURLY_TOTALS_TABLES[stream.name]), _ident(device)
    cur.execute(
        f"SELECT k.{dev}, k.hour, t.minutes FROM pg_temp.{_HOUR_KEYS_TABLE} k"
        f" JOIN {table} t ON t.{dev} = k.{dev} AND t.hour = k.hour"
    )
    stored = pl.from_arrow(cur.fetch_arrow_table())
    assert isinstance(stored, pl.DataFrame)
    if stored.height == 0:
        return pa.chunked_array([pa.array([False] * rows.num_rows)])
    flags = (
        # The flags line up with the rows only if the join keeps the rows' order.
        keyed.join(
            stored.lazy().cast({"hour": pl.Datetime("us", "UTC")}),
            on=[device, "hour"],
            how="left",
            maintain_order="left",
        )
        .select((pl.col("minutes").fill_null(0).cast(pl.Int64) & pl.col("bit")) != 0)
        .collect()
        .to_series()
    )
    return pa.chunked_array([flags.to_arrow()])


def write_history(
    cur: Any, stream: Stream, staged: pa.Table, ts_range: tuple[datetime, datetime] | None
) -> HistoryWrite:
    """Write unique rows (key order; the stream's columns, row_number, file_id) into history.

    Rows no stored reading can share a key with are COPYed straight into their day's or hour's
    table: all of them when the manifest proves the time range new, else those whose device
    had not reported in their minute (_maybe_stored). A new day or hour gets a table without an
    index, which the run indexes and attaches when it ends (load/key_builds.py). The other
    rows are staged with COPY, the keys history already holds are taken out (same values:
    duplicate; other values: conflict, the stored reading stays) and the rest is inserted.
    """
    if ts_range is None:
        return _write_through_staging(cur, stream, staged, None)
    if not may_overlap_history(cur, stream, ts_range):
        fresh, rest = staged, staged.slice(0, 0)
    else:
        maybe = _maybe_stored(cur, stream, staged)
        fresh, rest = staged.filter(pc.invert(maybe)), staged.filter(maybe)
    if fresh.num_rows:
        _copy_new_rows(cur, stream, fresh.drop_columns(["row_number"]), _range_of(fresh))
    crash_point("after_staging_copy")
    if rest.num_rows == 0:
        return HistoryWrite(
            loaded=fresh.num_rows,
            duplicate=0,
            conflicts=_NO_CONFLICTS,
            existing_rows=pl.Series("row_number", [], pl.Int64),
            fast_path=True,
        )
    written = _write_through_staging(cur, stream, rest, _range_of(rest))
    return HistoryWrite(
        loaded=fresh.num_rows + written.loaded,
        duplicate=written.duplicate,
        conflicts=written.conflicts,
        existing_rows=written.existing_rows,
        fast_path=False,
    )


def _write_through_staging(
    cur: Any, stream: Stream, staged: pa.Table, ts_range: tuple[datetime, datetime] | None
) -> HistoryWrite:
    if ts_range is not None:
        ensure_hour_partitions(cur, stream, _hours_in(staged, ts_range))
    copy_rows(cur, STAGING_TABLE, staged, mode="replace", temporary=True)
    crash_point("after_staging_copy")
    table = _ident(stream.table)
    key_match = " AND ".join(f"h.{_ident(k)} = s.{_ident(k)}" for k in stream.key)
    values = stream.value_columns
    same = (
        f"(({', '.join('s.' + _ident(c) for c in values)}) IS NOT DISTINCT FROM "
        f"({', '.join('h.' + _ident(c) for c in values)}))"
        if values
        else "true"
    )
    params: tuple[Any, ...] = ()
    prune = ""
    if ts_range is not None:
        # Lets PostgreSQL skip partitions outside the rows' time range.
        prune = " AND h.ts >= $1 AND h.ts <= $2"
        params = ts_range
    cur.execute(
        f"""
        DELETE FROM pg_temp.{STAGING_TABLE} s
         USING {table} h
         WHERE {key_match}{prune}
        RETURNING s.row_number, {same} AS same_values, {_stored_json(stream)} AS stored_values
        """,
        params,
    )
    existing = pl.from_arrow(cur.fetch_arrow_table())
    assert isinstance(existing, pl.DataFrame)
    duplicate = int(existing["same_values"].sum()) if existing.height else 0
    conflicts = existing.filter(~pl.col("same_values")).select("row_number", "stored_values")

    columns = ", ".join(_ident(c) for c in stream.columns)
    cur.execute(
        f"INSERT INTO {table} ({columns}, file_id)"
        f" SELECT {columns}, file_id FROM pg_temp.{STAGING_TABLE}"
    )
    # Exact: the lock keeps other writers out, so every row left in staging was inserted
    # (ADBC reports no row count for INSERT ... SELECT).
    loaded = staged.num_rows - existing.height
    return HistoryWrite(
        loaded=loaded,
        duplicate=duplicate,
        conflicts=conflicts,
        existing_rows=existing["row_number"].cast(pl.Int64),
        fast_path=False,
    )


def stage_rejected_rows(cur: Any, rejected: pl.DataFrame, first: bool) -> bool:
    """Keep a chunk's quarantined rows (file_id, stream, source_path, row_number, column_name,
    kind, rule, raw_values, stored_values as JSON text) in a temporary table until the batch's
    manifest rows exist; `first` starts the table afresh. True when rows were staged."""
    if rejected.height == 0:
        return False
    mode = "replace" if first else "append"
    cur.adbc_ingest(REJECT_STAGING_TABLE, rejected.to_arrow(), mode=mode, temporary=True)
    return True


def insert_staged_rejected_rows(cur: Any) -> None:
    cur.execute(
        f"""
        INSERT INTO rejected_rows (file_id, stream, source_path, row_number, column_name, kind,
                                   rule, raw_values, stored_values)
        SELECT file_id, stream, source_path, row_number, column_name, kind, rule,
               raw_values::jsonb, stored_values::jsonb
          FROM pg_temp.{REJECT_STAGING_TABLE}
         ORDER BY file_id, row_number
        """
    )


_TOTALS_STAGING_TABLE = "staging_hourly_totals"
# How a file's addition combines with the stored row, per measure (sum when not listed).
_COMBINE = {"voltage_min": "least", "voltage_max": "greatest"}


def _combined(column: str) -> str:
    """The stored total's column combined with a load's (`excluded`) addition."""
    stored, added = f"t.{column}", f"excluded.{column}"
    if column == "minutes":
        return f"{stored} | {added}"
    if column in _COMBINE:
        return f"{_COMBINE[column]}({stored}, {added})"
    return f"{stored} + {added}"


def add_hourly_totals(cur: Any, stream: Stream, totals: pl.DataFrame) -> None:
    """Add one load's per-device, per-hour totals to the running ones, in the load's
    transaction: sums add up, extremes widen, minute bitmaps are OR-ed."""
    if totals.height == 0:
        return
    table = _ident(HOURLY_TOTALS_TABLES[stream.name])
    device = _ident(stream.key[0])
    columns = [_ident(c) for c in totals.columns]
    measures = [c for c in columns if c not in (device, "hour")]
    updates = ", ".join(f"{c} = {_combined(c)}" for c in measures)
    cur.adbc_ingest(_TOTALS_STAGING_TABLE, totals.to_arrow(), mode="replace", temporary=True)
    cur.execute(
        f"INSERT INTO {table} AS t ({', '.join(columns)})"
        f" SELECT {', '.join(columns)} FROM pg_temp.{_TOTALS_STAGING_TABLE}"
        f" ON CONFLICT ({device}, hour) DO UPDATE SET {updates}"
    )
