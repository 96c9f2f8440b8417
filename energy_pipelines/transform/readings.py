"""Shape valid rows for the history tables. Pure functions: Polars in, Polars/Arrow out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from energy_pipelines.contract import TIMESTAMP, Stream
from energy_pipelines.landing.read import ROW_NUMBER

_NO_CONFLICTS = pl.DataFrame(schema={ROW_NUMBER: pl.Int64, "first_row": pl.Int64})


@dataclass(frozen=True)
class DeduplicatedRows:
    unique: pl.DataFrame
    duplicate_count: int  # exact repeats of an earlier row of the same file
    # Rows whose key repeats an earlier row of the file with other values: row_number, first_row.
    conflicts: pl.DataFrame
    # True when `unique` is already sorted by key (staging then needs no sort of its own).
    in_key_order: bool = False


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
        return DeduplicatedRows(
            unique=ordered, duplicate_count=0, conflicts=_NO_CONFLICTS, in_key_order=True
        )
    distinct = valid.unique(subset=stream.columns, keep="first", maintain_order=True)
    duplicate_count = valid.height - distinct.height
    first_row = pl.col(ROW_NUMBER).first().over(key).alias("first_row")
    with_first = distinct.with_columns(first_row)
    conflicts = with_first.filter(pl.col(ROW_NUMBER) != pl.col("first_row")).select(
        ROW_NUMBER, "first_row"
    )
    unique = with_first.filter(pl.col(ROW_NUMBER) == pl.col("first_row")).drop("first_row")
    return DeduplicatedRows(unique=unique, duplicate_count=duplicate_count, conflicts=conflicts)


class EarlierRows:
    """The rows kept from a file's earlier chunks, to find keys a later chunk repeats.

    Each chunk adds its kept rows compactly (device ids as categoricals) and the sorted 64-bit
    hashes of their keys. A later chunk's keys are looked up among the hashes first; only the
    hits are joined with the kept rows, which decides exactly (a hash collision finds no row)."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.hashes = np.empty(0, dtype=np.uint64)  # sorted
        self.rows: list[pl.DataFrame] = []

    def _key_hashes(self, unique: pl.DataFrame) -> np.ndarray:
        key = [
            pl.col(k).cast(pl.String) if k == self.stream.key[0] else pl.col(k)
            for k in self.stream.key
        ]
        return unique.select(pl.struct(key).hash(seed=0)).to_series().to_numpy()

    def add(self, unique: pl.DataFrame) -> None:
        # Two sorted runs: the stable sort (Timsort for 64-bit keys) merges them in linear time.
        added = np.sort(self._key_hashes(unique))
        self.hashes = np.sort(np.concatenate([self.hashes, added]), kind="stable")
        self.rows.append(
            unique.select(
                pl.col(self.stream.key[0]).cast(pl.Categorical),
                *self.stream.key[1:],
                *self.stream.value_columns,
                ROW_NUMBER,
            )
        )

    def drop_repeats(self, unique: pl.DataFrame) -> DeduplicatedRows:
        """Take out the rows whose key an earlier chunk had: equal values make a duplicate,
        other values a conflict with that (first) row, as within a chunk."""
        no_repeats = DeduplicatedRows(unique=unique, duplicate_count=0, conflicts=_NO_CONFLICTS)
        if len(self.hashes) == 0 or unique.height == 0:
            return no_repeats
        hashes = self._key_hashes(unique)
        at = np.searchsorted(self.hashes, hashes).clip(max=len(self.hashes) - 1)
        hit = self.hashes[at] == hashes
        if not hit.any():
            return no_repeats
        key = list(self.stream.key)
        values = list(self.stream.value_columns)
        candidates = unique.filter(pl.Series(hit))
        wanted = candidates.select(pl.col(key[0]).cast(pl.Categorical), *key[1:])
        first_rows = pl.concat([r.join(wanted, on=key, how="semi") for r in self.rows])
        repeats = candidates.join(
            first_rows.select(
                pl.col(key[0]).cast(pl.String),
                *key[1:],
                *values,
                pl.col(ROW_NUMBER).alias("first_row"),
            ),
            on=key,
            how="inner",
            suffix="_first",
        )
        if repeats.height == 0:  # hash collisions only
            return no_repeats
        same = (
            pl.all_horizontal(pl.col(v) == pl.col(f"{v}_first") for v in values)
            if values
            else pl.lit(True)
        )
        repeats = repeats.with_columns(same.alias("same_values"))
        return DeduplicatedRows(
            unique=unique.join(repeats.select(ROW_NUMBER), on=ROW_NUMBER, how="anti"),
            duplicate_count=int(repeats["same_values"].sum()),
            conflicts=repeats.filter(~pl.col("same_values")).select(
                pl.col(ROW_NUMBER).cast(pl.Int64), pl.col("first_row").cast(pl.Int64)
            ),
        )


def to_staging_table(unique: pl.DataFrame, stream: Stream, in_key_order: bool = False) -> pa.Table:
    """Rows in key order (the primary key index is then filled sequentially), with row_number.
    `in_key_order`: the rows are sorted by key already (deduplication sorted them)."""
    floats = [f.column for f in stream.fields if f.value_kind.arrow_type == pa.float64()]
    ordered = (unique if in_key_order else unique.sort(list(stream.key))).select(
        *stream.columns, ROW_NUMBER
    )
    schema = pa.schema(
        [pa.field(f.column, f.value_kind.arrow_type, nullable=False) for f in stream.fields]
        + [pa.field(ROW_NUMBER, pa.int64(), nullable=False)]
    )
    table = ordered.to_arrow().cast(schema)
    # -0.0 + 0.0 is 0.0: a "-0" reading is stored as 0, not as PostgreSQL's -0. (Arrow's add;
    # Polars leaves -0.0 as it is when it adds a literal zero to a column of several rows.)
    for name in floats:
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), pc.add(table[name], 0.0))
    return table


# Per stream: the hourly total columns and how each is computed from one file's inserted rows.
_HOURLY_TOTALS = {
    "meter": lambda: [
        pl.col("kwh_consumed_ac").sum(),
        pl.col("voltage").sum().alias("voltage_sum"),
        pl.col("voltage").min().alias("voltage_min"),
        pl.col("voltage").max().alias("voltage_max"),
        pl.len().cast(pl.Int64).alias("readings"),
        pl.col("minute_bit").bitwise_or().alias("minutes"),
    ],
    "vehicle": lambda: [
        pl.col("kwh_delivered_dc").sum(),
        pl.col("battery_temp").sum().alias("battery_temp_sum"),
        pl.len().cast(pl.Int64).alias("readings"),
        pl.col("minute_bit").bitwise_or().alias("minutes"),
    ],
}
_MICROS_PER_MINUTE = 60_000_000
_MICROS_PER_HOUR = 60 * _MICROS_PER_MINUTE


# Integer arithmetic on epoch microseconds: flooring tz-aware values goes through the zone rules
# and is many times slower.
def utc_hour(ts: pl.Expr) -> pl.Expr:
    """The start of the reading's UTC hour: the hourly totals' `hour` (sql/014)."""
    micros = ts.dt.epoch("us")
    return (micros // _MICROS_PER_HOUR * _MICROS_PER_HOUR).cast(TIMESTAMP.polars_dtype)


def minute_bit(ts: pl.Expr) -> pl.Expr:
    """The reading's bit in its hour's `minutes` bitmap: bit k for minute k (sql/014)."""
    return pl.lit(2, pl.Int64).pow(ts.dt.epoch("us") // _MICROS_PER_MINUTE % 60)


def hourly_totals(inserted: pl.DataFrame, stream: Stream) -> pl.DataFrame:
    """One row per device and UTC hour of the rows a load inserted: what it adds to the stream's
    hourly totals table (sql/014_hourly_evidence.sql), with the bitmap of minutes that reported
    (bit k for minute k of the hour)."""
    device = stream.key[0]
    return (
        inserted.lazy()
        .with_columns(
            utc_hour(pl.col("ts")).alias("hour"), minute_bit(pl.col("ts")).alias("minute_bit")
        )
        .group_by(device, "hour")
        .agg(_HOURLY_TOTALS[stream.name]())
        .sort(device, "hour")
        .collect()
    )
