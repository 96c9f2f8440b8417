"""Refreshes of the data-quality rows: reads (quality_read.py), the fold (quality.py), writes.

A refresh of a UTC day reads each stream in one snapshot, on a connection of its own so the
server reads both streams on the two cores, composes what it read onto the kept fold and
finishes the day's rows. The rows and the new fold of both streams replace the day's in one
transaction.
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
    compose_day,
    exact_spikes,
    finish,
    fold_rules,
    next_through,
    reporting_slower,
    spike_references,
)
from energy_pipelines.analytics.quality_fold import HOURS, day_start, summarize_day
from energy_pipelines.analytics.quality_hours import HourSummaries
from energy_pipelines.analytics.quality_hours_db import STREAMS
from energy_pipelines.analytics.quality_read import (
    STATE_COLUMNS,
    StreamInputs,
    read_inputs,
    stream_sql,
)
from energy_pipelines.load.database import Connection
from energy_pipelines.settings import QualityRules, Settings


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
    read = summarize_day(inputs.readings, inputs.devices.len(), spec, rules, day)
    cells = HourSummaries.concat([inputs.summaries, read])
    # The newest reading as far as the summaries tell: the start of its interval.
    last = cells.cell % HOURS * spec.per_hour + cells.last_slot
    newest = (
        day_start(day) + timedelta(minutes=int(last.max()) * spec.cadence_minutes)
        if last.size
        else None
    )
    through = next_through(newest, day, inputs.through)
    kept, final = compose_day(
        inputs.state,
        cells,
        inputs.devices,
        spec,
        rules,
        int((through - day_start(day)) / timedelta(hours=1)),
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
    return StreamRefresh(
        spec.stream, kept, through, rows, inputs.readings_read, inputs.folded_again, folded
    )


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
                columns = await copy_columns(
                    conn, stream_sql(spec, rules)["history_of"], start, end, short
                )
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
        *STATE_COLUMNS,
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
    # stream, device_id, reporting step, cadence, received intervals: devices that report
    # less often than their stream's cadence (reporting_slower()).
    slower: list[tuple[str, str, int, int, int]]
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
    slower = [(r.stream, *row) for r in refreshes for row in reporting_slower(r.rows).iter_rows()]
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
        slower=slower,
        seconds=time.perf_counter() - started,
        neighbours_refreshed=done,
    )
