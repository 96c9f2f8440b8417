"""Write realistic gateway files into a landing root: smart meters, EVs and their pairing.

The model, per vehicle: a daily drive before a charging session; while charging, the paired
meter draws the charger's power and the vehicle receives that energy times its efficiency.
Every value is a pure function of (seed, device, timestamp) via a counter-based hash, so a
simulation is deterministic, independent of how it is split into files, and two runs with the
same seed and fleet over overlapping periods agree on the readings they share. SoC is flat at
the owner's charge limit, falls during the daily drive and rises back while charging.

Files are generated in chunks of at most `_BATCH_ROWS` rows and written under an ignored
temporary name, then renamed, so the ingest job never reads a half-written file.
"""

from __future__ import annotations

import math
import os
import shutil
import time as wall_clock
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import IO, Literal

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from energy_pipelines.contract import (
    ARROW_TYPES,
    CORRELATION,
    FAULT_THRESHOLD,
    METER,
    VEHICLE,
    Stream,
)
from energy_pipelines.landing.discover import is_ignored_name

FileFormat = Literal["parquet", "csv"]

MINUTES_PER_DAY = 1440
# Vehicles drawn below it are faulty: the daily tables should flag them fault_suspected.
FAULTY_EFFICIENCY = FAULT_THRESHOLD
# Rows generated at once: bounds memory (about 260 MB peak RSS for 14.4M rows in total).
_BATCH_ROWS = 1 << 18
_MASK64 = (1 << 64) - 1
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15
_U64 = pl.UInt64

# Decimal places a gateway reports: 0.001 Wh, 0.1 V, 0.01 % SoC, 0.1 degree.
_DECIMALS: dict[str, int] = {"kwh": 6, "voltage": 1, "soc": 2, "battery_temp": 1}


@dataclass(frozen=True)
class SimulationSummary:
    meter_rows: int
    vehicle_rows: int
    correlation_rows: int
    files: list[Path]
    faulty_vehicles: list[str]  # vehicles whose efficiency was drawn below FAULTY_EFFICIENCY


def default_start(now: datetime | None = None) -> datetime:
    """00:00 UTC of the previous UTC day: a full simulated day that lies wholly in the past."""
    now = datetime.now(UTC) if now is None else _as_utc(now)
    return datetime.combine(now.date() - timedelta(days=1), time(0), tzinfo=UTC)


# --- counter-based random numbers -------------------------------------------------------------
# A hash of (seed, tag, keys) instead of a sequential generator: any row can be computed
# without generating the rows before it, which is what makes chunking free.


def _mix_int(x: int) -> int:
    """splitmix64 finalizer on a Python int."""
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _mix(z: pl.Series) -> pl.Series:
    """splitmix64 finalizer on a UInt64 series; Polars integer arithmetic wraps like C."""
    z = z + 0x9E3779B97F4A7C15
    z = (z ^ (z // (1 << 30))) * 0xBF58476D1CE4E5B9
    z = (z ^ (z // (1 << 27))) * 0x94D049BB133111EB
    return z ^ (z // (1 << 31))


def _hash(seed: int, tag: str, device: pl.Series, when: pl.Series | None) -> pl.Series:
    """64 random bits per (device, when) row: one splitmix64 step per key."""
    # crc32 rather than hash(): str hashes are salted per process.
    base = _mix_int(_mix_int(seed & _MASK64) ^ zlib.crc32(tag.encode()))
    h = _mix(device.cast(_U64, wrap_numerical=True) * _GOLDEN_GAMMA + base)
    if when is not None:
        h = _mix(when.cast(_U64, wrap_numerical=True) * _GOLDEN_GAMMA + h)
    return h


def _uniform(seed: int, tag: str, device: pl.Series, when: pl.Series | None = None) -> pl.Series:
    """Uniform floats in the open interval (0, 1), one per row."""
    h = _hash(seed, tag, device, when)
    return ((h // (1 << 11)).cast(pl.Float64) + 0.5) * 2.0**-53


def _normal(seed: int, tag: str, device: pl.Series, when: pl.Series | None = None) -> pl.Series:
    """Standard normal floats (Box-Muller on the two 32-bit halves of one hash)."""
    h = _hash(seed, tag, device, when)
    u1 = ((h // (1 << 32)).cast(pl.Float64) + 0.5) * 2.0**-32
    u2 = ((h % (1 << 32)).cast(pl.Float64) + 0.5) * 2.0**-32
    return (-2.0 * u1.log()).sqrt() * (2.0 * math.pi * u2).cos()


# --- the model --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Period:
    first_minute: int  # minutes since the Unix epoch of the first timestamp
    minutes: int

    @property
    def first_day(self) -> int:
        return self.first_minute // MINUTES_PER_DAY

    @property
    def days(self) -> int:
        last = self.first_minute + self.minutes - 1
        return last // MINUTES_PER_DAY - self.first_day + 1


def _vehicle_params(seed: int, vehicles: int) -> pl.DataFrame:
    """One row per vehicle: what stays the same every day."""
    v = pl.int_range(vehicles, dtype=pl.Int64, eager=True)
    draws = pl.DataFrame(
        {tag: _uniform(seed, tag, v) for tag in ("faulty", "efficiency", "habit", "start")}
    )
    return draws.select(
        # About 5% of vehicles have a faulty charger or battery: efficiency 0.80 to 0.8499,
        # below FAULTY_EFFICIENCY; the others from FAULTY_EFFICIENCY to 0.12 above it.
        efficiency=pl.when(pl.col("faulty") < 0.05)
        .then(0.80 + 0.0499 * pl.col("efficiency"))
        .otherwise(FAULTY_EFFICIENCY + 0.12 * pl.col("efficiency")),
        power_kw=7.0 + 4.0 * _uniform(seed, "power", v),
        capacity_kwh=40.0 + 60.0 * _uniform(seed, "capacity", v),
        # Owners set a charge limit; every session ends there, so each day starts from it.
        target_soc=80.0 + 10.0 * (3.0 * _uniform(seed, "target", v)).floor(),
        # Most charge at home in the evening, some at work in the morning.
        usual_start=pl.when(pl.col("habit") < 0.75)
        .then(16 * 60 + 6 * 60 * pl.col("start"))
        .otherwise(7 * 60 + 4 * 60 * pl.col("start")),
        temp_base=17.0 + 8.0 * _uniform(seed, "temp", v),
        charge_heat=4.0 + 8.0 * _uniform(seed, "heat", v),
    )


def _vehicle_days(seed: int, params: pl.DataFrame, period: _Period) -> pl.DataFrame:
    """One row per (vehicle, day), vehicle-major: the day's drive and charging session."""
    vehicles, days = params.height, period.days
    i = pl.int_range(vehicles * days, dtype=pl.Int64, eager=True)
    v = i // days
    day = period.first_day + i % days
    frame = params.select(pl.all().gather(v)).with_columns(
        drives=_uniform(seed, "drives", v, day) < 0.85,
        drop_u=_uniform(seed, "drop", v, day),
        jitter=(_uniform(seed, "jitter", v, day) * 90.0 - 45.0).round(0),
        drive_minutes=(20.0 + 70.0 * _uniform(seed, "drive", v, day)).round(0),
    )
    return (
        frame.with_columns(
            session_start=pl.col("usual_start").round(0) + pl.col("jitter"),
            dc_per_minute=pl.col("power_kw") * pl.col("efficiency") / 60.0,
        )
        .with_columns(
            # Cap the drop so that the session finishes before midnight: no session spans days.
            drop=pl.when(pl.col("drives"))
            .then(
                pl.min_horizontal(
                    10.0 + 30.0 * pl.col("drop_u"),
                    (MINUTES_PER_DAY - 1 - pl.col("session_start"))
                    * pl.col("dc_per_minute")
                    / pl.col("capacity_kwh")
                    * 100.0,
                )
            )
            .otherwise(0.0),
        )
        .with_columns(
            need_kwh=pl.col("drop") / 100.0 * pl.col("capacity_kwh"),
        )
        .with_columns(
            session_end=pl.col("session_start")
            + (pl.col("need_kwh") / pl.col("dc_per_minute")).ceil(),
        )
    )


def _vehicle_rows(
    days: pl.DataFrame, period: _Period, vehicle_idx: pl.Series, t0: int, t1: int
) -> pl.DataFrame:
    """Readings of the given vehicles for period minutes t0..t1-1, sorted by (vehicle, time).

    Energy is for the minute ending at the timestamp: E(u) is the energy delivered in the
    session by minute-of-day u, and a reading carries E(u) - E(u - 1).
    """
    span = t1 - t0
    i = pl.int_range(len(vehicle_idx) * span, dtype=pl.Int64, eager=True)
    v = vehicle_idx.cast(pl.Int64).gather(i // span)
    minute = period.first_minute + t0 + i % span
    day_row = v * period.days + (minute // MINUTES_PER_DAY - period.first_day)
    frame = days.select(pl.all().gather(day_row)).with_columns(
        v=v, minute=minute, u=(minute % MINUTES_PER_DAY).cast(pl.Float64)
    )
    k = pl.col("u") - pl.col("session_start")

    def energy(minutes_in: pl.Expr) -> pl.Expr:
        return (minutes_in * pl.col("dc_per_minute")).clip(0.0, pl.col("need_kwh"))

    return frame.with_columns(
        energy_now=energy(k),
        dc=energy(k) - energy(k - 1.0),
    ).with_columns(
        ac_charge=pl.col("dc") / pl.col("efficiency"),
    )


def _vehicle_readings(
    seed: int, days: pl.DataFrame, period: _Period, vehicle_idx: pl.Series, t0: int, t1: int
) -> pl.DataFrame:
    frame = _vehicle_rows(days, period, vehicle_idx, t0, t1)
    u, start, end = pl.col("u"), pl.col("session_start"), pl.col("session_end")
    drive_minutes = pl.col("drive_minutes")
    drive_begin = start - drive_minutes
    # The pack warms over ~20 minutes of driving and ~45 minutes of charging, and cools
    # down afterwards: ramps instead of steps, as a real pack has thermal mass.
    drive_warmth = (
        pl.when((pl.col("drop") <= 0) | (u <= drive_begin))
        .then(0.0)
        .when(u <= start)
        .then(((u - drive_begin) / 20.0).clip(0.0, 1.0))
        .otherwise((drive_minutes / 20.0).clip(0.0, 1.0) * (1.0 - (u - start) / 30.0).clip(0.0))
    )
    charge_warmth = (
        pl.when((u > start) & (u <= end))
        .then(((u - start) / 45.0).clip(0.0, 1.0))
        .when(u > end)
        .then(((end - start) / 45.0).clip(0.0, 1.0) * (1.0 - (u - end) / 60.0).clip(0.0, 1.0))
        .otherwise(0.0)
    )
    noise = _normal(seed, "battery-temp", frame["v"], frame["minute"])
    return frame.select(
        v=pl.col("v"),
        minute=pl.col("minute"),
        # Flat at the charge limit, falling while driving, rising while charging.
        soc=(
            pl.col("target_soc")
            - pl.col("drop") * ((u - drive_begin) / drive_minutes).clip(0.0, 1.0)
            + pl.col("energy_now") / pl.col("capacity_kwh") * 100.0
        ).clip(0.0, 100.0),
        kwh=pl.col("dc"),
        battery_temp=(
            pl.col("temp_base")
            + 3.0 * ((u - 9 * 60) * (2.0 * math.pi / MINUTES_PER_DAY)).sin()
            + pl.col("charge_heat") * charge_warmth
            + 2.5 * drive_warmth
            + 0.2 * pl.lit(noise)
        ).clip(15.0, 45.0),
    )


def _meter_readings(
    seed: int,
    days: pl.DataFrame,
    period: _Period,
    meters: int,
    vehicles: int,
    first: int,
    last: int,
    t0: int,
    t1: int,
) -> pl.DataFrame:
    """Readings of meters first..last-1 for period minutes t0..t1-1, sorted by (meter, time)."""
    span = t1 - t0
    i = pl.int_range((last - first) * span, dtype=pl.Int64, eager=True)
    m = first + i // span
    minute = period.first_minute + t0 + i % span
    # Vehicle j charges through meter j mod meters. Vehicles lo..hi-1 with lo = first + k*meters
    # sit behind meters first..first+(hi-lo)-1, and their rows come in the same (device, minute)
    # order, so each block lines up with the start of the meter rows: no join needed.
    charger = pl.zeros(len(i), pl.Float64, eager=True)
    for lo in range(first, vehicles, meters):
        hi = min(lo + last - first, vehicles)
        vehicle_idx = pl.int_range(lo, hi, dtype=pl.Int64, eager=True)
        ac = _vehicle_rows(days, period, vehicle_idx, t0, t1)["ac_charge"]
        charger = charger + ac.extend_constant(0.0, len(i) - len(ac))
    charging = charger > 0
    # A charging car pulls the local voltage down a little.
    volts = 230.0 + 2.0 * _normal(seed, "voltage", m, minute) - 1.5 * charging.cast(pl.Float64)
    return pl.DataFrame(
        {
            "m": m,
            "minute": minute,
            # The paired meter is the charger's own sub-meter: it reads what the chargers
            # behind it draw, so a day's DC / AC is the vehicle's efficiency.
            "kwh": charger,
            "voltage": volts.clip(200.0, 250.0),
        }
    )


# --- files ------------------------------------------------------------------------------------


def _device_ids(kind: str, count: int) -> pl.Series:
    """All ids of one kind, zero-padded so that text order is numeric order; gathered per row."""
    width = max(5, len(str(count)))
    return pl.Series(kind, [f"{kind}-{n:0{width}d}" for n in range(1, count + 1)], pl.String)


def _timestamps(minute: pl.Expr) -> pl.Expr:
    return (minute * 60_000_000).cast(pl.Datetime("us", "UTC"))


def _to_contract(
    frame: pl.DataFrame, stream: Stream, values: dict[str, pl.Expr | pl.Series]
) -> pl.DataFrame:
    """Model columns under the file names of the contract, in contract order, at the
    resolution a gateway reports."""
    columns: list[pl.Expr] = []
    for f in stream.fields:
        raw = values[f.column]
        value = pl.lit(raw) if isinstance(raw, pl.Series) else raw
        if f.kind in _DECIMALS:
            value = value.round(_DECIMALS[f.kind])
        columns.append(value.alias(f.file_name))
    return frame.select(columns)


def _arrow_schema(stream: Stream) -> pa.Schema:
    return pa.schema([(f.file_name, ARROW_TYPES[f.kind]) for f in stream.fields])


def _write_atomically(
    path: Path, stream: Stream, file_format: FileFormat, batches: Iterator[pl.DataFrame]
) -> None:
    """Write batches to `.name.tmp` (ignored by discovery), then rename into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if file_format == "parquet":
            schema = _arrow_schema(stream)
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                for batch in batches:
                    writer.write_table(batch.to_arrow().cast(schema))
        else:
            with tmp.open("wb") as handle:
                _write_csv(handle, stream, batches)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fixed_decimals(value: pl.Expr, decimals: int) -> pl.Expr:
    """Non-negative number as text with exactly `decimals` places: 0.000042, not 4.2e-5."""
    scale = 10**decimals
    scaled = (value * scale).round(0).cast(pl.Int64)
    fraction = (scaled % scale).cast(pl.String).str.zfill(decimals)
    return pl.format("{}.{}", scaled // scale, fraction)


def _write_csv(handle: IO[bytes], stream: Stream, batches: Iterator[pl.DataFrame]) -> None:
    as_text = [
        _fixed_decimals(pl.col(f.file_name), _DECIMALS[f.kind])
        if f.kind in _DECIMALS
        else pl.col(f.file_name).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        if f.kind == "timestamp"
        else pl.col(f.file_name)
        for f in stream.fields
    ]
    for n, batch in enumerate(batches):
        batch.select(as_text).write_csv(handle, include_header=n == 0)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_arguments(
    meters: int,
    vehicles: int,
    minutes: int,
    file_format: str,
    files_per_stream: int,
    prefix: str,
    start: datetime,
) -> None:
    if meters < 1 or vehicles < 1:
        raise ValueError("meters and vehicles must each be at least 1")
    if minutes < 1:
        raise ValueError("minutes must be at least 1")
    if not 1 <= files_per_stream <= minutes:
        raise ValueError(f"files_per_stream must be between 1 and minutes ({minutes})")
    if file_format not in ("parquet", "csv"):
        raise ValueError(f"file_format must be parquet or csv, not {file_format!r}")
    if not prefix or is_ignored_name(prefix) or "/" in prefix or "\\" in prefix:
        raise ValueError(
            f"prefix {prefix!r} must be a plain name not starting with '.' or '_' "
            "(the ingest job skips such files)"
        )
    if start.second or start.microsecond:
        raise ValueError("start must be on a whole minute: gateways report once a minute")


def simulate(
    out_dir: Path,
    meters: int,
    vehicles: int,
    start: datetime,
    minutes: int,
    file_format: FileFormat = "parquet",
    files_per_stream: int = 1,
    seed: int = 0,
    prefix: str = "sim",
) -> SimulationSummary:
    """Write one reading per device per minute from `start` (naive means UTC) into `out_dir`.

    Meter and vehicle readings go to `files_per_stream` files each, file k holding a contiguous
    slice of minutes for every device; the pairing goes to one correlation file, written first.
    Existing files with the same names are replaced.
    """
    start = _as_utc(start)
    _check_arguments(meters, vehicles, minutes, file_format, files_per_stream, prefix, start)
    out_dir = Path(out_dir)
    period = _Period(int(start.timestamp()) // 60, minutes)
    params = _vehicle_params(seed, vehicles)
    days = _vehicle_days(seed, params, period)
    ext = file_format
    stamp = f"{start:%Y%m%dT%H%M}"
    for stream in (CORRELATION, METER, VEHICLE):
        (out_dir / stream.name).mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    meter_ids, vehicle_ids = _device_ids("meter", meters), _device_ids("vehicle", vehicles)

    def write(path: Path, stream: Stream, batches: Iterator[pl.DataFrame]) -> None:
        _write_atomically(path, stream, file_format, batches)
        files.append(path)

    def correlation() -> Iterator[pl.DataFrame]:
        v = pl.int_range(vehicles, dtype=pl.Int64, eager=True)
        frame = pl.DataFrame({"v": v})
        yield _to_contract(
            frame,
            CORRELATION,
            {
                "meter_id": meter_ids.gather(frame["v"] % meters),
                "vehicle_id": vehicle_ids,
            },
        )

    def device_batches(
        count: int, span: int, make: Callable[[int, int], pl.DataFrame]
    ) -> Iterator[pl.DataFrame]:
        step = max(1, _BATCH_ROWS // span)
        for first in range(0, count, step):
            yield make(first, min(first + step, count))

    def meter_file(t0: int, t1: int) -> Iterator[pl.DataFrame]:
        def make(first: int, last: int) -> pl.DataFrame:
            frame = _meter_readings(seed, days, period, meters, vehicles, first, last, t0, t1)
            return _to_contract(
                frame,
                METER,
                {
                    "meter_id": meter_ids.gather(frame["m"]),
                    "kwh_consumed_ac": pl.col("kwh"),
                    "voltage": pl.col("voltage"),
                    "ts": _timestamps(pl.col("minute")),
                },
            )

        return device_batches(meters, t1 - t0, make)

    def vehicle_file(t0: int, t1: int) -> Iterator[pl.DataFrame]:
        def make(first: int, last: int) -> pl.DataFrame:
            idx = pl.int_range(first, last, dtype=pl.Int64, eager=True)
            frame = _vehicle_readings(seed, days, period, idx, t0, t1)
            return _to_contract(
                frame,
                VEHICLE,
                {
                    "vehicle_id": vehicle_ids.gather(frame["v"]),
                    "soc": pl.col("soc"),
                    "kwh_delivered_dc": pl.col("kwh"),
                    "battery_temp": pl.col("battery_temp"),
                    "ts": _timestamps(pl.col("minute")),
                },
            )

        return device_batches(vehicles, t1 - t0, make)

    # The pairing first: analytics of readings need it, and the ingest job loads it first too.
    write(
        out_dir / "correlation" / f"{prefix}-correlation-{stamp}.{ext}", CORRELATION, correlation()
    )
    k_total = files_per_stream
    for k in range(k_total):
        t0, t1 = k * minutes // k_total, (k + 1) * minutes // k_total
        part = f"{stamp}-{k + 1:03d}of{k_total:03d}.{ext}"
        write(out_dir / "meter" / f"{prefix}-meter-{part}", METER, meter_file(t0, t1))
        write(out_dir / "vehicle" / f"{prefix}-vehicle-{part}", VEHICLE, vehicle_file(t0, t1))

    faulty = vehicle_ids.filter(params["efficiency"] < FAULTY_EFFICIENCY).to_list()
    return SimulationSummary(
        meter_rows=meters * minutes,
        vehicle_rows=vehicles * minutes,
        correlation_rows=vehicles,
        files=files,
        faulty_vehicles=faulty,
    )


def follow(
    out_dir: Path,
    meters: int,
    vehicles: int,
    interval_seconds: float,
    seed: int = 0,
    file_format: FileFormat = "parquet",
    ticks: int | None = None,
    late_every: int = 5,
    duplicate_every: int = 7,
    clock: Callable[[], float] = wall_clock.time,
    sleep: Callable[[float], None] = wall_clock.sleep,
) -> Iterator[list[Path]]:
    """Keep dropping files like live gateways: every tick, the readings of the whole minutes
    that passed since the last tick (none when no minute passed), one file per stream (write,
    then rename) under `<stream>/gw-live/`. Now and then a vehicle file is held back and lands
    two ticks late, and a meter file is sent a second time under another name. Yields the paths
    landed at each tick."""
    out_dir = Path(out_dir)
    staging = out_dir / ".simulate-follow"  # a hidden folder: the pipeline never reads it
    held_back: list[tuple[int, Path]] = []
    last_meter: Path | None = None
    previous_end = (int(clock()) // 60 - 1) * 60
    tick = 0
    while ticks is None or tick < ticks:
        # Only whole minutes that have passed: no reading is ever stamped after the wall clock.
        end = (int(clock()) // 60) * 60
        if end <= previous_end:
            yield []
            tick += 1
            if ticks is None or tick < ticks:
                sleep(interval_seconds)
            continue
        start = datetime.fromtimestamp(previous_end, UTC)
        shutil.rmtree(staging, ignore_errors=True)
        summary = simulate(
            staging,
            meters,
            vehicles,
            start=start,
            minutes=(end - previous_end) // 60,
            file_format=file_format,
            seed=seed,
            prefix=f"live-{tick:06d}",
        )
        landed: list[Path] = []
        for path in summary.files:
            stream = path.parent.name
            if stream == "correlation" and tick > 0:
                continue  # the pairing does not change
            if stream == "vehicle" and late_every and tick % late_every == late_every - 1:
                kept = staging.parent / f".held-{path.name}"
                path.rename(kept)
                held_back.append((tick + 2, kept))
                continue
            landed.append(_land(path, out_dir / stream / "gw-live" / path.name))
            if stream == "meter":
                last_meter = landed[-1]
        if duplicate_every and tick % duplicate_every == duplicate_every - 1 and last_meter:
            resent = last_meter.with_name(last_meter.stem + "-resent" + last_meter.suffix)
            if last_meter.exists():
                copy = staging.parent / f".copy-{resent.name}"
                shutil.copyfile(last_meter, copy)
                landed.append(_land(copy, resent))
        for due, kept in [h for h in held_back if h[0] <= tick]:
            held_back.remove((due, kept))
            name = kept.name.removeprefix(".held-")
            landed.append(_land(kept, out_dir / "vehicle" / "gw-live" / name))
        shutil.rmtree(staging, ignore_errors=True)
        yield landed
        previous_end = end
        tick += 1
        if ticks is None or tick < ticks:
            sleep(interval_seconds)


def _land(source: Path, destination: Path) -> Path:
    destination.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, destination)  # atomic: the pipeline sees whole files only
    return destination
