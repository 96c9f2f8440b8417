"""The hour summaries of sql/019 (device_hour_quality): made from the rows a load inserts, in
the load's transaction, and read back by a refresh of daily_device_quality (quality_db.py).

The loader derives them from its inserted rows (transform/derived.py, hour_quality_rows here)
and writes them beside its hourly totals (load/derived.py). The summaries depend on the
stream's cadence and the quality rules; a refresh uses a summary only when they are the
refresh's own and its reading count is the hour's.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from energy_pipelines.analytics.quality_fold import StreamQuality
from energy_pipelines.analytics.quality_hours import SUMMARY_FIELDS, TOP_K, HourSummaries
from energy_pipelines.analytics.quality_hours import summarize_hours as _summarize
from energy_pipelines.contract import HOURLY_TOTALS_TABLES, METER, VEHICLE, Stream
from energy_pipelines.settings import QualityRules

TABLE = "device_hour_quality"
STAGING = "staging_hour_quality"
_HOUR_US = 3_600_000_000
_MINUTE_US = 60_000_000

# Per stream: its contract, the kind of its second value, its hourly totals table (sql/014).
STREAMS: dict[str, tuple[Stream, str, str]] = {
    "meter": (METER, "voltage", HOURLY_TOTALS_TABLES["meter"]),
    "vehicle": (VEHICLE, "soc", HOURLY_TOTALS_TABLES["vehicle"]),
}
# Stored as they are, after (stream, hour, device_id) and the rules; top_kwh last.
STORED = [f for f in SUMMARY_FIELDS if f not in ("cell", "top_kwh")]
_FLOATS = {"first_kwh", "first_value", "last_kwh", "last_value", "estimated_kwh"}
_WIDE = {"readings"}
# The binary COPY kinds of (device hash, hour, *STORED, top_kwh) (binary_copy.py).
COPY_KINDS = "ii" + "".join("f" if c in _FLOATS else "i" if c in _WIDE else "n" for c in STORED)
COPY_KINDS += "t"


def value_column(contract: Stream, kind: str) -> str:
    return next(f.column for f in contract.fields if f.kind == kind)


def rule_values(spec: StreamQuality, rules: QualityRules) -> tuple[int, int, int]:
    """What a summary is made with: cadence, frozen-run length, longest estimated gap."""
    return spec.cadence_minutes, rules.frozen_min_intervals, rules.max_estimated_gap_intervals


def _cell_runs(frame: pl.DataFrame, device: str) -> tuple[np.ndarray, pl.DataFrame]:
    """Where a run of rows of one device and UTC hour starts, and each run's (device_id,
    hour in hours since the epoch)."""
    hour = frame["ts"].dt.epoch("us").to_numpy() // _HOUR_US
    ids = frame[device]
    starts = np.r_[True, (ids[1:] != ids[:-1]).to_numpy() | (hour[1:] != hour[:-1])]
    firsts = np.flatnonzero(starts)
    return starts, pl.DataFrame({"device_id": ids.gather(firsts), "hour": hour[firsts]})


def _cells(frame: pl.DataFrame, device: str) -> tuple[pl.DataFrame, np.ndarray, pl.DataFrame]:
    """The frame, each row's cell (device and UTC hour) as a code counted from 0, and each
    cell's (device_id, hour). A load's rows come in key order, so a cell's rows are one run;
    rows in another order are sorted first."""
    starts, heads = _cell_runs(frame, device)
    if heads.is_duplicated().any():
        frame = frame.sort(device, "ts")
        starts, heads = _cell_runs(frame, device)
    return frame, np.cumsum(starts) - 1, heads


def hour_quality_rows(
    inserted: pl.DataFrame, stream: Stream, spec: StreamQuality, rules: QualityRules
) -> pa.Table:
    """The rows of device_hour_quality for rows a load inserted (the stream's columns), one per
    device and UTC hour they hold."""
    contract, kind, _ = STREAMS[stream.name]
    frame, cell, heads = _cells(inserted, contract.key[0])
    ts = frame["ts"].dt.epoch("us").to_numpy()
    n = heads.height
    summaries = _summarize(
        cell,
        ts // spec.interval_us % spec.per_hour,  # intervals never straddle an hour
        ts,
        frame[value_column(contract, "kwh")].to_numpy().astype(np.float64),
        frame[value_column(contract, kind)].to_numpy().astype(np.float64),
        n,
        spec.per_hour,
        spec.is_vehicle,
        rules,
    )
    columns: dict[str, Any] = {
        "stream": pa.repeat(pa.scalar(stream.name, pa.string()), n),
        "hour": pa.array(heads["hour"].to_numpy() * _HOUR_US).cast(pa.timestamp("us", tz="UTC")),
        "device_id": heads["device_id"].to_arrow().cast(pa.string()),
    }
    for name, value in zip(
        ("cadence_minutes", "frozen_min_intervals", "max_estimated_gap_intervals"),
        rule_values(spec, rules),
        strict=True,
    ):
        columns[name] = pa.array(np.full(n, value, np.int32))
    for name in STORED:
        dtype = np.float64 if name in _FLOATS else np.int64 if name in _WIDE else np.int32
        columns[name] = pa.array(getattr(summaries, name).astype(dtype))
    top = pa.py_buffer(summaries.top_kwh.astype(">f8").tobytes())
    columns["top_kwh"] = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(TOP_K * 8), n, [None, top]
    ).cast(pa.binary())
    return pa.table(columns)


def summaries_from_copy(
    columns: list[np.ndarray], device: np.ndarray, hour: np.ndarray
) -> HourSummaries:
    """Summaries as read by binary COPY in COPY_KINDS order, with each row's device index
    and hour of the day (cell = device * 24 + hour)."""
    values = dict(zip(STORED, columns[2:-1], strict=True))
    return HourSummaries(
        cell=device.astype(np.int64) * 24 + hour,
        **{
            name: values[name].astype(np.float64 if name in _FLOATS else np.int64)
            for name in STORED
        },
        top_kwh=columns[-1],
    )
