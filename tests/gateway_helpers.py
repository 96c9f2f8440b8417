"""Helpers shared by the gateway's tests: readings, a gateway served in a thread or run as its
own process, and what it landed or spooled."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pyarrow.parquet as pq
import uvicorn

from energy_pipelines.gateway.app import create_app
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.gateway.spool import Spool
from energy_pipelines.settings import Settings

METER_URL = "/v1/ingestion/meter"
VEHICLE_URL = "/v1/ingestion/vehicle"
CORRELATE_URL = "/v1/ingestion/correlate"


def meter(meter_id: str, minute: int, kwh: float = 1.0, voltage: float = 230.0) -> dict:
    ts = f"2026-02-11T10:{minute:02d}:00Z"
    return {"meterId": meter_id, "kwhConsumedAc": kwh, "voltage": voltage, "timestamp": ts}


def vehicle(vehicle_id: str, minute: int, dc: float = 0.9) -> dict:
    ts = f"2026-02-11T10:{minute:02d}:00Z"
    return {
        "vehicleId": vehicle_id,
        "soc": 50 + minute % 40,
        "kwhDeliveredDc": dc,
        "batteryTemp": 25.5,
        "timestamp": ts,
    }


@dataclass
class RunningGateway:
    url: str
    config: GatewayConfig
    spool: Spool


@contextmanager
def serve_in_thread(config: GatewayConfig) -> Iterator[RunningGateway]:
    """uvicorn in a thread on a free loopback port; leaving the block stops it cleanly."""
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", config, app.state.gateway.spool)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive()


@contextmanager
def client_for(config: GatewayConfig) -> Iterator[httpx.Client]:
    """A client of the gateway served on loopback; leaving the block stops the gateway, which
    rolls the spool into landing."""
    with serve_in_thread(config) as gw, httpx.Client(base_url=gw.url) as client:
        yield client


def spooled_lines(config: GatewayConfig) -> int:
    return sum(len(path.read_bytes().splitlines()) for path in config.spool_dir.rglob("*.jsonl"))


def gateway_config(settings: Settings, **changes: Any) -> GatewayConfig:
    config = GatewayConfig(
        settings=settings, spool_dir=settings.landing_dir / "_gateway_spool", roll_seconds=3600
    )
    return replace(config, **changes)


def landed_files(landing: Path, stream: str) -> list[Path]:
    return sorted((landing / stream / "http").glob("*.parquet"))


def landed_rows(landing: Path, stream: str) -> list[dict]:
    return [
        row for path in landed_files(landing, stream) for row in pq.read_table(path).to_pylist()
    ]


def spool_lines(config: GatewayConfig, stream: str) -> list[bytes]:
    return [
        line
        for path in sorted((config.spool_dir / stream).glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


# How the schemathesis tests draw requests from the OpenAPI document: a few, the same each run.
SCHEMA_CASES = hypothesis.settings(
    max_examples=12,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(hypothesis.HealthCheck),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env_for(landing: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a gateway or CLI process: this test's landing and state only, and
    `extra` variables."""
    variables = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ENERGY_") and k not in ("PORT", "DATABASE_URL")
    }
    variables.update(
        ENERGY_LANDING_DIR=str(landing),
        ENERGY_STATE_DIR=str(tmp_path / "state"),
        ENERGY_SETTLE_SECONDS="0",
        ENERGY_GATEWAY_ROLL_SECONDS="3600",
        **extra,
    )
    return variables


def start_gateway(
    env: dict[str, str], log: Path, *args: str
) -> tuple[subprocess.Popen[bytes], str]:
    """`energy-pipelines gateway ARGS` as its own process, up, on the port PORT names."""
    port = free_port()
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "energy_pipelines.cli", "gateway", *args],
            env={**env, "PORT": str(port)},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, log.read_text()
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError("the gateway did not come up")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "energy_pipelines.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
