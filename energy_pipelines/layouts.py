"""Gateway layouts: the same simulated readings cut the way real gateways send them.

A gateway owns a slice of the devices and drops one file per stream every few minutes into its
own folder (`<stream>/gw-NNN/`). Devices are dealt to gateways by a hash of their id, so no
gateway's slice is a contiguous id range. Used by the benchmark and the tests of arrival shapes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from energy_pipelines.contract import METER, VEHICLE

_ID_COLUMNS = {METER.name: "meterId", VEHICLE.name: "vehicleId"}


@dataclass(frozen=True)
class Layout:
    """`gateways` folders per stream, each dropping one file per `file_minutes` minutes; with
    `gateways` 0 the input files are kept as they are (whole-fleet files)."""

    name: str
    gateways: int
    file_minutes: int


def gateway_of(device_ids: pl.Expr, gateways: int) -> pl.Expr:
    """The gateway that owns each device: a stable hash of its id."""
    return device_ids.hash(seed=7) % gateways


def cut_into_gateways(source: Path, out_dir: Path, layout: Layout, file_format: str) -> int:
    """Re-cut the meter and vehicle files under `source` (a landing root written by simulate)
    into the layout under `out_dir`; the correlation files are copied. Returns the number of
    reading files written."""
    written = 0
    for stream in (METER, VEHICLE):
        files = sorted((source / stream.name).glob(f"*.{file_format}"))
        frame = pl.concat(
            [pl.read_parquet(f) if file_format == "parquet" else pl.read_csv(f) for f in files]
        )
        written += _write_gateway_files(frame, stream.name, out_dir, layout, file_format)
    correlation = out_dir / "correlation"
    correlation.mkdir(parents=True, exist_ok=True)
    for f in sorted((source / "correlation").iterdir()):
        shutil.copy2(f, correlation / f.name)
    return written


def _write_gateway_files(
    frame: pl.DataFrame, stream: str, out_dir: Path, layout: Layout, file_format: str
) -> int:
    ts = pl.col("timestamp")
    if frame.schema["timestamp"] == pl.String:
        ts = ts.str.to_datetime(time_zone="UTC")
    keyed = frame.with_columns(
        gateway_of(pl.col(_ID_COLUMNS[stream]), layout.gateways).alias("__gateway"),
        ts.dt.truncate(f"{layout.file_minutes}m").alias("__window"),
    )
    written = 0
    for (gateway, window), part in keyed.group_by("__gateway", "__window"):
        folder = out_dir / stream / f"gw-{gateway:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stream}-{window:%Y%m%dT%H%M}.{file_format}"
        rows = part.drop("__gateway", "__window").sort(_ID_COLUMNS[stream], "timestamp")
        if file_format == "parquet":
            rows.write_parquet(path)
        else:
            rows.write_csv(path)
        written += 1
    return written
