"""What the Dagster UI shows of the definitions: landing folders in the lineage, per-stage seconds
and rejection reasons on a history materialization, daily partitions only for days with data,
the fleet picture kept out of the event log when it did not change, a status check bounded to
what a run touched, and a landing sensor that never reads a file's content."""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg
import pytest

from energy_pipelines.defs import defs
from energy_pipelines.defs.analytics.partitions import DAILY_PARTITIONS
from energy_pipelines.defs.ingestion.metadata import STAGES, stage_key
from energy_pipelines.defs.pictures import DIGEST_KEY, MAX_INLINE_BYTES
from energy_pipelines.defs.resources import EnergyStorage
from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER, scans_of_day, write_csv


def _ingest(landing: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    config = {"landing_dir": str(landing), "settle_seconds": 0}
    result = defs.resolve_job_def("ingest_job").execute_in_process(
        run_config={"resources": {"energy": {"config": config}}}, instance=instance
    )
    assert result.success
    return result


def _history_materialization(
    result: dg.ExecuteInProcessResult, table: str
) -> dg.AssetMaterialization:
    return next(
        m
        for m in result.asset_materializations_for_node("load_landing_files")
        if m.asset_key == dg.AssetKey(table)
    )


def test_landing_folders_are_external_sources_upstream_of_history() -> None:
    graph = defs.resolve_asset_graph()
    for stream, table in (
        ("meter", "meter_readings_history"),
        ("vehicle", "vehicle_readings_history"),
        ("correlation", "meter_vehicle_correlation"),
    ):
        landing = dg.AssetKey(["landing", stream])
        node = graph.get(landing)
        assert not node.is_materializable and not node.is_executable
        assert graph.get(dg.AssetKey(table)).parent_keys == {landing}
    meter_folder = graph.get(dg.AssetKey(["landing", "meter"]))
    columns = meter_folder.metadata["dagster/column_schema"].columns
    assert [c.name for c in columns] == ["meterId", "kwhConsumedAc", "voltage", "timestamp"]


def test_history_materialization_has_a_number_per_stage_and_the_rejection_reasons(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    write_csv(
        landing,
        "meter",
        "gw/m.csv",
        METER_HEADER,
        [
            "m-1,0.5,230,2026-02-11T10:30:00Z",
            "m-1,x,230,2026-02-11T10:31:00Z",
            "m-2,y,230,2026-02-11T10:31:00Z",
            "m-3,0.5,9999,2026-02-11T10:31:00Z",
        ],
    )
    (landing / "meter" / "gw" / "broken.parquet").write_bytes(b"not a parquet file")
    write_csv(landing, "vehicle", "v.csv", VEHICLE_HEADER, ["v-1,50,0.5,25,2026-02-11T10:30:00Z"])
    result = _ingest(landing, dg.DagsterInstance.ephemeral())

    meter = _history_materialization(result, "meter_readings_history")
    # One float per stage: the Plots tab charts each across materializations.
    for stage in STAGES:
        value = meter.metadata[stage_key(stage)]
        assert isinstance(value, dg.FloatMetadataValue) and value.value >= 0.0, stage
    assert meter.metadata[stage_key("read")].value > 0.0
    assert "stage_seconds" not in meter.metadata

    table = meter.metadata["rejection_reasons"]
    assert isinstance(table, dg.TableMetadataValue)
    assert [c.name for c in table.schema.columns] == ["rows", "files", "kind", "column", "rule"]
    shown = [
        (r.data["rows"], r.data["files"], r.data["kind"], r.data["column"], r.data["rule"])
        for r in table.records
    ]
    in_quarantine = query(
        db,
        "SELECT count(*)::int, count(DISTINCT file_id)::int, kind, coalesce(column_name, ''),"
        " rule FROM rejected_rows GROUP BY 3, 4, 5 ORDER BY 1 DESC, 3, 4, 5",
    )
    [(file_error,)] = query(db, "SELECT error FROM ingested_files WHERE status = 'quarantined'")
    assert [row for row in shown if row[2] != "file"] == [tuple(r) for r in in_quarantine]
    assert [row[2:4] for row in in_quarantine] == [
        ("invalid", "kwhConsumedAc"),
        ("invalid", "voltage"),
    ]
    assert [row for row in shown if row[2] == "file"] == [
        (0, 1, "file", "", file_error.replace(f"{landing}/", ""))
    ]
    # A stream whose files were all clean shows an empty table.
    vehicle = _history_materialization(result, "vehicle_readings_history")
    assert vehicle.metadata["rejection_reasons"].records == []


def test_daily_partitions_are_the_days_loaded_data_touched(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from energy_pipelines.defs.analytics.sensors import build_daily_sensor

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENERGY_FIRST_DAY", "2026-02-10")
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
    write_csv(
        landing,
        "meter",
        "m.csv",
        METER_HEADER,
        [
            "m-1,1.0,230,2026-02-09T10:30:00Z",  # before ENERGY_FIRST_DAY: no partition
            "m-1,1.0,230,2026-02-12T10:30:00Z",
            "m-1,1.0,230,2026-02-11T23:59:00Z",
        ],
    )
    write_csv(landing, "vehicle", "v.csv", VEHICLE_HEADER, ["v-1,50,0.9,25,2026-02-11T10:30:00Z"])
    instance = dg.DagsterInstance.ephemeral()
    _ingest(landing, instance)
    # Days with data only, in calendar order: not one partition per day since a start date.
    assert instance.get_dynamic_partitions(DAILY_PARTITIONS.name) == ["2026-02-11", "2026-02-12"]
    daily = defs.resolve_job_def("daily_analytics_job")
    assert daily.execute_in_process(partition_key="2026-02-11", instance=instance).success
    with pytest.raises(dg.DagsterUnknownPartitionError):
        daily.execute_in_process(partition_key="2026-02-09", instance=instance)

    # The daily sensor asks for each day's partition with its runs (a day a correlation file
    # touched, or one loaded through another instance, exists before its run starts).
    sensor = build_daily_sensor(daily, defs.resolve_job_def("daily_quality_job"))
    energy = EnergyStorage(landing_dir=str(landing))
    result = sensor(dg.build_sensor_context(resources={"energy": energy}))
    [request] = result.dynamic_partitions_requests
    assert (request.partitions_def_name, list(request.partition_keys)) == (
        "utc_day",
        ["2026-02-11", "2026-02-12"],
    )
    assert {r.partition_key for r in result.run_requests} == {"2026-02-11", "2026-02-12"}


def _chart(landing: Path, instance: dg.DagsterInstance) -> dict:
    from energy_pipelines.defs.analytics.assets import fleet_efficiency_chart

    result = dg.materialize(
        [fleet_efficiency_chart],
        resources={"energy": EnergyStorage(landing_dir=str(landing))},
        instance=instance,
    )
    [event] = result.asset_materializations_for_node("fleet_efficiency_chart")
    return {"run_id": result.run_id, **{k: v.value for k, v in event.metadata.items()}}


def test_the_fleet_picture_is_stored_small_and_only_when_it_changed(
    db, database_url: str, landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("ENERGY_STATE_DIR", str(tmp_path / "state"))
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,1.0,230,2026-02-11T10:30:00Z"])
    write_csv(landing, "vehicle", "v.csv", VEHICLE_HEADER, ["v-1,50,0.9,25,2026-02-11T10:30:00Z"])
    instance = dg.DagsterInstance.ephemeral()
    _ingest(landing, instance)
    daily = defs.resolve_job_def("daily_analytics_job")
    assert daily.execute_in_process(partition_key="2026-02-11", instance=instance).success

    first = _chart(landing, instance)
    full_size = (tmp_path / "state" / "charts" / "fleet_efficiency.png").stat().st_size
    assert first["chart"].startswith("![fleet efficiency](data:image/png;base64,")
    assert len(first["chart"]) < min(full_size, MAX_INLINE_BYTES * 4 // 3 + 100)

    # Nothing changed: the picture is not stored again; the metadata says where it is.
    second = _chart(landing, instance)
    assert second[DIGEST_KEY] == first[DIGEST_KEY]
    assert "data:image" not in second["chart"]
    assert f"unchanged since run {first['run_id']}" in second["chart"]

    write_csv(landing, "vehicle", "v2.csv", VEHICLE_HEADER, ["v-1,50,0.1,25,2026-02-12T10:30:00Z"])
    write_csv(landing, "meter", "m2.csv", METER_HEADER, ["m-1,1.0,230,2026-02-12T10:30:00Z"])
    _ingest(landing, instance)
    assert daily.execute_in_process(partition_key="2026-02-12", instance=instance).success
    third = _chart(landing, instance)
    assert third[DIGEST_KEY] != first[DIGEST_KEY]
    assert third["chart"].startswith("![fleet efficiency](data:image/png;base64,")


def _agreement(result: dg.ExecuteInProcessResult, asset: str) -> dg.AssetCheckEvaluation:
    return next(
        e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "agrees_with_history" and e.asset_key.path[-1] == asset
    )


def test_status_agreement_checks_the_devices_the_run_touched_and_reads_no_history(
    db, database_url: str, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from energy_pipelines.defs.hot_store.checks import hot_store_checks

    monkeypatch.setenv("DATABASE_URL", database_url)
    instance = dg.DagsterInstance.ephemeral()
    rows = [f"m-{i},1.0,230,2026-02-10T10:3{i}:00Z" for i in range(1, 4)]
    write_csv(landing, "meter", "day1.csv", METER_HEADER, rows)
    first = _ingest(landing, instance)
    assert _agreement(first, "meter_current_status").metadata["devices_checked"].value == 3

    # m-3's status is made wrong behind the pipeline's back; the next run touches m-1 only.
    with db.cursor() as cur:
        cur.execute(
            "UPDATE meter_current_status SET ts = ts - interval '1 day' WHERE meter_id = 'm-3'"
        )
    db.commit()
    write_csv(landing, "meter", "day2.csv", METER_HEADER, ["m-1,1.0,230,2026-02-11T08:00:00Z"])
    second = _ingest(landing, instance)
    agreement = _agreement(second, "meter_current_status")
    assert agreement.passed
    assert agreement.metadata["devices_checked"].value == 1
    assert agreement.description == (
        f"all 1 meter devices touched by run {second.run_id} have their latest reading as status"
    )

    # The check run on its own covers the stream's latest loading run; m-1 made wrong fails it,
    # and it reads no partition of history (the hourly totals say what the latest reading is).
    with db.cursor() as cur:
        cur.execute(
            "UPDATE meter_current_status SET ts = ts - interval '1 minute' WHERE meter_id = 'm-1'"
        )
    db.commit()
    before = (scans_of_day(db, "20260210"), scans_of_day(db, "20260211"))
    alone = dg.materialize(
        [hot_store_checks],
        selection=dg.AssetSelection.checks(
            dg.AssetCheckKey(dg.AssetKey("meter_current_status"), "agrees_with_history")
        ),
        resources={"energy": EnergyStorage(landing_dir=str(landing))},
        instance=instance,
    )
    [evaluation] = alone.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.metadata["run_checked"].value == second.run_id
    assert evaluation.metadata["devices_disagreeing (first 20)"].value == "m-1"
    assert (scans_of_day(db, "20260210"), scans_of_day(db, "20260211")) == before


def test_landing_sensor_builds_its_run_key_without_reading_any_file(
    landing: Path, database_url: str
) -> None:
    from energy_pipelines.defs.ingestion.sensors import build_landing_sensor
    from energy_pipelines.landing.discover import sha256_of

    paths = [
        write_csv(
            landing, "meter", f"gw-{i}/m.csv", METER_HEADER, ["m-1,1,230,2026-02-11T10:30:00Z"]
        )
        for i in range(3)
    ]
    watched = {str(p) for p in paths}
    opened: list[str] = []
    listening = [False]

    def audit(event: str, args: tuple) -> None:
        if listening[0] and event == "open" and str(args[0]) in watched:
            opened.append(str(args[0]))

    sys.addaudithook(audit)  # hooks cannot be removed: this one listens only while asked
    sensor = build_landing_sensor(defs.resolve_job_def("ingest_job"))
    energy = EnergyStorage(landing_dir=str(landing), settle_seconds=0)

    listening[0] = True
    try:
        sha256_of(paths[0])  # the hook sees a read of a landing file
        assert opened == [str(paths[0])]
        opened.clear()
        result = sensor(dg.build_sensor_context(resources={"energy": energy}))
    finally:
        listening[0] = False
    [request] = result.run_requests
    assert len(request.run_config["ops"]["load_landing_files"]["config"]["paths"]) == 3
    assert opened == []
