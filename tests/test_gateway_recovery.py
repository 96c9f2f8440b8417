"""The gateway as its own process: its spool across crashes (kill -9 after 202s, a crash at each
step of the roll, a torn last line), one gateway per spool, and the port it listens on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from energy_pipelines.gateway.spool import Spool
from energy_pipelines.settings import Settings
from tests.conftest import query
from tests.gateway_helpers import (
    METER_URL,
    VEHICLE_URL,
    free_port,
    gateway_config,
    landed_files,
    landed_rows,
    meter,
    run_cli,
    serve_in_thread,
    start_gateway,
    vehicle,
)


def test_kill_9_after_202s_then_restart_loads_every_accepted_record_exactly_once(
    db, database_url: str, process_env: dict[str, str], landing: Path, tmp_path: Path
) -> None:
    env = {**process_env, "DATABASE_URL": database_url}
    log = tmp_path / "gateway.log"
    process, url = start_gateway(env, log)

    def send(i: int) -> int:
        with httpx.Client(base_url=url) as client:
            if i % 4 == 0:  # some single objects among the batches
                answer = client.post(VEHICLE_URL, json=vehicle(f"v-{i}", i % 60))
            else:
                answer = client.post(METER_URL, json=[meter(f"m-{i}", j) for j in range(25)])
            assert answer.status_code == 202
            return answer.json()["accepted"]

    with ThreadPoolExecutor(6) as pool:
        accepted = sum(pool.map(send, range(40)))
    process.kill()  # SIGKILL right after the last 202: no shutdown, no roll
    assert process.wait(timeout=10) == -signal.SIGKILL
    assert accepted == 30 * 25 + 10
    assert not landed_files(landing, "meter"), "nothing should have been rolled yet"

    process, url = start_gateway(env, log)
    # Recovery landed the spool before the gateway answered anything.
    assert sum(pq.read_metadata(p).num_rows for p in landed_files(landing, "meter")) == 750
    assert sum(pq.read_metadata(p).num_rows for p in landed_files(landing, "vehicle")) == 10
    more = httpx.post(url + METER_URL, json=[meter("m-after", j) for j in range(5)])
    assert more.status_code == 202
    process.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully (the spool rolls), then re-raises the signal.
    assert process.wait(timeout=30) == -signal.SIGTERM

    done = run_cli("ingest", env=env)
    assert done.returncode == 0, done.stderr
    assert query(db, "SELECT count(*) FROM meter_readings_history") == [(755,)]
    assert query(db, "SELECT count(*) FROM vehicle_readings_history") == [(10,)]
    # Landed once: no file skipped as a copy, no row seen twice, nothing quarantined.
    assert query(
        db,
        "SELECT status, sum(rows_duplicate)::bigint, sum(rows_rejected)::bigint"
        " FROM ingested_files GROUP BY 1",
    ) == [("loaded", 0, 0)]


@pytest.mark.parametrize(
    "point", ["gateway_roll_staged", "gateway_roll_segment_deleted", "gateway_roll_published"]
)
def test_a_crash_inside_the_roll_never_loses_or_doubles_a_record(
    process_env: dict[str, str], landing: Path, tmp_path: Path, point: str
) -> None:
    log = tmp_path / "gateway.log"
    crashing = {**process_env, "ENERGY_CRASH_AT": point, "ENERGY_GATEWAY_ROLL_SECONDS": "0.2"}
    process, url = start_gateway(crashing, log)
    sent = [meter(f"m-{i}", i % 60) for i in range(30)]
    assert httpx.post(url + METER_URL, json=sent).status_code == 202
    assert process.wait(timeout=20) == -signal.SIGKILL  # killed itself at the crash point
    process, url = start_gateway(process_env, log)
    try:
        assert landed_rows(landing, "meter") == sent
        leftovers = [p.name for p in (landing / "meter" / "http").iterdir() if p.name[0] == "."]
        assert leftovers == []
        assert not [p for p in (landing / "_gateway_spool" / "meter").iterdir() if p.stat().st_size]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    assert landed_rows(landing, "meter") == sent


def test_recovery_skips_a_torn_last_line(offline_settings: Settings, landing: Path) -> None:
    config = gateway_config(offline_settings)
    segment_dir = config.spool_dir / "meter"
    segment_dir.mkdir(parents=True)
    whole = json.dumps([meter("m-1", 0), meter("m-1", 1)]).encode() + b"\n"
    torn = json.dumps(meter("m-1", 2)).encode()[:-7]  # a crash mid-append, never acknowledged
    (segment_dir / "20260101T000000000000Z-0badc0de-000001.jsonl").write_bytes(whole + torn)
    spool = Spool(config)
    landed = spool.open()
    spool.close()
    assert len(landed) == 1
    assert landed_rows(landing, "meter") == [meter("m-1", 0), meter("m-1", 1)]


def test_a_second_gateway_on_the_same_spool_is_refused(
    offline_settings: Settings, process_env: dict[str, str], tmp_path: Path
) -> None:
    with serve_in_thread(gateway_config(offline_settings)):
        process = subprocess.run(
            [sys.executable, "-m", "energy_pipelines.cli", "gateway", "--port", str(free_port())],
            env=process_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert process.returncode != 0
    assert "another gateway is using the spool" in process.stdout + process.stderr


# --- the command line ----------------------------------------------------------------------


def test_the_gateway_listens_on_8000_unless_port_says_otherwise(
    landing: Path, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENERGY_") and k != "PORT"}
    env.update(ENERGY_LANDING_DIR=str(landing), ENERGY_STATE_DIR=str(tmp_path / "state"))
    for extra, port in [({}, 8000), ({"PORT": str(free_port())}, None)]:
        process = subprocess.Popen(
            [sys.executable, "-m", "energy_pipelines.cli", "gateway"],
            env={**env, **extra},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            assert process.stdout is not None
            lines = iter(process.stdout.readline, b"")
            started = next((line.decode() for line in lines if line.startswith(b"gateway on")), "")
        finally:
            process.terminate()
            process.wait(timeout=30)
        expected = port or int(extra["PORT"])
        assert started.startswith(f"gateway on http://127.0.0.1:{expected} "), started
