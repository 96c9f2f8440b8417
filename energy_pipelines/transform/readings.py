"""Shape valid rows for the history tables. Pure functions: Polars in, Polars/Arrow out."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from energy_pipelines.contract import ARROW_TYPES, Stream
from energy_pipelines.landing.read import ROW_NUMBER

_NO_CONFLICTS = pl.DataFrame(schema={ROW_NUMBER: pl.Int64, "first_row": pl.Int64})


@dataclass(frozen=True)
class DeduplicatedRows:
    unique: pl.DataFrame
    duplicate_count: int  # exact repeats of an earlier row of the same file
    # Rows whose key repeats an earlier row of the file with other values: row_number, first_row.
    conflicts: pl.DataFrame


def deduplicate_within_file(valid: pl.DataFrame, stream: Stream) -> DeduplicatedRows:
    """Keep the first row of each key. Exact repeats count as duplicates; a repeated key with
    different values is a conflict, and the first row of the file wins."""
    key = list(stream.key)
    # Most files repeat no key: one sort (which staging needs anyway) and a look at neighbours
    # prove it, much cheaper than hashing every row.
    ordered = valid.sort([*key, ROW_NUMBER])
    repeats = ordered.select(
        pl.all_horizontal(pl.col(k) == pl.col(k).shift(1) for k in key).any()
    ).item()
    if not repeats:
        return DeduplicatedRows(unique=ordered, duplicate_count=0, conflicts=_NO_CONFLICTS)
    distinct = valid.unique(subset=stream.columns, keep="first", maintain_order=True)
    duplicate_count = valid.height - distinct.height
    first_row = pl.col(ROW_NUMBER).first().over(key).alias("first_row")
    with_first = distinct.with_columns(first_row)
    conflicts = with_first.filter(pl.col(ROW_NUMBER) != pl.col("first_row")).select(
        ROW_NUMBER, "first_row"
    )
    unique = with_first.filter(pl.col(ROW_NUMBER) == pl.col("first_row")).drop("first_row")
    return DeduplicatedRows(unique=unique, duplicate_count=duplicate_count, conflicts=conflicts)


def to_staging_table(unique: pl.DataFrame, stream: Stream) -> pa.Table:
    """Rows in key order (the primary key index is then filled sequentially), with row_number."""
    # -0.0 + 0.0 is 0.0: a "-0" reading is stored as 0, not as PostgreSQL's -0.
    floats = [f.column for f in stream.fields if ARROW_TYPES[f.kind] == pa.float64()]
    ordered = (
        unique.sort(list(stream.key))
        .select(*stream.columns, ROW_NUMBER)
        .with_columns(pl.col(c) + 0.0 for c in floats)
    )
    schema = pa.schema(
        [pa.field(f.column, ARROW_TYPES[f.kind], nullable=False) for f in stream.fields]
        + [pa.field(ROW_NUMBER, pa.int64(), nullable=False)]
    )
    return ordered.to_arrow().cast(schema)


# Per stream: the daily total columns and how each is computed from one file's inserted rows.
_DAILY_TOTALS = {
    "meter": lambda: [
        pl.col("kwh_consumed_ac").sum(),
        pl.col("voltage").sum().alias("voltage_sum"),
        pl.col("voltage").min().alias("voltage_min"),
        pl.col("voltage").max().alias("voltage_max"),
        pl.len().cast(pl.Int64).alias("readings"),
    ],
    "vehicle": lambda: [
        pl.col("kwh_delivered_dc").sum(),
        pl.col("battery_temp").sum().alias("battery_temp_sum"),
        pl.len().cast(pl.Int64).alias("readings"),
    ],
}


def daily_totals(inserted: pl.DataFrame, stream: Stream) -> pl.DataFrame:
    """One row per UTC day and device of the rows a load inserted: what it adds to the stream's
    daily totals table (sql/011_daily_device_totals.sql)."""
    device = stream.key[0]
    return (
        inserted.group_by(pl.col("ts").dt.date().alias("day"), device)
        .agg(_DAILY_TOTALS[stream.name]())
        .sort("day", device)
    )
