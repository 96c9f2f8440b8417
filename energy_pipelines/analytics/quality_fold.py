"""The fold of a day's readings into one position per device (analytics/quality.py).

A device's position after a block of whole hours: its first and last received interval and the
last interval's values, the runs its energy and voltage are in, and its counts so far. Folding
the next block on top of it gives what folding both blocks at once gives, so a refresh of the
current day reads only the readings after the stored position.

A block is folded hour by hour: its readings are summarized per device and hour
(quality_hours.py), and the summaries are composed onto the position in time order. An hour
summarized before (by the load that wrote it) is composed the same way without its readings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

import numpy as np
import polars as pl
from numpy.typing import NDArray

from energy_pipelines.analytics.quality_hours import (
    TOP_K,
    HourSummaries,
    compose_hour,
    largest,
    summarize_hours,
)
from energy_pipelines.settings import QualityRules

HOURS = 24
_US = 1_000_000

STATE_SCHEMA: dict[str, pl.DataType] = {
    "device_id": pl.String(),
    "readings": pl.Int64(),
    "first_idx": pl.Int32(),
    "last_idx": pl.Int32(),
    "last_kwh": pl.Float64(),
    "last_value": pl.Float64(),
    "received": pl.Int32(),
    "gap_count": pl.Int32(),
    "longest_gap": pl.Int32(),
    "estimated_gaps": pl.Int32(),
    "estimated_kwh": pl.Float64(),
    "frozen_runs": pl.Int32(),
    "frozen_value_runs": pl.Int32(),
    "reading_run": pl.Int32(),
    "value_run": pl.Int32(),
    "soc_drops": pl.Int32(),
    "step_gcd": pl.Int32(),
    "hour_max": pl.List(pl.Float64()),
    "top_kwh": pl.List(pl.Float64()),
}
_SCALARS = [c for c in STATE_SCHEMA if c not in ("device_id", "hour_max", "top_kwh")]


@dataclass(frozen=True)
class StreamQuality:
    """What a stream's readings carry besides energy (`value`): meters a voltage, checked for
    frozen runs like energy; vehicles a state of charge, checked for falling while charging."""

    stream: str
    cadence_minutes: int

    @property
    def per_hour(self) -> int:
        return 60 // self.cadence_minutes

    @property
    def per_day(self) -> int:
        return HOURS * self.per_hour

    @property
    def interval_us(self) -> int:
        return self.cadence_minutes * 60 * _US

    @property
    def is_vehicle(self) -> bool:
        return self.stream == "vehicle"


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def empty_state() -> pl.DataFrame:
    return pl.DataFrame(schema=STATE_SCHEMA)


def padded(lists: pl.Series, width: int, fill: float, n: int) -> NDArray[np.float64]:
    out = np.full((n, width), fill)
    for i, values in enumerate(lists.to_list()):
        if values:
            out[i, : len(values)] = values
    return out


def state_arrays(state: pl.DataFrame, devices: pl.Series) -> dict[str, NDArray]:
    """The state's columns aligned to `devices` (a device without state: zeros, last_idx -1)."""
    n = devices.len()
    aligned = pl.DataFrame({"device_id": devices}).join(
        state, on="device_id", how="left", maintain_order="left"
    )
    arrays: dict[str, NDArray] = {
        c: aligned[c]
        .fill_null(-1 if c in ("first_idx", "last_idx") else 0)
        .to_numpy()
        .astype(np.float64 if STATE_SCHEMA[c] == pl.Float64 else np.int64)
        for c in _SCALARS
    }
    arrays["hour_max"] = padded(aligned["hour_max"], HOURS, 0.0, n)
    arrays["top_kwh"] = padded(aligned["top_kwh"], TOP_K, -np.inf, n)
    return arrays


def state_frame(arrays: dict[str, NDArray], devices: pl.Series) -> pl.DataFrame:
    """The state of the devices that received an interval, as a frame (STATE_SCHEMA)."""
    frame = pl.DataFrame(
        {"device_id": devices, **{c: arrays[c] for c in _SCALARS}},
        schema_overrides={c: STATE_SCHEMA[c] for c in _SCALARS},
    ).with_columns(
        hour_max=pl.Series(arrays["hour_max"]).arr.to_list(),
        top_kwh=pl.Series(arrays["top_kwh"])
        .arr.to_list()
        .list.eval(pl.element().filter(pl.element() > -np.inf)),
    )
    return frame.filter(pl.col("last_idx") >= 0).cast(STATE_SCHEMA)  # type: ignore[arg-type]


def summarize_day(
    readings: pl.DataFrame, n: int, spec: StreamQuality, rules: QualityRules, day: date
) -> HourSummaries:
    """The hour summaries of readings (device code, ts, kwh, value) of `day`, one per device
    and hour that received an interval; `cell` is device * 24 + hour."""
    ts = readings["ts"].dt.epoch("us").to_numpy()
    idx = (ts - int(day_start(day).timestamp()) * _US) // spec.interval_us
    if idx.size and (idx.min() < 0 or idx.max() >= spec.per_day):
        raise ValueError("readings outside the day")
    device = readings["device"].to_numpy().astype(np.int64)
    cell = device * HOURS + idx // spec.per_hour
    # Only the cells that have readings get a row of the cell x interval matrix.
    present = np.bincount(cell, minlength=n * HOURS) > 0
    cells = np.flatnonzero(present)
    summaries = summarize_hours(
        (np.cumsum(present) - 1)[cell],
        idx % spec.per_hour,
        ts,
        readings["kwh"].to_numpy(),
        readings["value"].to_numpy(),
        cells.size,
        spec.per_hour,
        spec.is_vehicle,
        rules,
    )
    summaries.cell = cells
    return summaries


def compose(
    arrays: dict[str, NDArray],
    cells: HourSummaries,
    spec: StreamQuality,
    rules: QualityRules,
    first_hour: int,
    end_hour: int,
) -> None:
    """Compose the summaries of hours [first_hour, end_hour) onto the positions in `arrays`
    (cell = device * 24 + hour; at most one per device and hour, none outside the hours)."""
    hour = cells.cell % HOURS
    if hour.size and (hour.min() < first_hour or hour.max() >= end_hour):
        raise ValueError("an hour summary outside the hours composed")
    order = np.argsort(hour, kind="stable")
    bounds = np.searchsorted(hour[order], np.arange(first_hour, end_hour + 1))
    for h in range(first_hour, end_hour):
        at = order[bounds[h - first_hour] : bounds[h - first_hour + 1]]
        if at.size:
            part = cells.take(at)
            compose_hour(arrays, part.cell // HOURS, h, part, spec.per_hour, spec.is_vehicle, rules)
    if cells.cell.size:
        # Each device's hours side by side: the day's largest are the largest of them all.
        n = arrays["top_kwh"].shape[0]
        width = end_hour - first_hour
        hours = np.full((n, width, TOP_K), -np.inf)
        hours[cells.cell // HOURS, hour - first_hour] = cells.top_kwh
        arrays["top_kwh"] = largest(arrays["top_kwh"], hours.reshape(n, width * TOP_K))


def fold(
    state: pl.DataFrame,
    readings: pl.DataFrame,
    devices: pl.Series,
    spec: StreamQuality,
    rules: QualityRules,
    day: date,
    start: int,
    end: int,
) -> pl.DataFrame:
    """The state after folding the block of intervals [start, end) of `day` (whole hours) into
    `state`. `readings` (device code, ts, kwh, value) all lie in the block; `device` indexes
    `devices`, which holds every device of `state`."""
    if start % spec.per_hour or end % spec.per_hour or not 0 <= start <= end <= spec.per_day:
        raise ValueError(f"block [{start}, {end}) is not whole hours of the day")
    cells = summarize_day(readings, devices.len(), spec, rules, day)
    arrays = state_arrays(state, devices)
    # compose() refuses an hour outside the block.
    compose(arrays, cells, spec, rules, start // spec.per_hour, end // spec.per_hour)
    return state_frame(arrays, devices)
