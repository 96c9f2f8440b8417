"""The landing sensor: launch an ingest run when settled files wait in landing storage."""

import hashlib
from typing import Any

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER
from energy_pipelines.defs.ingestion.assets import load_landing_files
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.landing.discover import find_waiting_files


def build_landing_sensor(job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Launches an ingest run for the settled landing files, up to "
            "ENERGY_MAX_FILES_PER_RUN per stream (each stream its own share). The run key is "
            "the files' paths, sizes and modification times, so the same waiting files never "
            "start two runs; what was loaded is recorded in PostgreSQL's manifest, not in the "
            "cursor."
        ),
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, energy: EnergyStorage
    ) -> dg.SensorResult | dg.SkipReason:
        settings = energy.settings()
        selected: dict[str, list[Any]] = {}
        waiting = 0
        for stream in STREAM_ORDER:
            files = find_waiting_files(settings.landing_dir, stream, settings.settle_seconds)
            waiting += max(0, len(files) - settings.max_files_per_run)
            if files:
                selected[stream.name] = files[: settings.max_files_per_run]
        if not selected:
            return dg.SkipReason("no settled files waiting in landing storage")
        digest = hashlib.sha256()
        for stream_name, files in sorted(selected.items()):
            for f in files:
                digest.update(f"{stream_name}\0{f.relative_path}\0{f.size_bytes}\0".encode())
                digest.update(f"{f.modified_ns}\n".encode())
        paths = [f.relative_path for name in sorted(selected) for f in selected[name]]
        run_config = {"ops": {load_landing_files.node_def.name: {"config": {"paths": paths}}}}
        total = sum(len(v) for v in selected.values())
        if waiting:
            context.log.info(f"{waiting} more settled files wait for the next run")
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"landing-{digest.hexdigest()[:32]}",
                    run_config=run_config,
                    tags={"energy/files": str(total), "energy/files_waiting_after": str(waiting)},
                )
            ]
        )

    return landing_sensor
