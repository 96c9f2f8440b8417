"""The landing sensor: launch an ingest run when settled files wait in landing storage."""

import hashlib
import time
from typing import Any

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER
from energy_pipelines.defs.ingestion.assets import load_landing_files
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.landing.discover import LandingFile, find_waiting_files
from energy_pipelines.settings import SensorRetry

# The digest of the waiting files a run was requested for, on every attempt for them.
FILES_TAG = "energy/landing_files"
ATTEMPT_TAG = "energy/attempt"
# Earlier runs looked at for one set of files: more attempts than this count as this many.
_RUNS_LOOKED_AT = 50
# Dagster's run retries (dagster.yaml): a failed run about to be retried, and its retry.
_WILL_RETRY_TAG = "dagster/will_retry"
_AUTO_RETRY_TAG = "dagster/auto_retry_run_id"


def build_landing_sensor(job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name="landing_sensor",
        job=job,
        # A tick lists and stats the waiting files (no hashing): cheap enough every 10 s, and
        # the interval is most of a file's wait before its run exists.
        minimum_interval_seconds=10,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Launches an ingest run for the settled landing files, up to "
            "ENERGY_MAX_FILES_PER_RUN per stream (each stream its own share). The run key is "
            "the files' paths, sizes and modification times, so the same waiting files never "
            "start two runs at once; when a run for them ended and they still wait (it failed, "
            "or could not move them), they are requested again with the attempt in the run key, "
            "after a back-off that doubles per attempt (ENERGY_SENSOR_RETRY_SECONDS, at most "
            "ENERGY_SENSOR_RETRY_MAX_SECONDS). What was loaded is recorded in PostgreSQL's "
            "manifest, not in the cursor."
        ),
    )
    def landing_sensor(
        context: dg.SensorEvaluationContext, energy: EnergyStorage
    ) -> dg.SensorResult | dg.SkipReason:
        settings = energy.settings()
        selected: dict[str, list[LandingFile]] = {}
        waiting = 0
        claimed = _claimed_paths(context, job.name)
        for stream in STREAM_ORDER:
            files = find_waiting_files(settings.landing_dir, stream, settings.settle_seconds)
            # Files a queued or running run already holds are its to load.
            files = [f for f in files if f.relative_path not in claimed]
            waiting += max(0, len(files) - settings.max_files_per_run)
            if files:
                selected[stream.name] = files[: settings.max_files_per_run]
        if not selected:
            if claimed:
                return dg.SkipReason(
                    f"the {len(claimed)} settled files waiting belong to runs queued or running"
                )
            return dg.SkipReason("no settled files waiting in landing storage")
        files_key = _files_key(selected)
        total = sum(len(v) for v in selected.values())
        _log_clock_notes(context, selected)
        if waiting:
            context.log.info(f"{waiting} more settled files wait for the next run")
        earlier = _earlier_runs(context, files_key)
        attempt = len(earlier) + 1
        if earlier:
            not_yet = _not_yet(earlier, settings.sensor_retry, total)
            if not_yet is not None:
                return dg.SkipReason(not_yet)
            context.log.info(
                f"{total} files still wait after run {earlier[0].dagster_run.run_id} "
                f"({earlier[0].dagster_run.status.value}): requesting them again, "
                f"attempt {attempt}"
            )
        paths = [f.relative_path for name in sorted(selected) for f in selected[name]]
        run_config = {"ops": {load_landing_files.node_def.name: {"config": {"paths": paths}}}}
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    run_key=files_key if attempt == 1 else f"{files_key}-attempt{attempt}",
                    run_config=run_config,
                    tags={
                        "energy/files": str(total),
                        "energy/files_waiting_after": str(waiting),
                        FILES_TAG: files_key,
                        ATTEMPT_TAG: str(attempt),
                    },
                )
            ]
        )

    return landing_sensor


def _files_key(selected: dict[str, list[LandingFile]]) -> str:
    digest = hashlib.sha256()
    for stream_name, files in sorted(selected.items()):
        for f in files:
            digest.update(f"{stream_name}\0{f.relative_path}\0{f.size_bytes}\0".encode())
            digest.update(f"{f.modified_ns}\n".encode())
    return f"landing-{digest.hexdigest()[:32]}"


_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _claimed_paths(context: dg.SensorEvaluationContext, job_name: str) -> set[str]:
    """The landing paths of the job's runs that have not finished (queued or running)."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:
        return set()
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name=job_name, statuses=_UNFINISHED),
        limit=_RUNS_LOOKED_AT,
    )
    op = load_landing_files.node_def.name
    claimed: set[str] = set()
    for record in records:
        config = record.dagster_run.run_config or {}
        claimed.update(config.get("ops", {}).get(op, {}).get("config", {}).get("paths", []))
    return claimed


def _earlier_runs(context: dg.SensorEvaluationContext, files_key: str) -> list[Any]:
    """Runs requested for these same waiting files, newest first (none without an instance,
    as when a test evaluates the sensor on its own)."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:
        return []
    return list(
        instance.get_run_records(
            filters=dg.RunsFilter(tags={FILES_TAG: files_key}), limit=_RUNS_LOOKED_AT
        )
    )


def _not_yet(earlier: list[Any], retry: SensorRetry, total: int) -> str | None:
    """Why the files are not requested again now (a run for them is still going, or the
    back-off after the last one has not passed), or None."""
    going = [r for r in earlier if not r.dagster_run.is_finished]
    if going:
        run = going[0].dagster_run
        return f"run {run.run_id} for these {total} files is {run.status.value.lower()}"
    latest = earlier[0]
    tags = latest.dagster_run.tags
    if tags.get(_WILL_RETRY_TAG) == "true" and _AUTO_RETRY_TAG not in tags:
        return f"run {latest.dagster_run.run_id} failed and Dagster's run retry will start it again"
    ended = latest.end_time or latest.update_timestamp.timestamp()
    delay = retry.delay(len(earlier))
    left = ended + delay - time.time()
    if left <= 0:
        return None
    status = latest.dagster_run.status
    how = {
        dg.DagsterRunStatus.FAILURE: "failed run",
        dg.DagsterRunStatus.CANCELED: "canceled run",
    }.get(status, "run (which left them waiting)")
    return (
        f"retrying after {how} {latest.dagster_run.run_id} in {left:.0f} s: attempt "
        f"{len(earlier) + 1} for these {total} files, {delay:g} s after the last one ended "
        "(the back-off doubles per attempt, ENERGY_SENSOR_RETRY_SECONDS, at most "
        "ENERGY_SENSOR_RETRY_MAX_SECONDS)"
    )


def _log_clock_notes(
    context: dg.SensorEvaluationContext, selected: dict[str, list[LandingFile]]
) -> None:
    dated_ahead = [f for files in selected.values() for f in files if f.clock_note]
    if dated_ahead:
        first = dated_ahead[0]
        context.log.warning(
            f"{len(dated_ahead)} waiting files carry a modification time in the future; "
            f"e.g. {first.relative_path}: {first.clock_note}"
        )
