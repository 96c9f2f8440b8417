"""History assets, one per stream, materialized by one step that loads the streams' waiting
landing files side by side (one PostgreSQL session per stream, on a thread or in a worker
process: ingest/streams.py), each stream reconciled on its own session when it is done."""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, STREAMS, Stream
from energy_pipelines.defs.analytics.partitions import add_day_partitions
from energy_pipelines.defs.ingestion.checks import (
    RECONCILE_SPECS,
    reconcile_check_key,
    reconcile_latest_run,
    reconcile_results,
)
from energy_pipelines.defs.ingestion.metadata import (
    RejectionReason,
    log_outcomes,
    materialization_metadata,
    needs_a_look,
    rejection_reasons,
)
from energy_pipelines.defs.resources import POSTGRES_WRITES_POOL, EnergyStorage
from energy_pipelines.ingest.streams import StreamJob, StreamLoad, load_streams
from energy_pipelines.load.reconcile import Reconciliation

INGESTION_GROUP = "ingestion"


class LandingSelection(dg.Config):
    """Which waiting files to load, as landing-relative paths ("meter/gw-1/a.csv"); empty means
    every settled file of every selected stream."""

    paths: list[str] = []  # noqa: RUF012 (pydantic copies defaults)

    def for_stream(self, stream: Stream) -> list[str] | None:
        if not self.paths:
            return None
        return [p for p in self.paths if p.startswith(stream.name + "/")]


# The folders gateways write to: external source assets (Dagster never writes them), so the
# lineage starts where the data does. landing_sensor watches them.
LANDING_SPECS = {
    stream.name: dg.AssetSpec(
        key=dg.AssetKey(["landing", stream.name]),
        group_name=INGESTION_GROUP,
        kinds={"parquet", "csv"},
        description=(
            f"Files gateways drop under landing/{stream.name}/ in ENERGY_LANDING_DIR (any "
            "sub-folder): .parquet, .csv or .csv.gz, written under a temporary name and then "
            "renamed. Loaded files move to landing/_archive/, unreadable ones to "
            "landing/_quarantine/."
        ),
        metadata={
            "dagster/column_schema": dg.TableSchema(
                columns=[
                    dg.TableColumn(f.file_name, f.kind, description=f"stored as {f.column}")
                    for f in stream.fields
                ]
            ),
        },
        owners=["team:data-engineering"],
    )
    for stream in STREAM_ORDER
}

HISTORY_SPECS = {
    stream.name: dg.AssetSpec(
        key=stream.table,
        group_name=INGESTION_GROUP,
        kinds={"polars", "pandera", "postgres"},
        deps=[LANDING_SPECS[stream.name]],
        description=(
            f"Append-only {stream.name} history loaded from landing/{stream.name}/: validated "
            "with Pandera, deduplicated, COPY-loaded through ADBC; one transaction per file."
        ),
        code_version="2",
        owners=["team:data-engineering"],
    )
    for stream in STREAM_ORDER
}
# Asset keys by stream name, for the checks and downstream assets that depend on history.
HISTORY_ASSETS = {name: spec.key for name, spec in HISTORY_SPECS.items()}


def _reconcile_only(
    energy: EnergyStorage, stream: Stream
) -> tuple[str | None, Reconciliation | None]:
    # The check selected without its asset: its own run loads nothing, so it checks the
    # stream's latest run that did.
    with energy.connection() as conn:
        return reconcile_latest_run(conn, stream)


def _materialization(
    context: dg.AssetExecutionContext, energy: EnergyStorage, stream: Stream, load: StreamLoad
) -> dg.MaterializeResult:
    log_outcomes(context.log, stream, load.outcomes)
    landing_root = energy.settings().landing_dir
    reasons: list[RejectionReason] = []
    if any(needs_a_look(o) for o in load.outcomes):
        with energy.connection() as conn:
            reasons = rejection_reasons(conn, load.outcomes, landing_root)
    return dg.MaterializeResult(
        asset_key=stream.table,
        metadata=materialization_metadata(load, landing_root, reasons),
    )


@dg.multi_asset(
    name="load_landing_files",
    specs=list(HISTORY_SPECS.values()),
    check_specs=RECONCILE_SPECS,
    can_subset=True,
    pool=POSTGRES_WRITES_POOL,
    description=(
        "Loads each selected stream's waiting landing files into its history table; the "
        "streams load side by side, each file exactly once in its own transaction, and each "
        "is reconciled (rows_reconcile) as soon as it is done."
    ),
)
def load_landing_files(
    context: dg.AssetExecutionContext, config: LandingSelection, energy: EnergyStorage
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    streams = [s for s in STREAM_ORDER if dg.AssetKey(s.table) in context.selected_asset_keys]
    checked = {
        s for s in STREAM_ORDER if reconcile_check_key(s) in context.selected_asset_check_keys
    }
    # Streams never share a lock or a table: they load side by side (ingest/streams.py).
    jobs = [StreamJob(s.name, config.for_stream(s), s in checked) for s in streams]
    failed: list[str] = []
    days: set[date] = set()
    for job, load in load_streams(energy.settings(), jobs, context.run_id):
        stream = STREAMS[job.stream]
        if isinstance(load, Exception):
            failed.append(f"{stream.table}: {str(load).strip()}")
            continue
        yield _materialization(context, energy, stream, load)
        days.update(
            d
            for o in load.outcomes
            if o.manifest.status == "loaded"
            for d in o.manifest.days_touched
        )
        if stream in checked:
            yield from reconcile_results(context.log, stream, load.reconciliation, context.run_id)
    for stream in sorted(checked - set(streams), key=STREAM_ORDER.index):
        run_checked, reconciliation = _reconcile_only(energy, stream)
        yield from reconcile_results(context.log, stream, reconciliation, run_checked)
    # The daily partitions are the days loaded data touched (partitions.py).
    add_day_partitions(context.instance, days)
    if failed:
        # Loaded files stay loaded (one transaction each); the others wait for the next run.
        raise RuntimeError("; ".join(failed))
