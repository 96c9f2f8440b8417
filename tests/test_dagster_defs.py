"""The Dagster wiring: the ingest job run in process, its reconciliation check, the sensor."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from energy_pipelines.contract import METER
from energy_pipelines.defs import defs
from energy_pipelines.defs.ingestion.assets import load_landing_files
from energy_pipelines.defs.ingestion.checks import reconcile_check_key
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
    # The per-file table leads with what happened to each file; the path, relative to the
    # landing root, comes last.
    table = meter.metadata["per_file"]
    assert [c.name for c in table.schema.columns] == [
        "status",
        "rows_read",
        "rows_loaded",
        "rows_rejected",
        "rows_duplicate",
        "rows_conflicting",
        "error",
        "path",
    ]
    [record] = table.records
    assert (record.data["status"], record.data["rows_rejected"], record.data["path"]) == (
        "loaded",
        1,
        "meter/gw/m.csv",
    )
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
    # With its cursor the sensor does not ask again while the runs may still come.
    again = sensor(dg.build_sensor_context(resources={"energy": energy}, cursor=result.cursor))
    assert not again.run_requests and again.skip_reason is not None

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


def _log_messages(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [entry.user_message for entry in instance.all_logs(run_id)]


def test_reconcile_check_on_its_own_checks_the_latest_loading_run_or_is_skipped(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Selected on its own (as "Execute" on the check in the UI does), the check loads nothing.
    # Before any meter file was loaded it has nothing to count: no result (Dagster shows it
    # Skipped) and the reason in the run's log, never a pass. Afterwards it counts the files of
    # the stream's latest run that loaded some.
    monkeypatch.setenv("DATABASE_URL", database_url)
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    check = dg.AssetCheckKey(dg.AssetKey("meter_readings_history"), "rows_reconcile")
    instance = dg.DagsterInstance.ephemeral()

    def check_alone() -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [load_landing_files],
            selection=dg.AssetSelection.checks(check),
            resources={"energy": EnergyStorage(landing_dir=str(landing), settle_seconds=0)},
            instance=instance,
        )

    nothing = check_alone()
    assert nothing.success
    assert nothing.get_asset_check_evaluations() == []
    assert (
        "rows_reconcile of meter_readings_history skipped: no meter file was ever loaded"
        in _log_messages(instance, nothing.run_id)
    )
    [planned] = instance.event_log_storage.get_asset_check_execution_history(check, limit=5)
    assert (planned.run_id, planned.status.value) == (nothing.run_id, "PLANNED")  # Skipped
    assert nothing.get_asset_materialization_events() == []
    assert query(db, "SELECT count(*) FROM ingested_files") == [(0,)]
    assert (landing / "meter" / "m.csv").exists()

    loading = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=_run_config(landing), instance=instance
    )
    assert loading.success
    # The run loaded no vehicle or correlation file: their reconciliations are skipped too.
    assert {
        e.asset_key.path[-1]
        for e in loading.get_asset_check_evaluations()
        if e.check_name == "rows_reconcile"
    } == {"meter_readings_history"}
    assert (
        f"rows_reconcile of vehicle_readings_history skipped: run {loading.run_id} loaded no "
        "vehicle file, so there is nothing to reconcile" in _log_messages(instance, loading.run_id)
    )
    again = check_alone()
    [evaluation] = again.get_asset_check_evaluations()
    assert evaluation.passed
    assert evaluation.metadata["run_checked"].value == loading.run_id
    assert evaluation.metadata["files_checked"].value == 1
    assert evaluation.description == f"1 of 1 loaded files reconcile (run {loading.run_id})"


def _load_meters(landing: Path) -> dg.ExecuteInProcessResult:
    """The meter history asset and its reconciliation, on this test's landing root."""
    return dg.materialize(
        [load_landing_files],
        resources={"energy": EnergyStorage(landing_dir=str(landing), settle_seconds=0)},
        selection=dg.AssetSelection.assets(METER.table)
        | dg.AssetSelection.checks(reconcile_check_key(METER)),
    )


def test_loading_a_day_reads_no_partition_of_an_older_day(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cost follows new data: loading a day (its files, reconciliation and metadata) must not
    # read the days before it.
    monkeypatch.setenv("DATABASE_URL", database_url)
    write_csv(landing, "meter", "d1.csv", METER_HEADER, ["m-1,0.5,230,2026-02-10T10:30:00Z"])
    assert _load_meters(landing).success
    before = scans_of_day(db, "20260210")
    write_csv(landing, "meter", "d2.csv", METER_HEADER, ["m-1,0.7,230,2026-02-11T10:30:00Z"])
    result = _load_meters(landing)
    assert result.success
    [meter] = result.asset_materializations_for_node("load_landing_files")
    assert "2026-02-11 10:30:00" in meter.metadata["preview"].value
    assert scans_of_day(db, "20260210") == before


def test_reconciling_a_late_file_reads_only_the_hours_of_the_run_files(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One file from weeks before the others: the reconciliation counts history around each
    # file, never the days between them.
    monkeypatch.setenv("DATABASE_URL", database_url)
    write_csv(landing, "meter", "mid.csv", METER_HEADER, ["m-1,0.5,230,2026-02-10T10:30:00Z"])
    assert _load_meters(landing).success
    before = scans_of_day(db, "20260210")
    write_csv(landing, "meter", "late.csv", METER_HEADER, ["m-1,0.4,230,2026-01-20T10:30:00Z"])
    write_csv(landing, "meter", "new.csv", METER_HEADER, ["m-1,0.7,230,2026-02-28T10:30:00Z"])
    result = _load_meters(landing)
    assert result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == "rows_reconcile"]
    assert check.passed and check.metadata["files_checked"].value == 2
    assert scans_of_day(db, "20260210") == before


def test_every_job_runs_its_steps_in_the_run_process() -> None:
    # A step process per asset cost more than the work on the daemon (a Python start each);
    # the daemon's runs must run like the CLI's, in one process.
    from energy_pipelines.defs import defs

    for name in ("ingest_job", "daily_analytics_job", "daily_quality_job"):
        assert defs.resolve_job_def(name).executor_def.name == "in_process", name


DAILY_CHECKS = {
    ("daily_vehicle_efficiency", "fleet_faults"),
    ("daily_vehicle_efficiency", "insufficient_evidence"),
    ("daily_device_quality", "frozen_readings"),
    ("daily_device_quality", "gateway_coverage"),
}


def test_daily_checks_are_recorded_once_against_their_day_and_the_chart_counts_agree(
    db, database_url: str, landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from energy_pipelines.defs.analytics.assets import fleet_efficiency_chart

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENERGY_STATE_DIR", str(tmp_path / "state"))
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1", "m-2,v-2"])
    write_csv(
        landing,
        "meter",
        "m.csv",
        METER_HEADER,
        ["m-1,1.0,230,2026-02-11T10:30:00Z", "m-2,0.0,230,2026-02-11T10:30:00Z"],
    )
    # v-2 did not charge (no DC, no AC): a vehicle-day without a ratio.
    write_csv(
        landing,
        "vehicle",
        "v.csv",
        VEHICLE_HEADER,
        ["v-1,50,0.5,25,2026-02-11T10:30:00Z", "v-2,60,0.0,25,2026-02-11T10:30:00Z"],
    )
    instance = dg.DagsterInstance.ephemeral()
    ingest = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=_run_config(landing), instance=instance
    )
    assert ingest.success
    runs = {
        job: defs.resolve_job_def(job).execute_in_process(
            partition_key="2026-02-11", instance=instance
        )
        for job in ("daily_analytics_job", "daily_quality_job")
    }
    assert all(r.success for r in runs.values())

    for asset, name in DAILY_CHECKS:
        key = dg.AssetCheckKey(dg.AssetKey(asset), name)
        # One row per run: the result, on its day; no planned row left beside it (Skipped).
        [record] = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
        assert record.partition == "2026-02-11"
        assert record.status.value in ("SUCCEEDED", "FAILED")
        evaluation = record.event.dagster_event.event_specific_data
        assert evaluation.partition == "2026-02-11"
        assert evaluation.description.startswith("2026-02-11: "), evaluation.description
    descriptions = {
        c.check_name: c.description for r in runs.values() for c in r.get_asset_check_evaluations()
    }
    assert descriptions["fleet_faults"] == (
        "2026-02-11: 1 of 2 vehicles fault_suspected or implausible"
    )
    assert descriptions["gateway_coverage"] == "2026-02-11: 0 of 2 landing folders went quiet"

    chart = dg.materialize(
        [fleet_efficiency_chart],
        resources={"energy": EnergyStorage(landing_dir=str(landing))},
        instance=instance,
    )
    [materialization] = chart.asset_materializations_for_node("fleet_efficiency_chart")
    metadata = {k: v.value for k, v in materialization.metadata.items()}
    assert (metadata["vehicle_days"], metadata["vehicle_days_with_ratio"]) == (2, 1)
    assert metadata["title"] == "Daily efficiency, last 7 days (1 of 2 vehicle-days with a ratio)"


def test_fresh_data_names_clock_skew_with_its_offset(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime, timedelta

    # A gateway whose clock runs 5 minutes ahead: within the loader's future limit (10), so
    # the reading loads, and its age by the database's clock would be negative.
    monkeypatch.setenv("DATABASE_URL", database_url)
    ahead = (datetime.now(UTC) + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_csv(landing, "meter", "m.csv", METER_HEADER, [f"m-1,1.0,230,{ahead}"])
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config=_run_config(landing), instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    [fresh] = [
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "fresh_data" and e.asset_key.path[-1] == "meter_current_status"
    ]
    assert fresh.passed is False and fresh.severity == dg.AssetCheckSeverity.WARN
    assert fresh.description.startswith("clock skew: the newest meter reading is stamped ")
    assert 4.0 <= fresh.metadata["clock_skew_minutes"].value <= 5.1
    assert "age_minutes" not in fresh.metadata


def test_the_fleet_chart_follows_daily_partitions_on_its_own(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A day's partition exists from the load that touched it, and one whose daily run failed
    # stays missing: the chart must still be requested once a day's partition changes, by a
    # sensor that is on without a click in the UI.
    monkeypatch.setenv("DATABASE_URL", database_url)
    sensor = defs.get_sensor_def("fleet_chart_automation")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    instance = dg.DagsterInstance.ephemeral()
    chart = dg.AssetSelection.assets("fleet_efficiency_chart")
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=chart)
    assert first.total_requested == 0

    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,1.0,230,2026-02-11T10:30:00Z"])
    write_csv(landing, "vehicle", "v.csv", VEHICLE_HEADER, ["v-1,50,0.9,25,2026-02-11T10:30:00Z"])
    assert (
        defs.resolve_job_def("ingest_job")
        .execute_in_process(run_config=_run_config(landing), instance=instance)
        .success
    )
    assert (
        defs.resolve_job_def("daily_analytics_job")
        .execute_in_process(partition_key="2026-02-11", instance=instance)
        .success
    )
    after = dg.evaluate_automation_conditions(
        defs=defs, instance=instance, asset_selection=chart, cursor=first.cursor
    )
    assert after.get_requested_partitions(dg.AssetKey("fleet_efficiency_chart")) == {None}
