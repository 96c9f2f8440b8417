"""A new user's first hour: the CLI's runs are in the UI's history, both on one Dagster instance
found the same way (an operator's exported DAGSTER_HOME wins, else the working folder's)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.secrets.env_file import get_env_var_dict

from energy_pipelines.dagster_home import dagster_home
from energy_pipelines.ui import ui_command
from tests.helpers import METER_HEADER, VEHICLE_HEADER, cli, write_csv

REPO_ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-02-11"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _graphql(port: int, document: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": document}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def _write_a_day(landing: Path) -> None:
    write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
    write_csv(landing, "meter", "gw-1/m.csv", METER_HEADER, [f"m-1,1.0,230,{DAY}T10:30:00Z"])
    write_csv(landing, "vehicle", "gw-1/v.csv", VEHICLE_HEADER, [f"v-1,50,0.9,25,{DAY}T10:30:00Z"])


@pytest.fixture
def operator_home(tmp_path: Path) -> Path:
    """An operator's own instance folder, with the project's instance settings."""
    home = tmp_path / "operator_dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / ".dagster_home" / "dagster.yaml").read_text())
    return home


@contextmanager
def running_ui(env: dict[str, str], folder: Path) -> Iterator[int]:
    """`energy-pipelines ui` as a supervisor starts it: another working folder, a stale $PWD.
    Yields its port; stops it (webserver, daemon, code server) on the way out."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "energy_pipelines.cli", "ui", "-p", str(port)],
        cwd=folder,
        env={**env, "PWD": "/nonexistent"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: dagster dev and its children
    )
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert process.poll() is None, "energy-pipelines ui exited"
                assert time.monotonic() < deadline, "the UI did not start"
                time.sleep(0.5)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.slow
def test_cli_runs_are_in_the_instance_the_ui_loads(
    env: dict[str, str], landing: Path, operator_home: Path, tmp_path: Path
) -> None:
    # As a new user goes: the CLI first (the demo, an ingest), then the UI.
    env = {**env, "DAGSTER_HOME": str(operator_home)}
    _write_a_day(landing)
    done = cli("ingest", env=env)
    assert done.returncode == 0, done.stderr
    run_id = re.search(r"^run (\S+) on ", done.stdout, re.MULTILINE).group(1)

    # The instance the webserver loads: DagsterInstance from that DAGSTER_HOME.
    os.environ["DAGSTER_HOME"], before = str(operator_home), os.environ["DAGSTER_HOME"]
    try:
        with dg.DagsterInstance.get() as instance:
            runs = {r.run_id: (r.job_name, r.status.value) for r in instance.get_runs()}
            history = instance.fetch_materializations(dg.AssetKey("meter_readings_history"), 5)
            daily = instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("daily_vehicle_efficiency"), asset_partitions=[DAY]
                ),
                limit=5,
            )
    finally:
        os.environ["DAGSTER_HOME"] = before
    assert runs[run_id] == ("ingest_job", "SUCCESS")
    assert sorted(runs.values()) == [
        ("daily_analytics_job", "SUCCESS"),
        ("ingest_job", "SUCCESS"),
    ]
    assert [r.run_id for r in history.records] == [run_id]
    [day] = daily.records
    assert runs[day.run_id] == ("daily_analytics_job", "SUCCESS")

    # The same through the UI's own API, as the browser reads it.
    (tmp_path / "elsewhere").mkdir()
    with running_ui(env, tmp_path / "elsewhere") as port:
        listed = _graphql(
            port, "{ runsOrError { ... on Runs { results { runId jobName status } } } }"
        )
        asset = _graphql(
            port,
            '{ assetOrError(assetKey: {path: ["daily_vehicle_efficiency"]}) {'
            " ... on Asset { assetMaterializations(limit: 5) { runId partition } } } }",
        )
        checks = _graphql(
            port,
            '{ assetCheckExecutions(assetKey: {path: ["daily_vehicle_efficiency"]},'
            ' checkName: "fleet_faults", limit: 5) { runId status partition'
            " evaluation { description } } }",
        )
    assert {(r["runId"], r["jobName"], r["status"]) for r in listed["runsOrError"]["results"]} == {
        (i, job, status) for i, (job, status) in runs.items()
    }
    assert asset["assetOrError"]["assetMaterializations"] == [
        {"runId": day.run_id, "partition": DAY}
    ]
    fleet_faults = f"{DAY}: 0 of 1 vehicles fault_suspected or implausible"
    assert checks["assetCheckExecutions"] == [
        {
            "runId": day.run_id,
            "status": "SUCCEEDED",
            "partition": DAY,
            "evaluation": {"description": fleet_faults},
        }
    ]


def test_the_operators_dagster_home_wins_over_the_working_folders(
    env: dict[str, str], landing: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without one exported, the CLI and the UI both use the working folder's .dagster_home/,
    # never a folder inside the installed package.
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(tmp_path)
    assert dagster_home() == tmp_path / ".dagster_home"
    command, ui_env = ui_command(["-p", "3001"])
    assert ui_env["DAGSTER_HOME"] == str(tmp_path / ".dagster_home")
    assert command == [
        sys.executable,
        *("-m", "dagster_dg_cli.cli", "dev", "-m", "energy_pipelines.defs", "-a", "defs"),
        *("-p", "3001"),
    ]

    # Exported, it wins for both.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert dagster_home() == tmp_path
    assert ui_command([])[1]["DAGSTER_HOME"] == str(tmp_path)

    # Nothing the project ships overrides it: Dagster's command line loads the .env of the
    # folder it starts in, over the environment.
    assert "DAGSTER_HOME" not in get_env_var_dict(str(REPO_ROOT))

    # An exported folder that does not exist is bad configuration (exit 2), said before any
    # file is touched.
    _write_a_day(landing)
    missing = tmp_path / "no-such-home"
    done = cli("ingest", env={**env, "DAGSTER_HOME": str(missing)})
    assert done.returncode == 2
    assert f"DAGSTER_HOME={missing} is not a directory" in done.stderr
    assert (landing / "meter" / "gw-1" / "m.csv").exists()


def test_the_demo_shows_a_whole_previous_day_and_what_to_look_at_next(
    db, env: dict[str, str], landing: Path, operator_home: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.conftest import query

    env = {**env, "DAGSTER_HOME": str(operator_home)}
    done = cli("demo", "--meters", "6", env=env)
    assert done.returncode == 0, done.stderr
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date()
    line = next(
        x for x in done.stdout.splitlines() if x.startswith(f"status per vehicle on {yesterday}")
    )
    # A whole day of a healthy simulated fleet: every vehicle judged on its evidence.
    statuses = dict(
        (word, int(n)) for word, n in (part.split() for part in line.split(": ", 1)[1].split(", "))
    )
    assert sum(statuses.values()) == 6
    assert set(statuses) <= {"normal", "idle", "fault_suspected"}, line
    [(readings,)] = query(
        db,
        "SELECT count(*) FROM vehicle_readings_history WHERE (ts AT TIME ZONE 'UTC')::date = $1",
        (yesterday,),
    )
    assert readings == 6 * 1440
    assert "next: energy-pipelines ui" in done.stdout
