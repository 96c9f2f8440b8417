"""Type raw columns and split a file's rows into valid rows and rejected rows with reasons.

Pure functions: Polars in, Polars out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl
from pandera.errors import SchemaErrors

from energy_pipelines.contract import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    Field,
    Stream,
)
from energy_pipelines.landing.read import ROW_NUMBER, RawFile
from energy_pipelines.settings import ValidationLimits
from energy_pipelines.validate.schemas import reading_schema

# ISO-8601 spellings accepted in text; `%#z` takes `Z`, `+02:00` and `+0200`.
_TIMESTAMP_WITH_OFFSET = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")
_TIMESTAMP_NAIVE = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f")

REJECT_COLUMNS = {ROW_NUMBER: pl.Int64, "column_name": pl.String, "rule": pl.String}
MISSING = "is missing"


@dataclass(frozen=True)
class ValidatedRows:
    valid: pl.DataFrame  # typed table columns + row_number
    rejects: pl.DataFrame  # row_number, column_name, rule (a row may fail several rules)

    @property
    def rejected_row_count(self) -> int:
        return self.rejects[ROW_NUMBER].n_unique()


def _parse_text_timestamp(column: pl.Expr) -> pl.Expr:
    text = column.str.strip_chars()
    attempts = [
        text.str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False)
        for fmt in _TIMESTAMP_WITH_OFFSET
    ] + [
        # A timestamp without offset is UTC by contract.
        text.str.to_datetime(fmt, time_unit="us", strict=False).dt.replace_time_zone("UTC")
        for fmt in _TIMESTAMP_NAIVE
    ]
    return pl.coalesce(attempts)


def _typed_expr(field: Field, dtype: pl.DataType) -> pl.Expr:
    """The column in its kind's dtype; null where a value cannot be typed."""
    column = pl.col(field.column)
    typed = field.value_kind.polars_dtype
    if field.kind == "id":
        return column.cast(typed)
    if field.kind == "timestamp":
        if isinstance(dtype, pl.Datetime):
            if dtype.time_zone is None:
                column = column.dt.replace_time_zone("UTC")
            return column.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        if dtype == pl.Null:
            return column.cast(typed)
        return _parse_text_timestamp(column)
    if dtype == pl.String:
        return column.str.strip_chars().cast(typed, strict=False)
    return column.cast(typed)


def _typing_failure(field: Field, dtype: pl.DataType) -> pl.Expr:
    """The rule a raw value breaks if it cannot be typed, else null."""
    raw = pl.col(field.column)
    typed = pl.col(f"__typed_{field.column}")
    is_blank = raw.is_null()
    # A blank id is text all the same: the Pandera check names the rule it breaks.
    if dtype == pl.String and field.kind != "id":
        is_blank = is_blank | (raw.str.strip_chars() == "")
    return (
        pl.when(is_blank)
        .then(pl.lit(MISSING))
        .when(typed.is_null())
        .then(pl.lit(field.value_kind.unparseable))
        .otherwise(pl.lit(None, pl.String))
    )


def _empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema=REJECT_COLUMNS)


def validate_rows(
    raw: RawFile, stream: Stream, limits: ValidationLimits, ingested_at: datetime
) -> ValidatedRows:
    frame = raw.frame
    typed = frame.with_columns(
        _typed_expr(f, frame.schema[f.column]).alias(f"__typed_{f.column}") for f in stream.fields
    )
    typing_rejects = pl.concat(
        [
            typed.select(
                pl.col(ROW_NUMBER),
                pl.lit(raw.source_names[f.column]).alias("column_name"),
                _typing_failure(f, frame.schema[f.column]).alias("rule"),
            ).filter(pl.col("rule").is_not_null())
            for f in stream.fields
        ]
    )
    typed = typed.select(
        pl.col(ROW_NUMBER), *[pl.col(f"__typed_{c}").alias(c) for c in stream.columns]
    )
    if stream.has_timestamp:
        # Years 0 or 10000 parse, but Python datetimes (used by the checks' reports) cannot
        # hold them; clipped, they still break the same rule and the raw value is unchanged.
        typed = typed.with_columns(pl.col("ts").clip(EARLIEST_TIMESTAMP, LATEST_TIMESTAMP))

    schema = reading_schema(stream, limits, ingested_at)
    try:
        # A DataFrame, not a LazyFrame: Pandera runs data checks on it, not only the schema.
        schema.validate(typed, lazy=True)
        check_rejects = _empty_rejects()
    except SchemaErrors as errors:
        cases = errors.failure_cases
        if cases["index"].null_count():
            schema_level = cases.filter(pl.col("index").is_null())
            raise RuntimeError(
                f"typed frame does not match its own schema: {schema_level}"
            ) from errors
        check_rejects = pl.DataFrame(
            {
                ROW_NUMBER: typed[ROW_NUMBER].gather(cases["index"]),
                "column_name": cases["column"].replace_strict(
                    raw.source_names, return_dtype=pl.String
                ),
                "rule": cases["check"],
            }
        )

    rejects = (
        pl.concat([typing_rejects, check_rejects.cast(REJECT_COLUMNS)])
        .unique(maintain_order=True)
        .sort(ROW_NUMBER, maintain_order=True)
    )
    valid = (
        typed.join(rejects.select(ROW_NUMBER).unique(), on=ROW_NUMBER, how="anti")
        if rejects.height
        else typed
    )
    return ValidatedRows(valid=valid, rejects=rejects)


def raw_values_json(raw: RawFile, row_numbers: pl.Series) -> pl.DataFrame:
    """row_number -> the row as the file carried it: a JSON object keyed by the file's headers."""
    rows = raw.frame.join(row_numbers.to_frame(ROW_NUMBER).unique(), on=ROW_NUMBER, how="semi")
    return rows.select(
        pl.col(ROW_NUMBER),
        pl.struct([pl.col(c).cast(pl.String).alias(h) for c, h in raw.source_names.items()])
        .struct.json_encode()
        # jsonb cannot hold \u0000: keep it visible as the text \u0000 instead.
        .str.replace_all("\\u0000", "\\\\u0000", literal=True)
        .alias("raw_values"),
    )
