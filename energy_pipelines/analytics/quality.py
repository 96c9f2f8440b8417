"""Data quality per device and UTC day, as pure functions: readings in, rows out.

Flags on kept readings, never rejections (docs/analytics.md "Data quality"). A reading's interval is
floor(ts / cadence); several readings in one interval count as one received interval, whose
energy is their sum, voltage their mean and state of charge the latest one. quality_hours.py
summarizes a device's hour and composes hours in time order, quality_fold.py folds readings
that way into one position per device; finish() turns the position at the day's end into the
day's row; quality_read.py reads the inputs and quality_db.py writes the rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
from numpy.typing import NDArray

from energy_pipelines.analytics.quality_fold import (
    HOURS,
    TOP_K,
    StreamQuality,
    compose,
    day_start,
    empty_state,
    fold,
    padded,
    state_arrays,
    state_frame,
)
from energy_pipelines.analytics.quality_hours import HourSummaries
from energy_pipelines.settings import QualityRules

# Readings up to this late (behind the newest one) do not make a refresh fold a day again.
LATE_ALLOWANCE = timedelta(minutes=15)


def encode_devices(readings: pl.DataFrame) -> tuple[pl.DataFrame, pl.Series]:
    """Readings with `device_id` as readings with a `device` code into the returned ids."""
    devices = readings["device_id"].unique().sort()
    codes = pl.DataFrame({"device_id": devices}).with_row_index("device")
    coded = readings.join(codes, on="device_id", how="left", maintain_order="left")
    return coded.drop("device_id"), devices


def next_through(newest: datetime | None, day: date, old: datetime) -> datetime:
    """Where to store the fold: the hour that holds the newest reading less the allowance for
    late readings, never before the old position, within the day."""
    if newest is None:
        return old
    hour = (newest - LATE_ALLOWANCE).replace(minute=0, second=0, microsecond=0)
    return min(max(hour, old, day_start(day)), day_start(day) + timedelta(days=1))


# What a kept fold holds; a fold kept in another layout is not folded on (2: the reporting
# step, sql/019).
FOLD_LAYOUT = 2


def fold_rules(spec: StreamQuality, rules: QualityRules) -> str:
    """The settings a kept fold depends on, and its layout: one made with others cannot be
    folded on."""
    return (
        f"layout={FOLD_LAYOUT};cadence={spec.cadence_minutes};"
        f"frozen={rules.frozen_min_intervals};estimate={rules.max_estimated_gap_intervals}"
    )


def fold_day(
    state: pl.DataFrame,
    readings: pl.DataFrame,
    devices: pl.Series,
    spec: StreamQuality,
    rules: QualityRules,
    day: date,
    start: int,
    through: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fold [start, through) into the state to keep, then the rest of the day on top: (the
    state at `through`, the state at the day's end)."""
    split = day_start(day) + timedelta(minutes=through * spec.cadence_minutes)
    before = readings.filter(pl.col("ts") < split)
    kept = fold(state, before, devices, spec, rules, day, start, through)
    rest = readings.filter(pl.col("ts") >= split)
    return kept, fold(kept, rest, devices, spec, rules, day, through, spec.per_day)


def compose_day(
    state: pl.DataFrame,
    cells: HourSummaries,
    devices: pl.Series,
    spec: StreamQuality,
    rules: QualityRules,
    through_hour: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Compose hour summaries (cell = device * 24 + hour, none before a device's position in
    `state`) onto it: (the state at `through_hour`, the state at the day's end)."""
    arrays = state_arrays(state, devices)
    before = cells.cell % HOURS < through_hour
    compose(arrays, cells.take(np.flatnonzero(before)), spec, rules, 0, through_hour)
    kept = state_frame({name: values.copy() for name, values in arrays.items()}, devices)
    compose(arrays, cells.take(np.flatnonzero(~before)), spec, rules, through_hour, HOURS)
    return kept, state_frame(arrays, devices)


def spike_references(previous: pl.DataFrame) -> pl.DataFrame:
    """Each device's typical maximum from earlier days (device_id, max_interval_kwh of the days
    before): the median of its non-zero daily maxima. A day without energy says nothing about
    the size of the device's intervals."""
    return (
        previous.filter(pl.col("max_interval_kwh") > 0)
        .group_by("device_id")
        .agg(pl.col("max_interval_kwh").median().alias("reference_kwh"))
    )


def _spikes(state: pl.DataFrame, threshold: pl.Series) -> tuple[NDArray, NDArray]:
    """Intervals above the threshold among each device's largest ones, and whether that count
    may be short (every kept interval is above it and the device has more)."""
    top = padded(state["top_kwh"], TOP_K, -np.inf, state.height)
    limit = threshold.fill_null(np.inf).to_numpy()
    count = (top > limit[:, None]).sum(axis=1)
    return count, (count == TOP_K) & (state["received"].to_numpy() > TOP_K)


def _spans(
    state: pl.DataFrame,
    spec: StreamQuality,
    reported_before: Iterable[str],
    reported_after: Iterable[str],
    references: pl.DataFrame,
) -> pl.DataFrame:
    """Each device's expected span [lo, hi] in intervals, the missing intervals at its edges
    (lead, trail) and its spike reference."""
    frame = state.join(references, on="device_id", how="left").with_columns(
        lo=pl.when(pl.col("device_id").is_in(list(reported_before))).then(0).otherwise("first_idx"),
        hi=pl.when(pl.col("device_id").is_in(list(reported_after)))
        .then(spec.per_day - 1)
        .otherwise("last_idx"),
        own=pl.col("hour_max").list.eval(pl.element().filter(pl.element() > 0)).list.median(),
    )
    return frame.with_columns(
        lead=pl.col("first_idx") - pl.col("lo"),
        trail=pl.col("hi") - pl.col("last_idx"),
        expected=pl.col("hi") - pl.col("lo") + 1,
        spike_reference_kwh=pl.when(pl.col("reference_kwh") > 0)
        .then("reference_kwh")
        .otherwise("own"),
    )


def finish(
    state: pl.DataFrame,
    spec: StreamQuality,
    rules: QualityRules,
    day: date,
    *,
    reported_before: Iterable[str],
    reported_after: Iterable[str],
    references: pl.DataFrame,
) -> pl.DataFrame:
    """The day's rows from the state at its end. A device that reported the day before is
    expected from the day's start, else from its first interval; one that reported the day
    after is expected to the day's end, else to its last interval. `references` (device_id,
    reference_kwh) comes from spike_references() of the days before; a device without one is
    compared with the median of its own non-zero hourly maxima that day."""
    n_min = rules.frozen_min_intervals
    frame = _spans(state, spec, reported_before, reported_after, references)
    count, short = _spikes(frame, frame["spike_reference_kwh"] * rules.spike_factor)

    def at(index: pl.Expr) -> pl.Expr:
        return pl.lit(day_start(day)) + pl.duration(minutes=index * spec.cadence_minutes)

    def still_open(run: str, value: str) -> pl.Expr:
        return (pl.col(run) >= n_min) & (pl.col(value) != 0)

    voltage_runs = pl.col("frozen_value_runs") + still_open("value_run", "last_value")
    return frame.select(
        pl.lit(spec.stream).alias("stream"),
        "device_id",
        pl.lit(day).alias("day"),
        pl.lit(spec.cadence_minutes, pl.Int32).alias("cadence_minutes"),
        at(pl.col("lo")).alias("expected_from"),
        at(pl.col("hi") + 1).alias("expected_to"),
        at(pl.col("first_idx")).alias("first_interval"),
        at(pl.col("last_idx")).alias("last_interval"),
        pl.col("expected").cast(pl.Int32).alias("expected_intervals"),
        pl.col("received").alias("received_intervals"),
        (pl.col("received") / pl.col("expected")).alias("coverage"),
        (pl.col("gap_count") + (pl.col("lead") > 0) + (pl.col("trail") > 0)).cast(pl.Int32),
        (pl.max_horizontal("longest_gap", "lead", "trail") * spec.cadence_minutes)
        .cast(pl.Int32)
        .alias("longest_gap_minutes"),
        (pl.col("frozen_runs") + still_open("reading_run", "last_kwh")).cast(pl.Int32),
        pl.when(not spec.is_vehicle).then(voltage_runs).cast(pl.Int32).alias("frozen_voltage_runs"),
        pl.Series("spike_count", count, pl.Int32),
        "spike_reference_kwh",
        pl.col("hour_max").list.max().alias("max_interval_kwh"),
        pl.when(spec.is_vehicle).then("soc_drops").cast(pl.Int32).alias("soc_drop_while_charging"),
        pl.col("estimated_gaps").alias("estimated_gap_count"),
        pl.when(pl.col("step_gcd") > 0)
        .then(pl.col("step_gcd") * spec.cadence_minutes)
        .cast(pl.Int32)
        .alias("reporting_step_minutes"),
        pl.col("estimated_kwh").alias("estimated_missing_kwh"),
        pl.Series("spike_count_short", short),
    ).sort("device_id")


# A device is said to report less often than its stream's cadence only on this many received
# intervals of the day: two or three lone readings hours apart say nothing about a cadence.
SLOWER_MIN_INTERVALS = 12


def reporting_slower(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows of devices whose readings all lie on a coarser grid than the stream's cadence
    (device_id, reporting_step_minutes, cadence_minutes, received_intervals)."""
    return rows.filter(
        (pl.col("reporting_step_minutes") > pl.col("cadence_minutes"))
        & (pl.col("received_intervals") >= SLOWER_MIN_INTERVALS)
    ).select("device_id", "reporting_step_minutes", "cadence_minutes", "received_intervals")


def exact_spikes(
    rows: pl.DataFrame,
    readings: pl.DataFrame,
    devices: pl.Series,
    spec: StreamQuality,
    rules: QualityRules,
) -> pl.DataFrame:
    """Rows whose spike count may be short, counted again from all their readings of the day
    (`readings` as for fold(), holding at least those devices' whole day)."""
    short = rows.filter("spike_count_short")
    if short.height:
        limits = short.select(
            "device_id", (pl.col("spike_reference_kwh") * rules.spike_factor).alias("limit")
        )
        counted = (
            readings.with_columns(
                device_id=devices.gather(readings["device"]),
                interval=pl.col("ts").dt.epoch("us") // spec.interval_us,
            )
            .join(limits, on="device_id")
            .group_by("device_id", "interval")
            .agg(pl.col("kwh").sum(), pl.col("limit").first())
            .group_by("device_id")
            .agg((pl.col("kwh") > pl.col("limit")).sum().cast(pl.Int32).alias("exact"))
        )
        rows = rows.join(counted, on="device_id", how="left").with_columns(
            spike_count=pl.coalesce("exact", "spike_count")
        )
        rows = rows.drop("exact")
    return rows.drop("spike_count_short")


def quality_of_day(
    readings: pl.DataFrame,
    day: date,
    spec: StreamQuality,
    rules: QualityRules,
    *,
    reported_before: Iterable[str] = (),
    reported_after: Iterable[str] = (),
    previous: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """A whole day's rows from its readings (device_id, ts, kwh, value) in one go; `previous`
    (device_id, max_interval_kwh) holds the device's rows of the days before."""
    coded, devices = encode_devices(readings)
    final = fold(empty_state(), coded, devices, spec, rules, day, 0, spec.per_day)
    references = spike_references(
        previous
        if previous is not None
        else pl.DataFrame(schema={"device_id": pl.String, "max_interval_kwh": pl.Float64})
    )
    rows = finish(
        final,
        spec,
        rules,
        day,
        reported_before=reported_before,
        reported_after=reported_after,
        references=references,
    )
    return exact_spikes(rows, coded, devices, spec, rules)
