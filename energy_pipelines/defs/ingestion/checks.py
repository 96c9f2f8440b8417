"""Reconciliation check: every row of every file the run handled is accounted for.

It runs inside `load_landing_files`, on each stream's own thread and session right after that
stream's files (and new days' indexes) are done, so one stream's count overlaps the other's
load instead of waiting for a step of its own."""

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.load.reconcile import Reconciliation

RECONCILE_CHECK = "rows_reconcile"


def reconcile_check_key(stream: Stream) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(dg.AssetKey(stream.table), RECONCILE_CHECK)


RECONCILE_SPECS = [
    dg.AssetCheckSpec(
        RECONCILE_CHECK,
        asset=stream.table,
        description=(
            "For each file of the run: rows_read = loaded + rejected + duplicate + "
            "conflicting, and history and quarantine hold exactly the loaded, rejected "
            "and conflicting rows."
        ),
        blocking=True,
    )
    for stream in STREAM_ORDER
]


def reconcile_result(stream: Stream, result: Reconciliation) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=stream.table,
        check_name=RECONCILE_CHECK,
        passed=not result.files_not_reconciled,
        metadata={
            "files_checked": result.files_checked,
            "files_not_reconciled": ", ".join(result.files_not_reconciled) or "none",
        },
    )
