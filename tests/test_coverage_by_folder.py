"""Coverage of a day by landing folder: a gateway gone quiet is named once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from energy_pipelines.analytics.gateway_coverage import (
    folder_hours,
    quiet_gateways,
    read_folder_hours,
    render_coverage_png,
)
from energy_pipelines.contract import METER
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.settings import Settings
from tests.helpers import METER_HEADER, write_csv

DAY = date(2026, 2, 11)


def _file(folder: str, hour: int, rows: int, hours: int = 1) -> dict:
    start = datetime(2026, 2, 11, hour, tzinfo=UTC)
    return {
        "stream": "meter",
        "folder": folder,
        "min_ts": start,
        "max_ts": start + timedelta(hours=hours) - timedelta(minutes=1),
        "rows_loaded": rows,
    }


def test_a_gateway_quiet_for_hours_is_reported_once_with_its_stretch() -> None:
    files = [_file("meter/gw-a", h, 60) for h in range(24)]
    files += [_file("meter/gw-b", h, 60) for h in list(range(0, 9)) + list(range(13, 24))]
    files += [_file("meter/gw-c", h, 60) for h in range(24) if h != 5]
    per_hour = folder_hours(pl.DataFrame(files), DAY)
    quiet = quiet_gateways(per_hour)
    assert [
        (q.folder, q.hours_quiet, q.longest_quiet_hours, q.first_quiet_hour) for q in quiet
    ] == [
        ("meter/gw-b", 4, 4, 9),
        ("meter/gw-c", 1, 1, 5),
    ]
    assert quiet_gateways(per_hour, min_quiet_hours=2)[0].folder == "meter/gw-b"


def test_a_file_spanning_hours_counts_in_each_and_before_midnight_is_clipped() -> None:
    files = [_file("meter", 0, 240, hours=4), _file("meter/gw-x", 3, 60)]
    files[0]["min_ts"] -= timedelta(hours=2)  # starts the day before
    per_hour = folder_hours(pl.DataFrame(files), DAY)
    # 22:00 the day before to 03:59: the day's hours 0 to 3, 40 readings each.
    whole = per_hour.filter(pl.col("folder") == "meter")
    assert whole["hour"].to_list() == [0, 1, 2, 3]
    assert whole["readings"].to_list() == [40.0] * 4
    assert [(q.folder, q.hours_quiet) for q in quiet_gateways(per_hour)] == [("meter/gw-x", 3)]
    assert render_coverage_png(per_hour, DAY).startswith(b"\x89PNG")


def test_folder_hours_come_from_the_manifest(db, settings: Settings, landing: Path) -> None:
    write_csv(landing, "meter", "gw-1/a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:00:00Z"])
    write_csv(landing, "meter", "gw-2/a.csv", METER_HEADER, ["m-2,0.5,230,2026-02-11T11:00:00Z"])
    ingest_stream(db, METER, settings, run_id="r")
    per_hour = read_folder_hours(db, DAY)
    assert per_hour.select("folder", "hour").rows() == [("meter/gw-1", 10), ("meter/gw-2", 11)]
    assert [q.folder for q in quiet_gateways(per_hour)] == ["meter/gw-1", "meter/gw-2"]
