"""Pandera (polars backend) schemas for typed readings. Each check's error is the plain-words rule
a gateway operator sees in quarantine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandera.polars as pa
import polars as pl

from energy_pipelines.contract import Field, Stream
from energy_pipelines.settings import ValidationLimits
from energy_pipelines.validate.ids import ID_RULES, IdRule
from energy_pipelines.validate.ids import MAX_ID_LENGTH as MAX_ID_LENGTH


def _finite(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).is_finite())


def _id_check(rule: IdRule) -> pa.Check:
    def holds(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(rule.holds(pl.col(data.key)))

    return pa.Check(holds, error=rule.error)


def _range(low: float, high: float, unit: str) -> list[pa.Check]:
    def within(data: pa.PolarsData) -> pl.LazyFrame:
        value = pl.col(data.key)
        # NaN and infinity are reported once, by the finiteness check.
        return data.lazyframe.select(~value.is_finite() | value.is_between(low, high))

    return [
        pa.Check(_finite, error="must be a finite number (not NaN or infinity)"),
        pa.Check(within, error=f"must be between {low:g} and {high:g} {unit}".rstrip()),
    ]


def _checks_for(field: Field, limits: ValidationLimits, ingested_at: datetime) -> list[pa.Check]:
    if field.kind == "id":
        return [_id_check(rule) for rule in ID_RULES]
    if field.kind == "kwh":
        return _range(0.0, limits.max_kwh_per_reading, "kWh")
    if field.kind == "voltage":
        return _range(0.0, 2_000.0, "V")
    if field.kind == "soc":
        return _range(0.0, 100.0, "%")
    if field.kind == "battery_temp":
        return _range(-50.0, 120.0, "degrees C")
    earliest = datetime(limits.min_year, 1, 1, tzinfo=UTC)
    latest = ingested_at + timedelta(minutes=limits.max_future_minutes)
    return [
        pa.Check.ge(
            earliest,
            error=f"must not be before {earliest:%Y-%m-%d} (was the device clock set?)",
        ),
        pa.Check.le(
            latest,
            error=(
                f"must not be more than {limits.max_future_minutes:g} minutes after the "
                f"ingestion time ({ingested_at:%Y-%m-%dT%H:%M:%SZ})"
            ),
        ),
    ]


_DTYPES = {
    "id": pl.String,
    "kwh": pl.Float64,
    "voltage": pl.Float64,
    "soc": pl.Float64,
    "battery_temp": pl.Float64,
    "timestamp": pl.Datetime("us", "UTC"),
}


def reading_schema(
    stream: Stream, limits: ValidationLimits, ingested_at: datetime
) -> pa.DataFrameSchema:
    """Schema of a typed frame. Nulls pass here: the typing step already reported missing and
    unparseable values, and a value is reported once, with the most specific rule."""
    return pa.DataFrameSchema(
        {
            field.column: pa.Column(
                _DTYPES[field.kind],
                checks=_checks_for(field, limits, ingested_at),
                nullable=True,
            )
            for field in stream.fields
        },
        strict=False,
        name=f"{stream.name}_readings",
    )
