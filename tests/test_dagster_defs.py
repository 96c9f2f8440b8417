"""The Dagster wiring: the ingest job run in process, its reconciliation check, the sensor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from energy_pipelines.contract import METER
from energy_pipelines.defs import defs
from energy_pipelines.defs.ingestion.assets import load_landing_files
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.load.reconcile import reconcile_run
from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER, scans_of_day, write_csv


def _run_config(landing: Path) -> dict:
    return {"resources": {"energy": {"config": {"landing_dir": str(landing), "settle_seconds": 0}}}}


def test_ingest_job_loads_all_streams_and_reconciles(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
    write_csv(
        landing,
        "meter",
        "gw/m.csv",
        METER_HEADER + ",firmware",
        ["m-1,0.5,230,2026-02-11T10:30:00Z,1.2", "m-1,x,230,2026-02-11T10:31:00Z,1.2"],
    )
    write_csv(landing, "vehicle", "v.csv", VEHICLE_HEADER, ["v-1,50,0.45,25,2026-02-11T10:30:00Z"])

    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=_run_config(landing), instance=dg.DagsterInstance.ephemeral()
    )

    assert result.success
    reconcile = [
        c for c in result.get_asset_check_evaluations() if c.check_name == "rows_reconcile"
    ]
    assert len(reconcile) == 3 and all(c.passed for c in reconcile)
    meter = next(
        m
        for m in result.asset_materializations_for_node("load_landing_files")
        if m.asset_key == dg.AssetKey("meter_readings_history")
    )
    assert meter.metadata["rows_loaded"].value == 1
    assert meter.metadata["rows_rejected"].value == 1
    assert meter.metadata["dagster/row_count"].value == 1
    assert meter.metadata["ignored_extra_columns"].value == "firmware"
    assert query(db, "SELECT run_id FROM ingested_files GROUP BY 1") == [(result.run_id,)]


def test_reconcile_check_fails_when_history_lost_a_row(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    write_csv(
        landing,
        "meter",
        "m.csv",
        METER_HEADER,
        ["m-1,0.5,230,2026-02-11T10:30:00Z", "m-1,0.5,230,2026-02-11T10:31:00Z"],
    )
    job = defs.resolve_job_def("ingest_job")
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(run_config=_run_config(landing), instance=instance)
    assert all(
        c.passed for c in result.get_asset_check_evaluations() if c.check_name == "rows_reconcile"
    )

    # Someone deletes a loaded row behind the pipeline's back: reconciliation must notice.
    with db.cursor() as cur:
        cur.execute("DELETE FROM meter_readings_history WHERE ts = '2026-02-11T10:31:00Z'")
    db.commit()
    assert reconcile_run(db, METER, result.run_id).files_not_reconciled == ["meter/m.csv"]


def test_sensor_requests_one_run_with_a_stable_key(landing: Path, database_url: str) -> None:
    from energy_pipelines.defs.ingestion.sensors import build_landing_sensor

    sensor = build_landing_sensor(defs.resolve_job_def("ingest_job"))
    energy = EnergyStorage(landing_dir=str(landing), settle_seconds=0)
    empty = sensor(dg.build_sensor_context(resources={"energy": energy}))
    assert isinstance(empty, dg.SkipReason)

    write_csv(landing, "meter", "a.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    write_csv(landing, "vehicle", "b.csv", VEHICLE_HEADER, ["v-1,5,0.1,20,2026-02-11T10:30:00Z"])
    (landing / "meter" / "c.csv.part").write_text("partial")
    first = sensor(dg.build_sensor_context(resources={"energy": energy}))
    second = sensor(dg.build_sensor_context(resources={"energy": energy}))
    [request] = first.run_requests
    assert request.run_key == second.run_requests[0].run_key
    ops = request.run_config["ops"]
    assert ops["load_landing_files"]["config"]["paths"] == ["meter/a.csv", "vehicle/b.csv"]

    (landing / "meter" / "a.csv").write_text(METER_HEADER + "\nm-1,0.6,230,2026-02-11T10:30:00Z\n")
    changed = sensor(dg.build_sensor_context(resources={"energy": energy}))
    assert changed.run_requests[0].run_key != request.run_key


def test_status_and_daily_assets_through_dagster(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from energy_pipelines.defs.analytics.sensors import build_daily_sensor

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENERGY_FRESHNESS_MINUTES", str(10 * 365 * 24 * 60))
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,1.0,230,2026-02-11T10:30:00Z"])
    write_csv(landing, "vehicle", "v.csv", VEHICLE_HEADER, ["v-1,50,0.5,25,2026-02-11T10:30:00Z"])
    instance = dg.DagsterInstance.ephemeral()
    ingest = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=_run_config(landing), instance=instance
    )
    assert ingest.success
    evaluations = {
        (e.asset_key.path[-1], e.check_name): e.passed for e in ingest.get_asset_check_evaluations()
    }
    assert evaluations[("vehicle_current_status", "agrees_with_history")] is True
    assert evaluations[("meter_current_status", "fresh_data")] is True
    assert query(db, "SELECT vehicle_id, soc FROM vehicle_current_status") == [("v-1", 50.0)]

    energy = EnergyStorage(landing_dir=str(landing))
    sensor = build_daily_sensor(
        defs.resolve_job_def("daily_analytics_job"), defs.resolve_job_def("daily_quality_job")
    )
    result = sensor(dg.build_sensor_context(resources={"energy": energy}))
    assert [(r.job_name, r.partition_key) for r in result.run_requests] == [
        ("daily_analytics_job", "2026-02-11"),
        ("daily_quality_job", "2026-02-11"),
    ]
    assert isinstance(sensor(dg.build_sensor_context(resources={"energy": energy})), dg.SkipReason)

    daily = defs.resolve_job_def("daily_analytics_job").execute_in_process(
        partition_key="2026-02-11", instance=instance
    )
    assert daily.success
    quality = defs.resolve_job_def("daily_quality_job").execute_in_process(
        partition_key="2026-02-11", instance=instance
    )
    assert quality.success
    checks = {
        c.check_name: c.passed
        for run in (daily, quality)
        for c in run.get_asset_check_evaluations()
    }
    assert checks == {
        "fleet_faults": False,  # 0.5 < 0.85
        "insufficient_evidence": True,
        "frozen_readings": True,
        "reporting_cadence": True,
        "gateway_coverage": True,
    }
    assert query(db, "SELECT status FROM daily_vehicle_efficiency") == [("fault_suspected",)]
    assert query(db, "SELECT stream, device_id FROM daily_device_quality ORDER BY 1") == [
        ("meter", "m-1"),
        ("vehicle", "v-1"),
    ]


def test_freshness_check_fails_on_stale_data(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENERGY_FRESHNESS_MINUTES", "60")
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,1.0,230,2026-02-11T10:30:00Z"])
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=_run_config(landing), instance=dg.DagsterInstance.ephemeral()
    )
    fresh = next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "fresh_data" and e.asset_key.path[-1] == "meter_current_status"
    )
    assert fresh.passed is False


def test_reconcile_check_runs_without_loading(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Selected on its own (as "Execute" on the check in the UI does), the check checks the
    # files of its own run and loads nothing.
    monkeypatch.setenv("DATABASE_URL", database_url)
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    check = dg.AssetCheckKey(dg.AssetKey("meter_readings_history"), "rows_reconcile")
    result = dg.materialize(
        [load_landing_files],
        selection=dg.AssetSelection.checks(check),
        resources={"energy": EnergyStorage(landing_dir=str(landing), settle_seconds=0)},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.asset_check_key == check and evaluation.passed
    assert evaluation.metadata["files_checked"].value == 0
    assert result.get_asset_materialization_events() == []
    assert query(db, "SELECT count(*) FROM ingested_files") == [(0,)]
    assert (landing / "meter" / "m.csv").exists()


def test_loading_a_day_reads_no_partition_of_an_older_day(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cost follows new data: loading a day (its files, reconciliation and metadata) must not
    # read the days before it.
    monkeypatch.setenv("DATABASE_URL", database_url)

    def load() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [load_landing_files],
            resources={"energy": EnergyStorage(landing_dir=str(landing), settle_seconds=0)},
            selection=[METER.table],
        )

    write_csv(landing, "meter", "d1.csv", METER_HEADER, ["m-1,0.5,230,2026-02-10T10:30:00Z"])
    assert load().success
    before = scans_of_day(db, "20260210")
    write_csv(landing, "meter", "d2.csv", METER_HEADER, ["m-1,0.7,230,2026-02-11T10:30:00Z"])
    result = load()
    assert result.success
    [meter] = result.asset_materializations_for_node("load_landing_files")
    assert "2026-02-11 10:30:00" in meter.metadata["preview"].value
    assert scans_of_day(db, "20260210") == before
