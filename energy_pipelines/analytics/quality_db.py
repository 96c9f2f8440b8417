"""Reads and writes of the data-quality rows; analytics/quality.py computes them.

A refresh of a UTC day reads, per stream and in one snapshot, the stored fold of the day
(device_quality_state), the day's devices from the hourly totals (with the readings each had
before the fold's position, to notice late readings), and the history readings the fold has not
seen: from the stored position on for every device, and the whole day of a device that got
late readings before it. Only the day's partitions are read: history is read through COPY,
which takes no parameters, so asyncpg inlines the bounds as literals quoted by the server, and
the planner prunes with them. Readings arrive as binary COPY of fixed-width columns (the device
as a 64-bit hash of its id, mapped back through the day's device list) and are parsed with
numpy (binary_copy.py).

The rows and the new fold of both streams replace the day's in one transaction.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
import polars as pl

from energy_pipelines.analytics.binary_copy import copy_columns, readings_by_device
from energy_pipelines.analytics.daily import lock_day
from energy_pipelines.analytics.quality import (
    StreamQuality,
    exact_spikes,
    finish,
    fold_day,
    fold_rules,
    interval_index,
    next_through,
    spike_references,
)
from energy_pipelines.analytics.quality_fold import HOURS, STATE_SCHEMA, TOP_K, day_start
from energy_pipelines.contract import METER, VEHICLE, Stream
from energy_pipelines.load.database import Connection
from energy_pipelines.load.history import HOURLY_TOTALS_TABLES
from energy_pipelines.settings import QualityRules, Settings

# Per stream: its contract, the kind of its second value, its hourly totals table (sql/014).
STREAMS: dict[str, tuple[Stream, str, str]] = {
    "meter": (METER, "voltage", HOURLY_TOTALS_TABLES["meter"]),
    "vehicle": (VEHICLE, "soc", HOURLY_TOTALS_TABLES["vehicle"]),
}


def _column(contract: Stream, kind: str) -> str:
    return next(f.column for f in contract.fields if f.kind == kind)


# A device's typical maximum comes from this many days before.
REFERENCE_DAYS = 7
_STATE_COLUMNS = [c for c in STATE_SCHEMA if c != "device_id"]


@dataclass
class StreamInputs:
    """What one stream's refresh of a day folds: the kept fold of devices whose readings it
    saw (`state`), the readings it has not seen, the day's devices (`device` codes index them)."""

    spec: StreamQuality
    devices: pl.Series
    hashes: np.ndarray
    state: pl.DataFrame
    folded_again: int
    start: int
    through: datetime
    readings: pl.DataFrame
    reported_before: list[str]
    reported_after: list[str]
    previous: pl.DataFrame


def _sql(spec: StreamQuality) -> dict[str, str]:
    """The stream's statements; names come from the contract, values travel as parameters."""
    contract, value_kind, totals = STREAMS[spec.stream]
    device, kwh, value = contract.key[0], _column(contract, "kwh"), _column(contract, value_kind)
    history = (
        f"SELECT hashtextextended({device}, 0), ts, {kwh}, {value} FROM {contract.table}"
        " WHERE ts >= $1::timestamptz AND ts < $2::timestamptz"
    )
    return {
        "state": f"SELECT device_id, {', '.join(_STATE_COLUMNS)}, through"
        " FROM device_quality_state WHERE stream = $1 AND day = $2 AND rules = $3",
        "devices": f"SELECT {device}, hashtextextended({device}, 0),"
        " coalesce(sum(readings) FILTER (WHERE hour < $3), 0)"
        f" FROM {totals} WHERE hour >= $1 AND hour < $2 GROUP BY 1",
        "present": f"SELECT DISTINCT {device} FROM {totals} WHERE hour >= $1 AND hour < $2",
        "previous": "SELECT device_id, max_interval_kwh FROM daily_device_quality"
        " WHERE stream = $1 AND day >= $2 AND day < $3",
        "history": history,
        "history_of": history + f" AND {device} = ANY($3::text[])",
    }


def _lists(name: str, values: tuple[list[float], ...], width: int) -> pl.Series:
    """A list column through one padded numpy matrix: built list by list, Polars made a Series
    of each (0.5 s for a stream's 5,000 devices)."""
    matrix = np.full((len(values), width), -np.inf)
    for i, items in enumerate(values):
        matrix[i, : len(items)] = items
    lists = pl.Series(name, matrix).arr.to_list()
    return lists.list.eval(pl.element().filter(pl.element() > -np.inf))


def _state(records: list[asyncpg.Record]) -> pl.DataFrame:
    schema = {**STATE_SCHEMA, "through": pl.Datetime("us", "UTC")}
    columns = list(zip(*records, strict=True)) if records else [() for _ in schema]
    return pl.DataFrame(
        [
            _lists(name, values, HOURS if name == "hour_max" else TOP_K)
            if isinstance(dtype, pl.List)
            else pl.Series(name, values, dtype)
            for (name, dtype), values in zip(schema.items(), columns, strict=True)
        ]
    )


async def _devices(
    conn: asyncpg.Connection, sql: dict[str, str], day: date, through: datetime
) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """The day's devices, their id hashes and their readings before `through`."""
    start = day_start(day)
    rows = await conn.fetch(sql["devices"], start, start + timedelta(days=1), through)
    devices = pl.Series("device_id", [r[0] for r in rows], pl.String)
    hashes = np.array([r[1] for r in rows], np.int64)
    if np.unique(hashes).size != hashes.size:
        raise RuntimeError(f"two device ids of {day} share a 64-bit hash")
    return devices, hashes, np.array([r[2] for r in rows], np.int64)


async def _present(conn: asyncpg.Connection, sql: dict[str, str], day: date) -> list[str]:
    start = day_start(day)
    return [r[0] for r in await conn.fetch(sql["present"], start, start + timedelta(days=1))]


async def _previous(
    conn: asyncpg.Connection, sql: dict[str, str], spec: StreamQuality, day: date
) -> pl.DataFrame:
    since = day - timedelta(days=REFERENCE_DAYS)
    rows = await conn.fetch(sql["previous"], spec.stream, since, day)
    schema = {"device_id": pl.String, "max_interval_kwh": pl.Float64}
    return pl.DataFrame([tuple(r) for r in rows], schema=schema, orient="row")


async def read_inputs(
    conn: asyncpg.Connection, spec: StreamQuality, rules: QualityRules, day: date
) -> StreamInputs:
    """One stream's inputs for refreshing `day`, in the caller's snapshot."""
    sql = _sql(spec)
    start, end = day_start(day), day_start(day) + timedelta(days=1)
    stored = _state(await conn.fetch(sql["state"], spec.stream, day, fold_rules(spec, rules)))
    through = stored["through"].max() if stored.height else start
    devices, hashes, before = await _devices(conn, sql, day, through)  # type: ignore[arg-type]
    # A device's fold is kept when it saw every reading the hourly totals count before it.
    seen = pl.DataFrame({"device_id": devices, "seen": before})
    state = stored.join(seen, on="device_id").filter(
        (pl.col("through") == through) & (pl.col("readings") == pl.col("seen"))
    )
    if state.height == 0:
        through = start
    # Devices whose readings before `through` the kept fold does not hold: read from the start.
    again = seen.filter(
        ~pl.col("device_id").is_in(state["device_id"].implode()) & (pl.col("seen") > 0)
    )["device_id"].to_list()
    order = np.argsort(hashes)
    if through > start:
        # The day's ids let a day kept as one table (live files) be read through its key
        # instead of scanned whole for the last hour: 43 ms against 0.18 s on 3.6 M readings.
        ids = devices.to_list()
        parts = [await copy_columns(conn, sql["history_of"], through, end, ids)]
    else:
        parts = [await copy_columns(conn, sql["history"], through, end)]
    if again and through > start:
        parts.append(await copy_columns(conn, sql["history_of"], start, through, again))
    columns = [np.concatenate(c) for c in zip(*parts, strict=True)]
    return StreamInputs(
        spec=spec,
        devices=devices,
        hashes=hashes,
        state=state.drop("through", "seen"),
        folded_again=len(again),
        start=0 if again else interval_index(spec, day, through),
        through=through,  # type: ignore[arg-type]
        readings=readings_by_device(columns, hashes, order),
        reported_before=await _present(conn, sql, day - timedelta(days=1)),
        reported_after=await _present(conn, sql, day + timedelta(days=1)),
        previous=await _previous(conn, sql, spec, day),
    )


@dataclass(frozen=True)
class StreamRefresh:
    """One stream's new fold of the day (`kept`, at `through`) and the day's rows."""

    stream: str
    kept: pl.DataFrame
    through: datetime
    rows: pl.DataFrame
    readings_read: int
    devices_folded_again: int
    rules: str


def compute(inputs: StreamInputs, day: date, rules: QualityRules) -> StreamRefresh:
    """The pure part of a refresh: fold what was read into the kept fold, then finish."""
    spec = inputs.spec
    read = inputs.readings
    newest = read["ts"].max() if read.height else None
    through = next_through(newest, day, inputs.through)  # type: ignore[arg-type]
    kept, final = fold_day(
        inputs.state,
        read,
        inputs.devices,
        spec,
        rules,
        day,
        inputs.start,
        interval_index(spec, day, through),
    )
    rows = finish(
        final,
        spec,
        rules,
        day,
        reported_before=inputs.reported_before,
        reported_after=inputs.reported_after,
        references=spike_references(inputs.previous),
    )
    folded = fold_rules(spec, rules)
    return StreamRefresh(spec.stream, kept, through, rows, read.height, inputs.folded_again, folded)


async def _refresh_stream(
    url: str, spec: StreamQuality, day: date, rules: QualityRules
) -> StreamRefresh:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            # JIT compiles the scan's expressions for longer than these reads take.
            await conn.execute("SET LOCAL jit = off")
            inputs = await read_inputs(conn, spec, rules, day)
            result = await asyncio.to_thread(compute, inputs, day, rules)
            short = result.rows.filter("spike_count_short")["device_id"].to_list()
            whole_days = inputs.readings.head(0)
            if short:
                # Spike counts that may be short are counted again from the devices' whole day.
                start = day_start(day)
                end = start + timedelta(days=1)
                columns = await copy_columns(conn, _sql(spec)["history_of"], start, end, short)
                whole_days = readings_by_device(columns, inputs.hashes, np.argsort(inputs.hashes))
            rows = exact_spikes(result.rows, whole_days, inputs.devices, spec, rules)
    finally:
        await conn.close()
    return replace(result, rows=rows)


async def _refresh_streams(url: str, day: date, settings: Settings) -> list[StreamRefresh]:
    evidence = settings.evidence
    specs = [
        StreamQuality("meter", evidence.meter_cadence_seconds // 60),
        StreamQuality("vehicle", evidence.vehicle_cadence_seconds // 60),
    ]
    # Each stream on its own connection: the server reads both streams on the two cores.
    return list(
        await asyncio.gather(*(_refresh_stream(url, s, day, settings.quality) for s in specs))
    )


def _arrow_state(refresh: StreamRefresh, day: date) -> Any:
    return refresh.kept.select(
        pl.lit(refresh.stream).alias("stream"),
        pl.lit(day).alias("day"),
        "device_id",
        pl.lit(refresh.through, pl.Datetime("us", "UTC")).alias("through"),
        *_STATE_COLUMNS,
        pl.lit(refresh.rules).alias("rules"),
    ).to_arrow()


def write_quality_day(conn: Connection, day: date, refreshes: list[StreamRefresh]) -> None:
    """Replace the day's rows and folds of the refreshed streams, in the caller's transaction
    (committed by the caller, so a day is replaced atomically)."""
    computed_at = datetime.now(UTC)
    with conn.cursor() as cur:
        for refresh in refreshes:
            for table in ("daily_device_quality", "device_quality_state"):
                cur.execute(
                    f"DELETE FROM {table} WHERE stream = $1 AND day = $2", (refresh.stream, day)
                )
            if refresh.kept.height:
                cur.adbc_ingest("device_quality_state", _arrow_state(refresh, day), mode="append")
            if refresh.rows.height:
                rows = refresh.rows.with_columns(
                    pl.lit(computed_at, pl.Datetime("us", "UTC")).alias("computed_at")
                )
                cur.adbc_ingest("daily_device_quality", rows.to_arrow(), mode="append")


@dataclass(frozen=True)
class QualityDayResult:
    day: date
    rows: dict[str, int]
    readings_read: int
    devices_folded_again: int
    # stream, device_id, frozen_runs, frozen_voltage_runs: devices whose readings froze.
    frozen: list[tuple[str, str, int, int | None]]
    seconds: float
    neighbours_refreshed: list[date]


def _stale_neighbours(conn: Connection, day: date) -> list[date]:
    """Days beside `day` whose expected span no longer follows the rule: a device expected to
    stop before the day before ended (or to start after the day after began) that reported on
    `day` after all. Computing `day` then refreshes them too."""
    stale = []
    start = day_start(day)
    with conn.cursor() as cur:
        for stream, (contract, _kind, totals) in STREAMS.items():
            device = contract.key[0]
            for other, edge in (
                (day - timedelta(days=1), "expected_to < $3"),
                (day + timedelta(days=1), "expected_from > $3"),
            ):
                bound = start if other < day else start + timedelta(days=1)
                cur.execute(
                    "SELECT EXISTS (SELECT 1 FROM daily_device_quality q"
                    f" WHERE q.stream = $1 AND q.day = $2 AND q.{edge} AND EXISTS ("
                    f"  SELECT 1 FROM {totals} t WHERE t.{device} = q.device_id"
                    "    AND t.hour >= $4 AND t.hour < $5))",
                    (stream, other, bound, start, start + timedelta(days=1)),
                )
                if cur.fetchone()[0] and other not in stale:
                    stale.append(other)
    conn.rollback()
    return sorted(stale)


def refresh_quality_day(
    conn: Connection, url: str, day: date, settings: Settings, *, neighbours: bool = True
) -> QualityDayResult:
    """Recompute `day` of daily_device_quality (and a day beside it whose expected span `day`
    changes, when `neighbours`). `url` names the same database as `conn`."""
    started = time.perf_counter()
    with conn.cursor() as cur:
        # Two refreshes of one day take turns: each folds on the fold the other stored.
        lock_day(cur, "daily_device_quality", day)
        refreshes = asyncio.run(_refresh_streams(url, day, settings))
        write_quality_day(conn, day, refreshes)
    conn.commit()
    frozen = [
        (r.stream, *row)
        for r in refreshes
        for row in r.rows.filter((pl.col("frozen_runs") > 0) | (pl.col("frozen_voltage_runs") > 0))
        .select("device_id", "frozen_runs", "frozen_voltage_runs")
        .iter_rows()
    ]
    done = []
    if neighbours:
        for other in _stale_neighbours(conn, day):
            refresh_quality_day(conn, url, other, settings, neighbours=False)
            done.append(other)
    return QualityDayResult(
        day=day,
        rows={r.stream: r.rows.height for r in refreshes},
        readings_read=sum(r.readings_read for r in refreshes),
        devices_folded_again=sum(r.devices_folded_again for r in refreshes),
        frozen=frozen,
        seconds=time.perf_counter() - started,
        neighbours_refreshed=done,
    )
