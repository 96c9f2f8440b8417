"""Units without a broker: how files are cut into units, a unit loaded twice (one after the
other, and two copies at once) loading once, a stale worker refusing a unit, and the units job
run in process."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from energy_pipelines.settings import BatchLimits, Settings
from energy_pipelines.units import StaleWorker, Unit, UnitResult, load_unit, plan_units
from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER, write_csv

TS = "2026-02-11T10:{:02d}:00Z"
FILES = 7


@pytest.fixture
def unit_settings(settings: Settings, landing: Path) -> Settings:
    """Seven meter and seven vehicle files, units of at most three files."""
    for n in range(FILES):
        rows = [f"m-{n},0.5,230,{TS.format(m)}" for m in range(3)]
        write_csv(landing, "meter", f"gw-{n % 2}/{n}.csv", METER_HEADER, rows)
        rows = [f"v-{n},50,0.4,25,{TS.format(m)}" for m in range(3)]
        write_csv(landing, "vehicle", f"gw-{n % 2}/{n}.csv", VEHICLE_HEADER, rows)
    return replace(settings, batch_limits=BatchLimits(max_files=3))


def test_a_streams_files_are_cut_into_units_by_the_batch_limits(unit_settings: Settings) -> None:
    units = plan_units(unit_settings)
    for stream in ("meter", "vehicle"):
        mine = [u for u in units if u.stream == stream]
        assert [len(u.paths) for u in mine] == [3, 3, 1]
        paths = [p for u in mine for p in u.paths]
        assert paths == sorted(paths) and len(set(paths)) == FILES
    assert len({u.key for u in units}) == len(units)
    assert plan_units(unit_settings) == units  # the same files give the same units
    only = plan_units(unit_settings, ["meter/gw-0/0.csv", "vehicle/gw-1/1.csv"])
    assert [u.paths for u in only] == [("meter/gw-0/0.csv",), ("vehicle/gw-1/1.csv",)]


def test_a_unit_loaded_again_finds_its_files_done(db, unit_settings: Settings) -> None:
    unit = plan_units(unit_settings)[0]
    first = load_unit(unit_settings, unit, "run-1")
    assert (first.loaded, first.already_done) == (3, 0)
    assert first.counts["rows_loaded"] == 9
    again = load_unit(unit_settings, unit, "run-1")
    assert (again.loaded, again.already_done) == (0, 3)
    assert "3 of its files found done by another worker or run" in again.describe()
    assert query(db, "SELECT count(*), count(DISTINCT path) FROM ingested_files") == [(3, 3)]


def test_two_copies_of_a_unit_at_once_load_it_once(db, unit_settings: Settings) -> None:
    unit = plan_units(unit_settings)[0]
    results: list[UnitResult] = []
    start = threading.Barrier(2)

    def copy() -> None:
        start.wait()
        results.append(load_unit(unit_settings, unit, "run-1"))

    threads = [threading.Thread(target=copy) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.loaded for r in results) == 3
    assert sum(r.already_done for r in results) == 3
    assert query(db, "SELECT count(*), count(DISTINCT path) FROM ingested_files") == [(3, 3)]
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(9,)]


def test_a_worker_with_other_code_refuses_the_unit(db, unit_settings: Settings) -> None:
    unit = plan_units(unit_settings)[0]
    stale = Unit(unit.stream, unit.paths, code="0" * 16)
    with pytest.raises(StaleWorker, match="refused"):
        load_unit(unit_settings, stale, "run-1")
    assert query(db, "SELECT count(*) FROM ingested_files") == [(0,)]


def test_the_units_job_in_process_loads_every_unit_then_refreshes_status(
    db, unit_settings: Settings, landing: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from energy_pipelines.defs import defs

    monkeypatch.setenv("DATABASE_URL", unit_settings.database_url or "")
    monkeypatch.setenv("ENERGY_BATCH_MAX_FILES", "3")
    job = defs.resolve_job_def("ingest_units_job")
    result = job.execute_in_process(
        run_config={
            "resources": {"energy": {"config": {"landing_dir": str(landing), "settle_seconds": 0}}}
        }
    )
    assert result.success
    loads = [e for e in result.all_events if e.is_successful_output and "load_unit" in e.step_key]
    assert len(loads) == 6
    assert query(db, "SELECT count(*), count(DISTINCT path) FROM ingested_files") == [(14, 14)]
    assert query(db, "SELECT count(*) FROM meter_current_status") == [(FILES,)]
    assert query(db, "SELECT count(*) FROM vehicle_current_status") == [(FILES,)]
