"""Many small files of one stream as one frame, and the outcome split back per file.

Pure functions: a batch's rows are validated, deduplicated and written once, which costs about
what one file costs, while every file keeps its own counts and quarantined rows. Files are
combined in batch order (landing-relative path), so a key repeated across files is kept from
the earliest file; the later rows count as its duplicates or conflicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from energy_pipelines.landing.read import ROW_NUMBER, RawFile

FILE_INDEX = "file_index"
FILE_ROW = "file_row"
COUNT_COLUMNS = ("read", "loaded", "rejected", "duplicate", "conflicting")


def shape_of(raw: RawFile) -> tuple[Any, ...]:
    """Files combine when their rows have the same column types and came under the same
    headers (quarantined rows name the header the file used)."""
    return (tuple(raw.frame.schema.items()), tuple(sorted(raw.source_names.items())))


@dataclass(frozen=True)
class CombinedRows:
    raw: RawFile  # every file's rows, numbered 1..N in batch order
    origin: pl.DataFrame  # row_number (in the batch) -> file_index, file_row (in its file)


def combine(raws: Sequence[RawFile]) -> CombinedRows:
    """One RawFile of files with the same shape_of()."""
    heights = [raw.frame.height for raw in raws]
    file_index = pl.Series(FILE_INDEX, np.repeat(np.arange(len(raws), dtype=np.int32), heights))
    rows = (
        pl.concat([raw.frame for raw in raws], how="vertical")
        .rename({ROW_NUMBER: FILE_ROW})
        .with_columns(file_index)
    )
    rows = rows.with_columns(pl.int_range(1, rows.height + 1, dtype=pl.Int64).alias(ROW_NUMBER))
    origin = rows.select(ROW_NUMBER, FILE_INDEX, FILE_ROW)
    extra = sorted({c for raw in raws for c in raw.extra_columns})
    frame = rows.drop(FILE_INDEX, FILE_ROW).select(ROW_NUMBER, pl.exclude(ROW_NUMBER))
    return CombinedRows(RawFile(frame, dict(raws[0].source_names), extra), origin)


def to_file_rows(frame: pl.DataFrame, origin: pl.DataFrame) -> pl.DataFrame:
    """Rows keyed by batch row_number, with file_index added and row_number made the row's
    number in its own file."""
    return (
        frame.join(origin, on=ROW_NUMBER, how="left")
        .drop(ROW_NUMBER)
        .rename({FILE_ROW: ROW_NUMBER})
    )


def conflict_rules_in_batch(
    rejects: pl.DataFrame, origin: pl.DataFrame, paths: list[str]
) -> pl.DataFrame:
    """The rejects of a combined batch (row_number, column_name, rule, kind, first_row by batch
    row) with each conflict's rule naming the row it repeats in the files' own numbering."""
    first = origin.select(
        pl.col(ROW_NUMBER).alias("first_row"),
        pl.col(FILE_INDEX).alias("first_file"),
        pl.col(FILE_ROW).alias("first_file_row"),
    )
    joined = to_file_rows(rejects, origin).join(first, on="first_row", how="left")
    path_of = pl.col("first_file").replace_strict(
        list(range(len(paths))), paths, return_dtype=pl.String, default=None
    )
    same_file = pl.col("first_file") == pl.col(FILE_INDEX)
    rule = (
        pl.when((pl.col("kind") != "conflicting") | pl.col("first_file").is_null())
        .then(pl.col("rule"))
        .when(same_file)
        .then(
            pl.format(
                "same key as row {} of this file with different values; the first row is kept",
                pl.col("first_file_row"),
            )
        )
        .otherwise(
            pl.format(
                "same key as row {} of {} (an earlier file of the same run) with different "
                "values; that row is kept",
                pl.col("first_file_row"),
                path_of,
            )
        )
    )
    return joined.with_columns(rule.alias("rule")).drop("first_row", "first_file", "first_file_row")


def counts_per_file(
    origin: pl.DataFrame,
    rejects: pl.DataFrame,
    kept_rows: pl.Series,
    stored: pl.DataFrame,
    files: int,
) -> pl.DataFrame:
    """file_index -> read, loaded, rejected, duplicate, conflicting.

    rejects: batch rows quarantined (kind invalid, or conflicting within the batch); kept_rows:
    batch rows written after deduplication; stored: of those, the rows history already held
    (row_number, same_values). Every read row is exactly one of loaded, rejected, duplicate,
    conflicting."""
    index = pl.DataFrame({FILE_INDEX: pl.int_range(files, dtype=pl.Int32, eager=True)})

    def per_file(rows: pl.DataFrame, name: str) -> pl.DataFrame:
        return (
            rows.join(origin, on=ROW_NUMBER, how="inner")
            .group_by(FILE_INDEX)
            .agg(pl.len().cast(pl.Int64).alias(name))
        )

    invalid = rejects.filter(pl.col("kind") == "invalid").select(ROW_NUMBER).unique()
    in_batch = rejects.filter(pl.col("kind") == "conflicting").select(ROW_NUMBER).unique()
    parts = [
        per_file(origin.select(ROW_NUMBER), "read"),
        per_file(invalid, "rejected"),
        per_file(in_batch, "batch_conflicts"),
        per_file(kept_rows.to_frame(ROW_NUMBER), "kept"),
        per_file(stored.filter(pl.col("same_values")).select(ROW_NUMBER), "stored_same"),
        per_file(stored.filter(~pl.col("same_values")).select(ROW_NUMBER), "stored_other"),
    ]
    counts = index
    for part in parts:
        counts = counts.join(part, on=FILE_INDEX, how="left")
    counts = counts.fill_null(0)
    batch_duplicates = (
        pl.col("read") - pl.col("rejected") - pl.col("kept") - pl.col("batch_conflicts")
    )
    return counts.select(
        FILE_INDEX,
        "read",
        (pl.col("kept") - pl.col("stored_same") - pl.col("stored_other")).alias("loaded"),
        "rejected",
        (batch_duplicates + pl.col("stored_same")).alias("duplicate"),
        (pl.col("batch_conflicts") + pl.col("stored_other")).alias("conflicting"),
    ).sort(FILE_INDEX)
