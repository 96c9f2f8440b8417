"""The CLI as separate processes: exit codes, kill -9 after commit, concurrent runs, embedded DB."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER, write_csv


def cli(
    *args: str, env: dict[str, str], wait: bool = True
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    command = [sys.executable, "-m", "energy_pipelines.cli", *args]
    if not wait:
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


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


@pytest.mark.parametrize(
    "point",
    [
        "after_history_insert",
        "before_commit",
        "after_commit",
        "hot_status_before_commit",
        "daily_before_commit",
    ],
)
def test_kill_9_at_a_crash_point_then_rerun_loads_everything_once(
    db, env: dict, landing: Path, point: str
) -> None:
    _write_files(landing, 2)
    crashed = cli("ingest", env={**env, "ENERGY_CRASH_AT": point})
    assert crashed.returncode == -signal.SIGKILL
    rerun = cli("ingest", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert query(
        db,
        "SELECT stream, count(*), sum(rows_loaded)::bigint FROM ingested_files"
        " WHERE status = 'loaded' GROUP BY 1 ORDER BY 1",
    ) == [
        ("meter", 2, 40),
        ("vehicle", 2, 40),
    ]
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(40,)]
    assert query(db, "SELECT count(*) FROM vehicle_readings_history") == [(40,)]
    assert query(db, "SELECT count(*) FROM ingested_files WHERE status <> 'loaded'") == [(0,)]
    assert not list((landing / "meter").rglob("*.csv"))
    # Downstream tables are healed by the rerun too.
    assert query(db, "SELECT meter_id, ts::text FROM meter_current_status ORDER BY 1") == [
        ("m-0", "2026-02-11 10:19:00+00"),
        ("m-1", "2026-02-11 10:19:00+00"),
    ]
    assert query(db, "SELECT count(*) FROM vehicle_current_status") == [(2,)]
    assert query(
        db, "SELECT day::text, vehicle_id, status FROM daily_vehicle_efficiency ORDER BY 2"
    ) == [("2026-02-11", "v-0", "uncorrelated"), ("2026-02-11", "v-1", "uncorrelated")]
    assert query(db, "SELECT count(*) FROM daily_meter_usage") == [(2,)]


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
