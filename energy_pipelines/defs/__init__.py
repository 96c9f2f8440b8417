"""Dagster definitions: thin wiring around the stage functions. `dagster dev -w workspace.yaml`."""

from __future__ import annotations

import dagster as dg

from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS
from energy_pipelines.defs.ingestion.checks import RECONCILE_CHECKS
from energy_pipelines.defs.ingestion.sensors import build_landing_sensor
from energy_pipelines.defs.resources import EnergyStorage

ingest_job = dg.define_asset_job(
    name="ingest_job",
    selection=dg.AssetSelection.assets(*HISTORY_ASSETS.values()),
    description="Load every settled landing file into history, exactly once.",
)

defs = dg.Definitions(
    assets=list(HISTORY_ASSETS.values()),
    asset_checks=RECONCILE_CHECKS,
    jobs=[ingest_job],
    sensors=[build_landing_sensor(ingest_job)],
    resources={"energy": EnergyStorage()},
)
