"""The rows of a batch of files as one frame, and the outcome split back per file.

Pure functions: a batch's rows are validated, deduplicated and written together, which costs
about what one file costs, while every file keeps its own counts and quarantined rows.

A row's number in the batch says where it came from: the file's position in the batch in the
high 32 bits, the row's number in its own file in the low 32. Sorting by it is batch order
(files in landing-relative path order, then rows in file order), so a key repeated across files
is kept from the earliest file, and the later rows count as its duplicates or conflicts. A
large file read in chunks is a batch of one whose chunks keep the file's own row numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from energy_pipelines.landing.read import ROW_NUMBER, RawFile

FILE_INDEX = "file_index"
_FILE_SHIFT = 32
_FILE_ROW_MASK = (1 << _FILE_SHIFT) - 1


def file_index_of(row_number: pl.Expr) -> pl.Expr:
    """The position in the batch of the file a batch row came from."""
    return (row_number // (1 << _FILE_SHIFT)).cast(pl.Int32)


def file_row_of(row_number: pl.Expr) -> pl.Expr:
    """A batch row's number in its own file."""
    return (row_number % (1 << _FILE_SHIFT)).cast(pl.Int64)


def combine(raws: Sequence[RawFile], positions: Sequence[int]) -> RawFile:
    """One RawFile of files with the same RawFile.shape; `positions`: each file's place in the
    batch, which becomes the high bits of its rows' batch numbers."""
    if len(raws) == 1 and positions[0] == 0:
        return raws[0]  # a batch of one keeps the file's own numbers
    heights = [raw.frame.height for raw in raws]
    offset = pl.Series(np.repeat(np.asarray(positions, dtype=np.int64) << _FILE_SHIFT, heights))
    rows = pl.concat([raw.frame for raw in raws], how="vertical")
    if rows.height and rows[ROW_NUMBER].max() > _FILE_ROW_MASK:  # type: ignore[operator]
        raise ValueError("a file of a batch has more rows than a batch row number can hold")
    rows = rows.with_columns((pl.col(ROW_NUMBER).cast(pl.Int64) + offset).alias(ROW_NUMBER))
    extra = sorted({c for raw in raws for c in raw.extra_columns})
    return RawFile(rows, dict(raws[0].source_names), extra)


def to_file_rows(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows keyed by batch row_number, with file_index added and row_number made the row's
    number in its own file."""
    return frame.with_columns(
        file_index_of(pl.col(ROW_NUMBER)).alias(FILE_INDEX),
        file_row_of(pl.col(ROW_NUMBER)).alias(ROW_NUMBER),
    )


def conflict_rules_in_batch(rejects: pl.DataFrame, paths: Sequence[str]) -> pl.DataFrame:
    """The rejects of a batch (row_number, column_name, rule, kind, first_row by batch row) in
    the files' own numbering (file_index, row_number), each conflict's rule naming the row it
    repeats."""
    first = pl.col("first_row")
    first_file = file_index_of(first)
    path_of = first_file.replace_strict(
        list(range(len(paths))), list(paths), return_dtype=pl.String, default=None
    )
    in_file = file_index_of(pl.col(ROW_NUMBER))
    rule = (
        pl.when((pl.col("kind") != "conflicting") | first.is_null())
        .then(pl.col("rule"))
        .when(first_file == in_file)
        .then(
            pl.format(
                "same key as row {} of this file with different values; the first row is kept",
                file_row_of(first),
            )
        )
        .otherwise(
            pl.format(
                "same key as row {} of {} (an earlier file of the same run) with different "
                "values; that row is kept",
                file_row_of(first),
                path_of,
            )
        )
    )
    return to_file_rows(rejects.with_columns(rule.alias("rule"))).drop("first_row")


def counts_per_file(
    read_rows: pl.Series,
    rejects: pl.DataFrame,
    kept_rows: pl.Series,
    stored: pl.DataFrame,
    files: int,
) -> pl.DataFrame:
    """file_index -> read, loaded, rejected, duplicate, conflicting, for one chunk of a batch.

    read_rows: the chunk's batch row numbers; rejects: rows quarantined (kind invalid, or
    conflicting within the batch); kept_rows: rows written after deduplication; stored: of
    those, the rows history already held (row_number, same_values). Every read row is exactly
    one of loaded, rejected, duplicate, conflicting."""
    index = pl.DataFrame({FILE_INDEX: pl.int_range(files, dtype=pl.Int32, eager=True)})

    def per_file(rows: pl.Series | pl.DataFrame, name: str) -> pl.DataFrame:
        frame = rows.to_frame(ROW_NUMBER) if isinstance(rows, pl.Series) else rows
        return frame.group_by(file_index_of(pl.col(ROW_NUMBER)).alias(FILE_INDEX)).agg(
            pl.len().cast(pl.Int64).alias(name)
        )

    invalid = rejects.filter(pl.col("kind") == "invalid").select(ROW_NUMBER).unique()
    in_batch = rejects.filter(pl.col("kind") == "conflicting").select(ROW_NUMBER).unique()
    parts = [
        per_file(read_rows, "read"),
        per_file(invalid, "rejected"),
        per_file(in_batch, "batch_conflicts"),
        per_file(kept_rows, "kept"),
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


def ranges_per_file(unique: pl.DataFrame) -> pl.DataFrame:
    """file_index -> min_ts, max_ts, days of the rows each file keeps."""
    if "ts" not in unique.columns:
        return pl.DataFrame(schema={FILE_INDEX: pl.Int32})
    return unique.group_by(file_index_of(pl.col(ROW_NUMBER)).alias(FILE_INDEX)).agg(
        pl.col("ts").min().alias("min_ts"),
        pl.col("ts").max().alias("max_ts"),
        pl.col("ts").dt.date().unique().sort().alias("days"),
    )


def file_ids_of(row_numbers: pl.Series, file_ids: Sequence[int]) -> pl.Series:
    """Each batch row's manifest file_id, from the batch's file ids in batch order."""
    ids = pl.Series(list(file_ids), dtype=pl.Int64)
    positions = row_numbers.alias(ROW_NUMBER).to_frame().select(file_index_of(pl.col(ROW_NUMBER)))
    return ids.gather(positions.to_series())
