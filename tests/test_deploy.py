"""The docker-compose stack as files: what it starts, and that it keeps the UI off the network."""

from __future__ import annotations

from pathlib import Path

import yaml

from energy_pipelines.load.database import INGEST_SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def test_compose_stack_has_the_services_storage_and_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "user_code", "webserver", "daemon"}
    assert int(services["postgres"]["image"].split(":")[1]) >= 16
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    assert "grpc" in services["user_code"]["command"]
    for name in ("user_code", "daemon"):
        assert "./landing:/opt/energy/landing" in services[name]["volumes"]
    # The server runs with the same ingest settings as the embedded one.
    command = " ".join(services["postgres"]["command"])
    for setting in INGEST_SETTINGS:
        assert f"{setting}={INGEST_SETTINGS[setting]}" in command


def test_dagster_instances_keep_retries_and_the_postgres_writes_pool() -> None:
    deploy = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    local = yaml.safe_load((ROOT / ".dagster_home" / "dagster.yaml").read_text())
    assert "postgres" in deploy["storage"]
    for instance in (deploy, local):
        assert instance["run_retries"]["enabled"] is True
        assert instance["concurrency"]["pools"]["granularity"] == "run"
        assert instance["concurrency"]["pools"]["default_limit"] >= 1
