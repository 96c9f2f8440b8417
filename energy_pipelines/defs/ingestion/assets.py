"""History assets, one per stream, materialized by one step that loads the streams' waiting
landing files side by side (one PostgreSQL session per stream, on a thread or in a worker
process: ingest/streams.py), each stream reconciled on its own session when it is done."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, STREAMS, Stream
from energy_pipelines.defs.ingestion.checks import (
    RECONCILE_SPECS,
    reconcile_check_key,
    reconcile_latest_run,
    reconcile_results,
)
from energy_pipelines.defs.resources import POSTGRES_WRITES_POOL, EnergyStorage
from energy_pipelines.ingest import FileOutcome
from energy_pipelines.ingest.streams import StreamJob, StreamLoad, load_streams
from energy_pipelines.load.reconcile import Reconciliation

INGESTION_GROUP = "ingestion"
COUNT_FIELDS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "rows_conflicting")


class LandingSelection(dg.Config):
    """Which waiting files to load, as landing-relative paths ("meter/gw-1/a.csv"); empty means
    every settled file of every selected stream."""

    paths: list[str] = []  # noqa: RUF012 (pydantic copies defaults)

    def for_stream(self, stream: Stream) -> list[str] | None:
        if not self.paths:
            return None
        return [p for p in self.paths if p.startswith(stream.name + "/")]


_LOGGED_FILES = 50
# Rows of the per-file table: files that need a look first.
_TABLE_FILES = 500


def _needs_a_look(outcome: FileOutcome) -> bool:
    m = outcome.manifest
    return m.status != "loaded" or bool(m.rows_rejected or m.rows_conflicting or m.error)


def _table_files(outcomes: list[FileOutcome]) -> list[FileOutcome]:
    """The files the per-file table shows: those that need a look, then the others, at most
    _TABLE_FILES (a run of thousands of gateway files has them all in the manifest)."""
    ordered = [o for o in outcomes if _needs_a_look(o)] + [
        o for o in outcomes if not _needs_a_look(o)
    ]
    return ordered[:_TABLE_FILES]


# Outcome, counts and reason first, the path last: a long path must not push what happened to
# the file out of sight. Paths are the manifest's, relative to the landing root.
FILE_TABLE_COLUMNS = ("status", *COUNT_FIELDS, "error", "path")


def _files_table(outcomes: list[FileOutcome], landing_root: Path) -> dg.TableMetadataValue:
    # An OS error names the file by its full path: shown relative, like the path column.
    root = f"{landing_root}/"
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "status": o.manifest.status,
                    **{c: int(getattr(o.manifest, c)) for c in COUNT_FIELDS},
                    "error": (o.manifest.error or "").replace(root, ""),
                    "path": o.manifest.path,
                }
            )
            for o in _table_files(outcomes)
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn(
                    c,
                    "int" if c.startswith("rows_") else "string",
                    description="relative to the landing root" if c == "path" else None,
                )
                for c in FILE_TABLE_COLUMNS
            ]
        ),
    )


HISTORY_SPECS = {
    stream.name: dg.AssetSpec(
        key=stream.table,
        group_name=INGESTION_GROUP,
        kinds={"polars", "pandera", "postgres"},
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
    context: dg.AssetExecutionContext, stream: Stream, load: StreamLoad, landing_root: Path
) -> dg.MaterializeResult:
    outcomes, seconds = load.outcomes, load.seconds
    # A log line is an event in Dagster's storage: one per file would cost more than loading
    # thousands of small gateway files. Files that need a look are logged (the first ones);
    # every file is in the manifest and in the per-file table.
    noteworthy = [o for o in outcomes if _needs_a_look(o)]
    for o in noteworthy[:_LOGGED_FILES]:
        m = o.manifest
        context.log.info(
            f"{m.path}: {m.status}, read {m.rows_read}, loaded {m.rows_loaded}, "
            f"rejected {m.rows_rejected}, duplicate {m.rows_duplicate}, "
            f"conflicting {m.rows_conflicting}" + (f" ({m.error})" if m.error else "")
        )
    context.log.info(
        f"{stream.name}: {len(outcomes)} files, {len(outcomes) - len(noteworthy)} loaded clean"
        + (f", {len(noteworthy)} with rejects, conflicts or another outcome" if noteworthy else "")
    )
    totals = {c: sum(int(getattr(o.manifest, c)) for o in outcomes) for c in COUNT_FIELDS}
    extra = sorted({c for o in outcomes for c in o.manifest.extra_columns})
    return dg.MaterializeResult(
        asset_key=stream.table,
        metadata={
            "dagster/row_count": load.total_loaded,
            "files": len(outcomes),
            "files_quarantined": sum(o.manifest.status == "quarantined" for o in outcomes),
            "files_skipped_duplicate": sum(
                o.manifest.status == "skipped_duplicate" for o in outcomes
            ),
            **totals,
            "rows_per_second": round(totals["rows_read"] / seconds, 1) if seconds else 0.0,
            "seconds": round(seconds, 3),
            # Where the time went: per-file stages summed over files, then the key index
            # builds of the days and hours loaded without one (sql/009, sql/013).
            "stage_seconds": {
                **{
                    stage: round(sum(o.stage_seconds.get(stage, 0.0) for o in outcomes), 3)
                    for stage in ("read", "validate", "transform", "load")
                },
                "index": round(outcomes.index_seconds, 3),
            },
            "ignored_extra_columns": ", ".join(extra) or "none",
            "days_touched": ", ".join(
                sorted({d.isoformat() for o in outcomes for d in o.manifest.days_touched})
            )
            or "none",
            "per_file": _files_table(outcomes, landing_root),
            "per_file_rows_shown": min(len(outcomes), _TABLE_FILES),
            "preview": dg.MetadataValue.md(load.preview),
        },
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
    for job, load in load_streams(energy.settings(), jobs, context.run_id):
        stream = STREAMS[job.stream]
        if isinstance(load, Exception):
            failed.append(f"{stream.table}: {str(load).strip()}")
            continue
        yield _materialization(context, stream, load, energy.settings().landing_dir)
        if stream in checked:
            yield from reconcile_results(context.log, stream, load.reconciliation, context.run_id)
    for stream in sorted(checked - set(streams), key=STREAM_ORDER.index):
        run_checked, reconciliation = _reconcile_only(energy, stream)
        yield from reconcile_results(context.log, stream, reconciliation, run_checked)
    if failed:
        # Loaded files stay loaded (one transaction each); the others wait for the next run.
        raise RuntimeError("; ".join(failed))
