"""History assets: one per stream, each loading that stream's waiting landing files."""

import time

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.defs.resources import POSTGRES_WRITES_POOL, EnergyStorage
from energy_pipelines.ingest import FileOutcome, ingest_stream

INGESTION_GROUP = "ingestion"
COUNT_FIELDS = ("rows_read", "rows_loaded", "rows_rejected", "rows_duplicate", "rows_conflicting")


class LandingSelection(dg.Config):
    """Which waiting files to load; empty means every settled file of the stream."""

    paths: list[str] = []  # noqa: RUF012 (pydantic copies defaults)


def _files_table(outcomes: list[FileOutcome]) -> dg.TableMetadataValue:
    columns = ["path", "status", *COUNT_FIELDS, "error"]
    return dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "path": o.manifest.path,
                    "status": o.manifest.status,
                    **{c: int(getattr(o.manifest, c)) for c in COUNT_FIELDS},
                    "error": o.manifest.error or "",
                }
            )
            for o in outcomes
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn(c, "int" if c.startswith("rows_") else "string") for c in columns
            ]
        ),
    )


def _total_loaded(storage: EnergyStorage, stream: Stream) -> int:
    with storage.connection() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT coalesce(sum(rows_loaded), 0)::bigint FROM ingested_files WHERE stream = $1",
            (stream.name,),
        )
        return int(cur.fetchone()[0])


def _preview(storage: EnergyStorage, stream: Stream, file_ids: list[int]) -> str:
    if not file_ids:
        return "_no rows loaded in this run_"
    with storage.connection() as conn, conn.cursor() as cur:
        cur.execute(
            # The table name is a contract constant; the value travels as a parameter.
            f"SELECT * FROM {stream.table} WHERE file_id = $1 LIMIT 5",
            (file_ids[0],),
        )
        frame = cur.fetch_polars()
    if frame.height == 0:
        return "_no rows loaded in this run_"
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join([header, rule, *rows])


def build_history_asset(stream: Stream) -> dg.AssetsDefinition:
    @dg.asset(
        name=stream.table,
        group_name=INGESTION_GROUP,
        kinds={"polars", "pandera", "postgres"},
        description=(
            f"Append-only {stream.name} history loaded from landing/{stream.name}/: validated "
            "with Pandera, deduplicated, COPY-loaded through ADBC; one transaction per file."
        ),
        code_version="1",
        pool=POSTGRES_WRITES_POOL,
        owners=["team:data-engineering"],
    )
    def history_asset(
        context: dg.AssetExecutionContext, config: LandingSelection, energy: EnergyStorage
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        settings = energy.settings()
        with energy.connection() as conn:
            outcomes = ingest_stream(conn, stream, settings, context.run_id, config.paths or None)
        seconds = time.perf_counter() - started
        for o in outcomes:
            m = o.manifest
            context.log.info(
                f"{m.path}: {m.status}, read {m.rows_read}, loaded {m.rows_loaded}, "
                f"rejected {m.rows_rejected}, duplicate {m.rows_duplicate}, "
                f"conflicting {m.rows_conflicting}" + (f" ({m.error})" if m.error else "")
            )
        totals = {c: sum(int(getattr(o.manifest, c)) for o in outcomes) for c in COUNT_FIELDS}
        extra = sorted({c for o in outcomes for c in o.manifest.extra_columns})
        loaded_ids = [o.file_id for o in outcomes if o.file_id and o.manifest.rows_loaded]
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": _total_loaded(energy, stream),
                "files": len(outcomes),
                "files_quarantined": sum(o.manifest.status == "quarantined" for o in outcomes),
                "files_skipped_duplicate": sum(
                    o.manifest.status == "skipped_duplicate" for o in outcomes
                ),
                **totals,
                "rows_per_second": round(totals["rows_read"] / seconds, 1) if seconds else 0.0,
                "seconds": round(seconds, 3),
                # Summed over files: where the time went (read, validate, transform, load).
                "stage_seconds": {
                    **{
                        stage: round(sum(o.stage_seconds.get(stage, 0.0) for o in outcomes), 3)
                        for stage in ("read", "validate", "transform", "load")
                    },
                    # Key index builds of the days loaded without one (sql/009).
                    "index": round(outcomes.index_seconds, 3),
                },
                "ignored_extra_columns": ", ".join(extra) or "none",
                "days_touched": ", ".join(
                    sorted({d.isoformat() for o in outcomes for d in o.manifest.days_touched})
                )
                or "none",
                "per_file": _files_table(outcomes),
                "preview": dg.MetadataValue.md(_preview(energy, stream, loaded_ids)),
            }
        )

    return history_asset


HISTORY_ASSETS = {stream.name: build_history_asset(stream) for stream in STREAM_ORDER}
