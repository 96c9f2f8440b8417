"""The docker-compose stack as files: what it starts, and that it keeps the UI off the network."""

from __future__ import annotations

from pathlib import Path

import yaml

from energy_pipelines.load.server_settings import (
    REFERENCE_MACHINE,
    Machine,
    ingest_settings,
)

ROOT = Path(__file__).resolve().parent.parent


def test_compose_stack_has_the_services_storage_and_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {
        *("postgres", "user_code", "webserver", "daemon"),
        *("rabbitmq", "worker_1", "worker_2"),
    }
    assert int(services["postgres"]["image"].split(":")[1]) >= 16
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    assert "grpc" in services["user_code"]["command"]
    for name in ("user_code", "daemon"):
        assert "./landing:/opt/energy/landing" in services[name]["volumes"]
    # The server's defaults are the ingest settings for the machine compose is written for,
    # each one overridable from .env (`energy-pipelines db settings --format compose-env`).
    command = " ".join(services["postgres"]["command"])
    for name, value in ingest_settings(REFERENCE_MACHINE).items():
        assert f"{name}=${{ENERGY_PG_{name.upper()}:-{value}}}" in command


def test_ingest_settings_follow_the_machine() -> None:
    gib = 2**30
    # The reference machine gets the settings the bench measured best there.
    reference = ingest_settings(Machine(24 * gib, 2))
    assert {k: reference[k] for k in ("shared_buffers", "maintenance_work_mem", "work_mem")} == {
        "shared_buffers": "2GB",
        "maintenance_work_mem": "1GB",
        "work_mem": "64MB",
    }
    assert reference["max_parallel_maintenance_workers"] == "0"
    big = ingest_settings(Machine(128 * gib, 16))
    assert big["max_parallel_maintenance_workers"] == "7"
    assert big["maintenance_work_mem"] == "2GB"  # capped
    # Both streams' key builds at once fit in the parallel pool, with room left beside it.
    assert int(big["max_worker_processes"]) > int(big["max_parallel_workers"]) >= 2 * 7
    small = ingest_settings(Machine(2 * gib, 1))
    assert small["shared_buffers"] == "170MB"
    assert small["max_wal_size"] == "4GB"


def test_dagster_instances_keep_retries_and_the_postgres_writes_pool() -> None:
    deploy = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    local = yaml.safe_load((ROOT / ".dagster_home" / "dagster.yaml").read_text())
    assert "postgres" in deploy["storage"]
    for instance in (deploy, local):
        assert instance["run_retries"]["enabled"] is True
        assert instance["concurrency"]["pools"]["granularity"] == "run"
        assert instance["concurrency"]["pools"]["default_limit"] >= 1


def test_db_settings_prints_the_rules_for_another_machine() -> None:
    import subprocess
    import sys

    command = [sys.executable, "-m", "energy_pipelines.cli", "db", "settings"]
    done = subprocess.run(
        [*command, "--memory-gb", "24", "--cores", "2", "--format", "compose-env"],
        capture_output=True,
        text=True,
        check=True,
    )
    expected = ingest_settings(REFERENCE_MACHINE)
    for name, value in expected.items():
        assert f"ENERGY_PG_{name.upper()}={value}" in done.stdout
    sql = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "ALTER SYSTEM SET shared_buffers = " in sql
