"""Pandera (polars backend) schemas for typed readings. Each check's error is the plain-words rule
a gateway operator sees in quarantine."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pandera.polars as pa
import polars as pl

from energy_pipelines.contract import KWH, NOT_FINITE, Field, Range, Stream, ValueKind
from energy_pipelines.settings import ValidationLimits
from energy_pipelines.validate.ids import ID_RULES, IdRule


def _finite(data: pa.PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(data.key).is_finite())


def _id_check(rule: IdRule) -> pa.Check:
    def holds(data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(rule.holds(pl.col(data.key)))

    return pa.Check(holds, error=rule.error)


def _range(allowed: Range) -> list[pa.Check]:
    def within(data: pa.PolarsData) -> pl.LazyFrame:
        value = pl.col(data.key)
        inside = value.is_between(allowed.low, allowed.high)
        # NaN and infinity are reported once, by the finiteness check.
        return data.lazyframe.select(~value.is_finite() | inside)

    return [pa.Check(_finite, error=NOT_FINITE), pa.Check(within, error=allowed.rule)]


def allowed_range(kind: ValueKind, limits: ValidationLimits) -> Range | None:
    """The range a number of `kind` must fall in: the contract's, with the kWh ceiling taken from
    the settings (ENERGY_MAX_KWH_PER_READING)."""
    if kind.allowed is not None and kind.name == KWH.name:
        return replace(kind.allowed, high=limits.max_kwh_per_reading)
    return kind.allowed


def _timestamp_checks(limits: ValidationLimits, ingested_at: datetime) -> list[pa.Check]:
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


def _checks_for(field: Field, limits: ValidationLimits, ingested_at: datetime) -> list[pa.Check]:
    if field.kind == "id":
        return [_id_check(rule) for rule in ID_RULES]
    if field.kind == "timestamp":
        return _timestamp_checks(limits, ingested_at)
    allowed = allowed_range(field.value_kind, limits)
    assert allowed is not None, f"a number without a range: {field.kind}"
    return _range(allowed)


def reading_schema(
    stream: Stream, limits: ValidationLimits, ingested_at: datetime
) -> pa.DataFrameSchema:
    """Schema of a typed frame. Nulls pass here: the typing step already reported missing and
    unparseable values, and a value is reported once, with the most specific rule."""
    return pa.DataFrameSchema(
        {
            field.column: pa.Column(
                field.value_kind.polars_dtype,
                checks=_checks_for(field, limits, ingested_at),
                nullable=True,
            )
            for field in stream.fields
        },
        strict=False,
        name=f"{stream.name}_readings",
    )
