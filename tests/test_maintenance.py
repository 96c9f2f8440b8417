"""Retention drops only whole old partitions; the fleet chart renders from the daily table."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import pytest

from energy_pipelines.analytics.daily import materialize_vehicle_day
from energy_pipelines.analytics.fleet_chart import recent_efficiency, render_png, worst_vehicles
from energy_pipelines.contract import METER, VEHICLE
from energy_pipelines.defs import defs
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.load.retention import drop_old_partitions, retention_cutoff
from energy_pipelines.settings import EvidenceRules, Settings
from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER, write_csv

DAYS = ["2026-02-01", "2026-02-05", "2026-02-06", "2026-02-10"]


def _partitions(db, table: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        name
        for (name,) in query(
            db,
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = $1::regclass ORDER BY 1",
            (table,),
        )
    ]


def test_retention_drops_only_whole_partitions_older_than_n_days(
    db, settings: Settings, landing: Path
) -> None:
    write_csv(landing, "meter", "m.csv", METER_HEADER, [f"m-1,1,230,{d}T23:59:00Z" for d in DAYS])
    write_csv(
        landing, "vehicle", "v.csv", VEHICLE_HEADER, [f"v-1,5,1,20,{d}T00:00:00Z" for d in DAYS]
    )
    ingest_stream(db, METER, settings, run_id="r")
    ingest_stream(db, VEHICLE, settings, run_id="r")
    today = date(2026, 2, 10)
    assert retention_cutoff(4, today) == date(2026, 2, 6)

    dropped = drop_old_partitions(db, keep_days=4, today=today)

    assert dropped == [
        "meter_readings_history_p20260201",
        "meter_readings_history_p20260205",
        "vehicle_readings_history_p20260201",
        "vehicle_readings_history_p20260205",
    ]
    assert _partitions(db, "meter_readings_history") == [
        "meter_readings_history_p20260206",
        "meter_readings_history_p20260210",
    ]
    # Kept days keep every row, even the one a minute before midnight.
    assert query(db, "SELECT ts::text FROM meter_readings_history ORDER BY ts") == [
        ("2026-02-06 23:59:00+00",),
        ("2026-02-10 23:59:00+00",),
    ]
    assert query(db, "SELECT count(*) FROM ingested_files WHERE status = 'loaded'") == [(2,)]
    # The hourly totals of dropped days go with them; the summary then says nothing is kept.
    assert query(
        db,
        "SELECT DISTINCT (hour AT TIME ZONE 'UTC')::date::text FROM meter_hourly_totals ORDER BY 1",
    ) == [("2026-02-06",), ("2026-02-10",)]
    assert query(db, "SELECT min(hour)::date::text FROM vehicle_hourly_totals") == [("2026-02-06",)]
    assert drop_old_partitions(db, keep_days=4, today=today) == []
    with pytest.raises(ValueError):
        retention_cutoff(-1)


def test_retention_job_and_schedule_are_wired_and_on_by_default(
    db, database_url: str, settings: Settings, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,1,230,2020-01-01T00:00:00Z"])
    ingest_stream(db, METER, settings, run_id="r")
    monkeypatch.setenv("DATABASE_URL", database_url)
    # ENERGY_RETENTION_DAYS=0 keeps everything.
    monkeypatch.setenv("ENERGY_RETENTION_DAYS", "0")
    kept = defs.resolve_job_def("retention_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert kept.success and len(_partitions(db, "meter_readings_history")) == 1
    # Without configuration the installation's setting (default 90 days) applies.
    monkeypatch.delenv("ENERGY_RETENTION_DAYS")
    result = defs.resolve_job_def("retention_job").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    assert _partitions(db, "meter_readings_history") == []
    schedule = defs.resolve_schedule_def("nightly_retention")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_fleet_chart_renders_a_png_of_the_last_days(
    db, settings: Settings, landing: Path, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1", "m-2,v-2"])
    write_csv(
        landing,
        "meter",
        "m.csv",
        METER_HEADER,
        ["m-1,1.0,230,2026-02-10T10:00:00Z", "m-2,1.0,230,2026-02-10T10:00:00Z"],
    )
    write_csv(
        landing,
        "vehicle",
        "v.csv",
        VEHICLE_HEADER,
        ["v-1,5,0.9,20,2026-02-10T10:00:00Z", "v-2,5,0.6,20,2026-02-10T10:00:00Z"],
    )
    from energy_pipelines.contract import CORRELATION

    for stream in (CORRELATION, METER, VEHICLE):
        ingest_stream(db, stream, settings, run_id="r")
    materialize_vehicle_day(db, date(2026, 2, 10), EvidenceRules())
    daily = recent_efficiency(db)
    assert daily.height == 2
    worst = worst_vehicles(daily)
    assert worst["vehicle_id"].to_list() == ["v-2", "v-1"]
    png = render_png(daily, 0.85)
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000

    # The asset attaches the picture to its materialization, where the UI shows it.
    from energy_pipelines.defs.analytics.assets import fleet_efficiency_chart
    from energy_pipelines.defs.resources import EnergyStorage

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENERGY_STATE_DIR", str(settings.state_dir))
    result = dg.materialize(
        [fleet_efficiency_chart], resources={"energy": EnergyStorage(landing_dir=str(landing))}
    )
    [materialization] = result.asset_materializations_for_node("fleet_efficiency_chart")
    assert "data:image/png;base64," in materialization.metadata["chart"].value
    assert (settings.state_dir / "charts" / "fleet_efficiency.png").read_bytes()[:4] == b"\x89PNG"
