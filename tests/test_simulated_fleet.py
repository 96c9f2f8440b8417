"""The foundation issue's acceptance run: 100 meters and 100 vehicles over one day."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from energy_pipelines.simulate import simulate
from tests.conftest import query
from tests.helpers import cli


def test_one_day_of_a_small_fleet_loads_288000_readings_once(db, env: dict, landing: Path) -> None:
    summary = simulate(
        landing,
        meters=100,
        vehicles=100,
        start=datetime(2026, 2, 10, tzinfo=UTC),
        minutes=1440,
        files_per_stream=4,
    )
    assert summary.meter_rows + summary.vehicle_rows == 288_000

    first = cli("ingest", env=env)
    assert first.returncode == 0, first.stderr
    totals = "total: read 288100, loaded 288100, rejected 0, duplicate 0, conflicting 0"
    assert totals in first.stdout
    assert query(
        db,
        "SELECT stream, sum(rows_loaded)::bigint FROM ingested_files GROUP BY 1 ORDER BY 1",
    ) == [("correlation", 100), ("meter", 144_000), ("vehicle", 144_000)]
    assert query(
        db,
        "SELECT count(*) FROM ingested_files WHERE rows_read <>"
        " rows_loaded + rows_rejected + rows_duplicate + rows_conflicting",
    ) == [(0,)]
    assert query(db, "SELECT count(*) FROM daily_vehicle_efficiency") == [(100,)]
    assert query(db, "SELECT count(*) FROM vehicle_current_status") == [(100,)]
    faulty = set(summary.faulty_vehicles)
    flagged = {
        v
        for (v,) in query(
            db, "SELECT vehicle_id FROM daily_vehicle_efficiency WHERE status = 'fault_suspected'"
        )
    }
    charged = {
        v
        for (v,) in query(
            db, "SELECT vehicle_id FROM daily_vehicle_efficiency WHERE total_kwh_delivered_dc > 0"
        )
    }
    assert flagged == faulty & charged

    # Everything dropped again, under the same names: nothing new loads.
    for archived in (landing / "_archive").rglob("*.parquet"):
        stream = archived.relative_to(landing / "_archive").parts[0]
        shutil.copy(archived, landing / stream / archived.name)
    again = cli("ingest", env=env)
    assert again.returncode == 0, again.stderr
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(144_000,)]
    assert query(db, "SELECT count(*) FROM vehicle_readings_history") == [(144_000,)]
    assert query(db, "SELECT count(*) FROM ingested_files WHERE status = 'loaded'") == [(9,)]
