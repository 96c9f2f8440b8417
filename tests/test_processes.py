"""The CLI as separate processes: exit codes, kill -9 after commit, concurrent runs, embedded DB."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import pytest

from energy_pipelines.load.database import connect, execute_admin, with_database
from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER, cli, write_csv


def _write_files(landing: Path, count: int) -> None:
    for i in range(count):
        write_csv(
            landing,
            "meter",
            f"gw-{i}/m.csv",
            METER_HEADER,
            [f"m-{i},0.{j + 1},230,2026-02-11T10:{j:02d}:00Z" for j in range(20)],
        )
        write_csv(
            landing,
            "vehicle",
            f"gw-{i}/v.csv",
            VEHICLE_HEADER,
            [f"v-{i},{j},0.{j + 1},25,2026-02-11T10:{j:02d}:00Z" for j in range(20)],
        )


def test_ingest_prints_a_line_per_file_and_exits_zero(db, env: dict, landing: Path) -> None:
    _write_files(landing, 1)
    write_csv(landing, "meter", "bad.csv", "nope", ["1"])
    done = cli("ingest", env=env)
    assert done.returncode == 0, done.stderr
    assert "loaded            meter/gw-0/m.csv: read 20, loaded 20" in done.stdout
    assert "quarantined       meter/bad.csv" in done.stdout
    again = cli("ingest", env=env)
    assert again.returncode == 0 and "no settled files" in again.stdout


def test_ingest_fails_with_a_clear_message_when_database_is_unreachable(
    env: dict, landing: Path
) -> None:
    _write_files(landing, 1)
    env["DATABASE_URL"] = "postgresql://nobody:secret@127.0.0.1:1/none"
    done = cli("ingest", env=env)
    assert done.returncode != 0
    assert "cannot connect to PostgreSQL" in done.stderr
    assert "secret" not in done.stderr + done.stdout
    assert (landing / "meter" / "gw-0" / "m.csv").exists()


CRASH_POINTS = [
    "after_staging_copy",
    "after_history_insert",
    "before_commit",
    "after_commit",
    "after_locks",
    "after_key_build",  # the first of the meter stream's two new days attached, not the other
    "hot_status_before_commit",
    "daily_before_commit",
]

# Everything a run leaves behind, minus what legitimately differs between runs (surrogate ids,
# clock times, run ids): readings are tied to their file by path, not by file_id.
FINGERPRINT_SQL = {
    "meter_history": "SELECT h.meter_id, h.ts, h.kwh_consumed_ac, h.voltage, f.path"
    " FROM meter_readings_history h JOIN ingested_files f USING (file_id)",
    "vehicle_history": "SELECT h.vehicle_id, h.ts, h.soc, h.kwh_delivered_dc, h.battery_temp,"
    " f.path FROM vehicle_readings_history h JOIN ingested_files f USING (file_id)",
    "correlation": "SELECT c.meter_id, c.vehicle_id, f.path"
    " FROM meter_vehicle_correlation c JOIN ingested_files f USING (file_id)",
    "manifest": "SELECT stream, path, sha256, size_bytes, status, rows_read, rows_loaded,"
    " rows_rejected, rows_duplicate, rows_conflicting, min_ts, max_ts, days_touched,"
    " extra_columns, error FROM ingested_files",
    "quarantine": "SELECT stream, source_path, row_number, column_name, kind, rule, raw_values,"
    " stored_values - 'fileId' FROM rejected_rows",
    "meter_status": "SELECT meter_id, ts, kwh_consumed_ac, voltage FROM meter_current_status",
    "vehicle_status": "SELECT vehicle_id, ts, soc, kwh_delivered_dc, battery_temp"
    " FROM vehicle_current_status",
    "daily_vehicle": "SELECT day, vehicle_id, total_kwh_delivered_dc, total_kwh_consumed_ac,"
    " efficiency_ratio, avg_battery_temp, vehicle_record_count, meter_record_count, meter_ids,"
    " shared_meter, status FROM daily_vehicle_efficiency",
    "daily_meter": "SELECT day, meter_id, total_kwh_consumed_ac, avg_voltage, min_voltage,"
    " max_voltage, record_count FROM daily_meter_usage",
}


def fingerprint(conn) -> dict[str, tuple[int, str]]:  # type: ignore[no-untyped-def]
    """Row count and an md5 over every row (in a stable order) of each table."""
    result = {}
    for name, sql in FINGERPRINT_SQL.items():
        [(count, digest)] = query(
            conn, f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM ({sql}) t"
        )
        result[name] = (count, digest)
    return result


def _write_crash_corpus(landing: Path) -> None:
    _write_files(landing, 2)
    write_csv(landing, "correlation", "pairs.csv", "meterId,vehicleId", ["m-0,v-0", "m-1,v-1"])
    write_csv(
        landing,
        "meter",
        "zz-late/m.csv",
        METER_HEADER,
        [
            "m-0,0.1,230,2026-02-11T10:00:00Z",  # duplicate of gw-0
            "m-0,0.9,230,2026-02-11T10:01:00Z",  # conflicts with gw-0
            "m-0,abc,230,2026-02-11T10:02:00Z",  # rejected
            "m-0,0.3,230,2026-02-10T23:59:00Z",  # a late reading for the day before
        ],
    )


@pytest.fixture(scope="module")
def clean_run_fingerprint(
    server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str]]:
    name = f"energy_clean_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    try:
        url = with_database(server_url, name)
        landing = tmp_path_factory.mktemp("clean") / "landing"
        _write_crash_corpus(landing)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ENERGY_")},
            "DATABASE_URL": url,
            "ENERGY_LANDING_DIR": str(landing),
            "ENERGY_SETTLE_SECONDS": "0",
        }
        done = cli("ingest", env=env)
        assert done.returncode == 0, done.stderr
        conn = connect(url)
        try:
            return fingerprint(conn)
        finally:
            conn.close()
    finally:
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.parametrize("repeat", [1, 2, 3])
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_9_at_a_crash_point_then_rerun_equals_a_clean_run(
    db, env: dict, landing: Path, point: str, repeat: int, clean_run_fingerprint: dict
) -> None:
    _write_crash_corpus(landing)
    # Two sessions build the new days' keys side by side, whatever this machine's cores.
    crashed = cli("ingest", env={**env, "ENERGY_CRASH_AT": point, "ENERGY_LOAD_SESSIONS": "2"})
    assert crashed.returncode == -signal.SIGKILL
    rerun = cli("ingest", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert fingerprint(db) == clean_run_fingerprint
    assert not [p for p in landing.rglob("*.csv") if "_archive" not in p.parts]
    # The fingerprint is not vacuous: it holds the rows each table should have.
    counts = {name: count for name, (count, _digest) in clean_run_fingerprint.items()}
    assert counts["meter_history"] == 41 and counts["quarantine"] == 2
    assert counts["daily_vehicle"] == 2 and counts["meter_status"] == 2


@pytest.mark.parametrize("processes", [2, 4])
def test_concurrent_ingests_load_each_file_exactly_once(
    db, env: dict, landing: Path, processes: int
) -> None:
    _write_files(landing, 6)
    running = [cli("ingest", env=env, wait=False) for _ in range(processes)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in running]
    for code, _out, err in results:
        assert code == 0, err
    assert query(
        db,
        "SELECT stream, count(*), sum(rows_loaded)::bigint FROM ingested_files"
        " WHERE status = 'loaded' GROUP BY 1 ORDER BY 1",
    ) == [
        ("meter", 6, 120),
        ("vehicle", 6, 120),
    ]
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(120,)]
    assert query(db, "SELECT count(DISTINCT path) FROM ingested_files") == [(12,)]


def test_embedded_postgres_is_used_when_database_url_is_unset(
    tmp_path: Path, landing: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "ENERGY_CRASH_AT")}
    env.update(
        ENERGY_STATE_DIR=str(tmp_path / "state"),
        ENERGY_LANDING_DIR=str(landing),
        ENERGY_SETTLE_SECONDS="0",
    )
    write_csv(landing, "meter", "m.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    upgraded = cli("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "applied 001_ingestion.sql" in upgraded.stdout
    done = cli("ingest", env=env)
    assert done.returncode == 0, done.stderr
    assert "host=" in done.stdout  # the embedded server's socket, not a TCP DATABASE_URL
    assert "loaded            meter/m.csv: read 1, loaded 1" in done.stdout
    assert (tmp_path / "state" / "pgdata" / "PG_VERSION").exists()


def test_a_first_run_with_nothing_to_load_migrates_a_new_database(
    server_url: str, env: dict, landing: Path
) -> None:
    name = f"energy_test_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    try:
        done = cli("ingest", env={**env, "DATABASE_URL": with_database(server_url, name)})
        assert done.returncode == 0, done.stderr
        assert "no settled files were waiting" in done.stdout
    finally:
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
