"""deploy/k8s/ against dagster-k8s's own config schema: the instance file (storage, the
K8sRunLauncher) and the run config of ingest_units_job on k8s_job_executor. A cluster is not
needed to check them, and a misspelt or misplaced key fails."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
ENV = {
    "DAGSTER_PG_HOST": "postgres",
    "DAGSTER_PG_USER": "dagster",
    "DAGSTER_PG_PASSWORD": "secret",
    "DAGSTER_PG_DB": "dagster",
}


@pytest.fixture(autouse=True)
def _pg_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def _configurable_errors(section: dict[str, Any]) -> list[str]:
    """Errors of a `module`/`class`/`config` section against the class's own schema."""
    cls = getattr(importlib.import_module(section["module"]), section["class"])
    result = process_config(cls.config_type(), section.get("config") or {})
    return [] if result.success else [e.message for e in result.errors]


def test_the_instance_file_is_valid_for_dagster_and_the_k8s_run_launcher(tmp_path: Path) -> None:
    config, _ = dagster_instance_config(str(K8S))
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    assert _configurable_errors(launcher) == []
    from dagster_postgres.storage import DagsterPostgresStorage

    storage = process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"])
    assert storage.success, storage.errors


def test_a_misspelt_launcher_key_is_refused(tmp_path: Path) -> None:
    raw = yaml.safe_load((K8S / "dagster.yaml").read_text())
    raw["run_launcher"]["config"]["job_namespaces"] = raw["run_launcher"]["config"].pop(
        "job_namespace"
    )
    errors = _configurable_errors(raw["run_launcher"])
    assert any("job_namespaces" in e for e in errors), errors


def _units_job_on_k8s(monkeypatch: pytest.MonkeyPatch) -> dg.JobDefinition:
    """ingest_units_job with the executor ENERGY_EXECUTOR=k8s selects."""
    from energy_pipelines.defs.resources import EnergyStorage
    from energy_pipelines.defs.scale.executors import units_executor
    from energy_pipelines.defs.scale.jobs import ingest_units_job

    monkeypatch.setenv("ENERGY_EXECUTOR", "k8s")
    executor = units_executor()
    assert executor.name == "k8s"
    return ingest_units_job.graph.to_job(
        name="ingest_units_job", executor_def=executor, resource_defs={"energy": EnergyStorage()}
    )


def test_the_run_config_is_valid_for_the_units_job_on_k8s_job_executor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = _units_job_on_k8s(monkeypatch)
    run_config = yaml.safe_load((K8S / "run-config.yaml").read_text())
    resolved = dg.validate_run_config(job, run_config)
    assert resolved["execution"]["k8s"]["max_concurrent"] == 8


def test_a_misplaced_executor_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    job = _units_job_on_k8s(monkeypatch)
    run_config = yaml.safe_load((K8S / "run-config.yaml").read_text())
    run_config["execution"]["config"]["max_concurent"] = 8
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        dg.validate_run_config(job, run_config)
