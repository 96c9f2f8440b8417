"""The landing sensor: launch an ingest run when settled files wait in landing storage."""

import hashlib
from typing import Any

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER
from energy_pipelines.defs.ingestion.assets import load_landing_files
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.landing.discover import find_waiting_files, sha256_of

MAX_FILES_PER_TICK = 500


def build_landing_sensor(job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Launches an ingest run for up to {MAX_FILES_PER_TICK} settled landing files per "
            "tick. The run key is the files' names and content hashes, so the same waiting "
            "files never start two runs; what was loaded is recorded in PostgreSQL's manifest, "
            "not in the cursor."
        ),
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, energy: EnergyStorage
    ) -> dg.SensorResult | dg.SkipReason:
        settings = energy.settings()
        budget = MAX_FILES_PER_TICK
        selected: dict[str, list[tuple[str, str]]] = {}
        for stream in STREAM_ORDER:
            if budget <= 0:
                break
            files = find_waiting_files(
                settings.landing_dir, stream, settings.settle_seconds, limit=budget
            )
            budget -= len(files)
            hashed = []
            for f in files:
                try:
                    hashed.append((f.relative_path, sha256_of(f.path)))
                except FileNotFoundError:
                    continue
            if hashed:
                selected[stream.name] = hashed
        if not selected:
            return dg.SkipReason("no settled files waiting in landing storage")
        digest = hashlib.sha256()
        for stream_name, files in sorted(selected.items()):
            for path, sha in files:
                digest.update(f"{stream_name}\0{path}\0{sha}\n".encode())
        paths = [path for name in sorted(selected) for path, _ in selected[name]]
        run_config = {"ops": {load_landing_files.node_def.name: {"config": {"paths": paths}}}}
        total = sum(len(v) for v in selected.values())
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=f"landing-{digest.hexdigest()[:32]}",
                    run_config=run_config,
                    tags={"energy/files": str(total)},
                )
            ]
        )

    return landing_sensor
