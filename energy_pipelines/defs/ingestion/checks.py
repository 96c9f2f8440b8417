"""Reconciliation check: every row of every file the run loaded is accounted for.

It runs inside `load_landing_files`, on each stream's own thread and session right after that
stream's files (and new days' indexes) are done, so one stream's count overlaps the other's
load instead of waiting for a step of its own.

A reconciliation with no loaded file to count emits no result: Dagster shows the check as
Skipped (its only native "did not check" outcome; a result is either passed or failed), and the
run's log says why. A pass therefore always means at least one file was counted."""

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.load.database import Connection
from energy_pipelines.load.reconcile import Reconciliation, reconcile_run

RECONCILE_CHECK = "rows_reconcile"


def reconcile_check_key(stream: Stream) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(stream.table), RECONCILE_CHECK)


RECONCILE_SPECS = [
    dg.AssetCheckSpec(
        RECONCILE_CHECK,
        asset=stream.table,
        description=(
            "For each file the run loaded: rows_read = loaded + rejected + duplicate + "
            "conflicting, and history and quarantine hold exactly the loaded, rejected "
            "and conflicting rows. Run on its own, it checks the stream's latest run that "
            "loaded files. Skipped (with the reason in the run's log) when there is no loaded "
            "file to check."
        ),
        blocking=True,
    )
    for stream in STREAM_ORDER
]


def reconcile_result(
    stream: Stream, result: Reconciliation, run_checked: str
) -> dg.AssetCheckResult:
    broken = result.files_not_reconciled
    description = (
        f"{len(broken)} of {result.files_checked} loaded files do not reconcile"
        if broken
        else f"{result.files_checked} of {result.files_checked} loaded files reconcile"
    )
    return dg.AssetCheckResult(
        asset_key=stream.table,
        check_name=RECONCILE_CHECK,
        passed=not broken,
        description=f"{description} (run {run_checked})",
        metadata={
            "run_checked": run_checked,
            "files_checked": result.files_checked,
            "files_not_reconciled": ", ".join(broken) or "none",
        },
    )


def reconcile_results(
    log: dg.DagsterLogManager,
    stream: Stream,
    result: Reconciliation | None,
    run_checked: str | None,
) -> list[dg.AssetCheckResult]:
    """The check's result to yield; none, and a log line with the reason, when it had no
    loaded file to count (the check is then Skipped)."""
    if result is None or run_checked is None or result.files_checked == 0:
        log.info(skip_reason(stream, run_checked))
        return []
    return [reconcile_result(stream, result, run_checked)]


def skip_reason(stream: Stream, run_checked: str | None) -> str:
    if run_checked is None:
        return f"{RECONCILE_CHECK} of {stream.table} skipped: no {stream.name} file was ever loaded"
    return (
        f"{RECONCILE_CHECK} of {stream.table} skipped: run {run_checked} loaded no "
        f"{stream.name} file, so there is nothing to reconcile"
    )


def latest_loading_run(conn: Connection, stream: Stream) -> str | None:
    """The newest run that loaded a file of the stream (what the check covers on its own)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT run_id FROM ingested_files WHERE stream = $1 AND status = 'loaded'"
            " AND run_id IS NOT NULL ORDER BY file_id DESC LIMIT 1",
            (stream.name,),
        )
        row = cur.fetchone()
    conn.rollback()
    return None if row is None else str(row[0])


def reconcile_latest_run(
    conn: Connection, stream: Stream
) -> tuple[str | None, Reconciliation | None]:
    run_id = latest_loading_run(conn, stream)
    return run_id, None if run_id is None else reconcile_run(conn, stream, run_id)
