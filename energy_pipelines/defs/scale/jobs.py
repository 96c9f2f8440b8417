"""`ingest_units_job`: the waiting files cut into units (units.py), each unit a Dagster step of
its own, so that under the Celery executor different workers load them; then the hot-status
refresh and each stream's reconciliation once every unit is done.

Its first node is named `load_landing_files`, like the single-step ingest job's, and takes the
same config (`paths`): the landing sensor can request either job.
"""

from collections.abc import Iterator

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, STREAMS
from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS, LandingSelection
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.defs.scale.executors import units_executor
from energy_pipelines.hot_status.refresh import HOT_STREAMS, STATUS_TABLES, refresh_status
from energy_pipelines.load.reconcile import reconcile_run
from energy_pipelines.units import Unit, UnitResult, load_unit, plan_units

UNITS_JOB = "ingest_units_job"
PLANNER_NODE = "load_landing_files"


@dg.op(
    out=dg.DynamicOut(Unit),
    description="Lists each stream's settled landing files and cuts them into units.",
)
def plan_landing_units(
    context: dg.OpExecutionContext, config: LandingSelection, energy: EnergyStorage
) -> Iterator[dg.DynamicOutput[Unit]]:
    units = plan_units(energy.settings(), config.paths or None)
    for stream in STREAM_ORDER:
        mine = [u for u in units if u.stream == stream.name]
        if mine:
            files = sum(len(u.paths) for u in mine)
            context.log.info(f"{stream.name}: {files} files in {len(mine)} units")
    for unit in units:
        yield dg.DynamicOutput(unit, mapping_key=unit.key)


@dg.op(
    # A unit that failed (a worker that lost its database, a stale worker, a lock timeout) is
    # sent again; whichever worker takes it, its files load once.
    retry_policy=dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description="Loads one unit's files, each exactly once.",
)
def load_unit_files(
    context: dg.OpExecutionContext, unit: Unit, energy: EnergyStorage
) -> dg.Output[UnitResult]:
    result = load_unit(energy.settings(), unit, context.run_id)
    context.log.info(result.describe())
    return dg.Output(
        result,
        metadata={
            "stream": result.stream,
            "files": result.files,
            "loaded": result.loaded,
            "healed": result.healed,
            "skipped_duplicate": result.skipped_duplicate,
            "quarantined": result.quarantined,
            "already_done": result.already_done,
            **result.counts,
            "seconds": round(result.seconds, 3),
            "cpu_seconds": round(result.cpu_seconds, 3),
            "worker": result.worker,
            "started_at": result.started_at,
        },
    )


@dg.op(description="Folds the run's loads into the current-status tables; reconciles the run.")
def refresh_after_units(
    context: dg.OpExecutionContext, results: list[UnitResult], energy: EnergyStorage
) -> Iterator[dg.AssetMaterialization | dg.Output[int]]:
    loaded_streams = {r.stream for r in results}
    broken: list[str] = []
    with energy.connection() as conn:
        for name in sorted(loaded_streams):
            reconciliation = reconcile_run(conn, STREAMS[name], context.run_id)
            broken += reconciliation.files_not_reconciled
            yield dg.AssetMaterialization(
                HISTORY_ASSETS[name],
                metadata={
                    "files_checked": reconciliation.files_checked,
                    "units": sum(r.stream == name for r in results),
                    "rows_loaded": sum(
                        r.counts.get("rows_loaded", 0) for r in results if r.stream == name
                    ),
                },
            )
        for stream in HOT_STREAMS:
            refreshed = refresh_status(conn, stream)
            context.log.info(f"{stream.name}: {refreshed.files} new file(s) folded into status")
            yield dg.AssetMaterialization(
                STATUS_TABLES[stream.name], metadata={"new_files": refreshed.files}
            )
    if broken:
        raise dg.Failure(f"files that do not reconcile: {', '.join(broken[:20])}")
    yield dg.Output(sum(r.files for r in results))


@dg.job(
    name=UNITS_JOB,
    executor_def=units_executor(),
    description=(
        "Loads the settled landing files as units, each a step a worker can take "
        "(ENERGY_EXECUTOR=celery: Dagster's Celery executor), then refreshes hot status."
    ),
    tags={"energy/units": "true"},
)
def ingest_units_job() -> None:
    units = plan_landing_units.alias(PLANNER_NODE)()
    refresh_after_units(units.map(load_unit_files).collect())
