"""The compose stack's Celery part, as files: the broker, two workers with the settings of the
run's process, and the step outputs they pass to each other on a shared volume."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_units_on_two_workers_over_rabbitmq() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["rabbitmq"]["image"].startswith("rabbitmq:")
    assert "healthcheck" in services["rabbitmq"]
    run_env = services["user_code"]["environment"]
    assert run_env["ENERGY_EXECUTOR"] == "${ENERGY_EXECUTOR:-celery}"
    assert "@rabbitmq:5672/" in run_env["ENERGY_CELERY_BROKER"]
    hostnames = set()
    for name in ("worker_1", "worker_2"):
        worker = services[name]
        command = worker["command"]
        assert command[:4] == ["celery", "-A", "energy_pipelines.celery_app", "worker"]
        assert command[command.index("--queues") + 1] == run_env["ENERGY_CELERY_QUEUE"]
        assert command[command.index("--pool") + 1] == "solo"
        hostnames.add(command[command.index("--hostname") + 1])
        # The same broker, queue, database and Dagster storage as the run's process.
        assert worker["environment"] == run_env
        assert worker["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
        for volume in (
            "./landing:/opt/energy/landing",
            "dagster_storage:/opt/dagster/home/storage",
        ):
            assert volume in worker["volumes"]
            assert volume in services["user_code"]["volumes"]
    assert len(hostnames) == 2  # a worker's control queue is named after its hostname
