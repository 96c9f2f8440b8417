"""The Dagster webserver as a user meets it: asset graph, checks, sensors, a launched run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import query
from tests.helpers import METER_HEADER, write_csv

REPO_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _graphql(port: int, document: str, variables: dict | None = None) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": document, "variables": variables or {}}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on `port`, from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


@pytest.fixture
def webserver(tmp_path: Path, database_url: str, landing: Path):  # type: ignore[no-untyped-def]
    home = tmp_path / "dagster_home"
    home.mkdir()
    # Runs launched from the UI start at once here (no daemon in the test to dequeue them).
    (home / "dagster.yaml").write_text(
        "run_coordinator:\n  module: dagster.core.run_coordinator\n"
        "  class: DefaultRunCoordinator\ntelemetry:\n  enabled: false\n"
    )
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ENERGY_")},
        "DAGSTER_HOME": str(home),
        "DATABASE_URL": database_url,
        "ENERGY_LANDING_DIR": str(landing),
        "ENERGY_SETTLE_SECONDS": "0",
    }
    webserver_bin = shutil.which("dagster-webserver", path=str(Path(sys.executable).parent))
    assert webserver_bin
    # No -h: the default bind address is part of what is tested. Started outside the repo
    # root, as a supervisor would start it.
    process = subprocess.Popen(
        [webserver_bin, "-w", str(REPO_ROOT / "workspace.yaml"), "-p", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        raise AssertionError("the webserver did not start")
    yield port
    process.terminate()
    process.wait(timeout=30)


def test_webserver_serves_graph_checks_sensors_and_runs_a_materialization(
    webserver: int, landing: Path, db
) -> None:
    port = webserver
    assert _listening_addresses(port) == {"127.0.0.1"}

    nodes = _graphql(
        port,
        "{ assetNodes { assetKey { path } groupName kinds dependencyKeys { path } } }",
    )["assetNodes"]
    graph = {n["assetKey"]["path"][-1]: n for n in nodes}
    assert graph["meter_readings_history"]["groupName"] == "ingestion"
    assert graph["vehicle_current_status"]["groupName"] == "hot_store"
    assert graph["daily_vehicle_efficiency"]["groupName"] == "analytics"
    assert {d["path"][-1] for d in graph["daily_vehicle_efficiency"]["dependencyKeys"]} == {
        "meter_readings_history",
        "vehicle_readings_history",
        "meter_vehicle_correlation",
    }

    repository = _graphql(
        port,
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { name"
        " location { name } sensors { name } schedules { name } } } } }",
    )["repositoriesOrError"]["nodes"][0]
    assert {s["name"] for s in repository["sensors"]} >= {
        "landing_sensor",
        "daily_analytics_sensor",
    }
    assert {s["name"] for s in repository["schedules"]} == {"nightly_retention"}

    checks = _graphql(
        port,
        '{ assetNodeOrError(assetKey: {path: ["meter_readings_history"]}) {'
        " ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name } } } } } }",
    )["assetNodeOrError"]["assetChecksOrError"]["checks"]
    assert [c["name"] for c in checks] == ["rows_reconcile"]

    write_csv(landing, "meter", "ui.csv", METER_HEADER, ["m-1,0.5,230,2026-02-11T10:30:00Z"])
    launched = _graphql(
        port,
        """mutation Launch($params: ExecutionParams!) {
             launchRun(executionParams: $params) {
               __typename
               ... on LaunchRunSuccess { run { runId } }
               ... on PythonError { message }
             }
           }""",
        {
            "params": {
                "selector": {
                    "repositoryLocationName": repository["location"]["name"],
                    "repositoryName": repository["name"],
                    "jobName": "ingest_job",
                },
                "runConfigData": {},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 120
    status = None
    while time.monotonic() < deadline:
        status = _graphql(
            port, f'{{ runOrError(runId: "{run_id}") {{ ... on Run {{ status }} }} }}'
        )["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    assert query(db, "SELECT meter_id FROM meter_readings_history") == [("m-1",)]
