"""Reconciliation check: every row of every file the run handled is accounted for."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.load.reconcile import Reconciliation, reconcile_run

RECONCILE_CHECK = "rows_reconcile"


def _reconcile(energy: EnergyStorage, stream: Stream, run_id: str) -> Reconciliation:
    with energy.connection() as conn:
        return reconcile_run(conn, stream, run_id)


@dg.multi_asset_check(
    name="rows_reconcile_all_streams",
    specs=[
        dg.AssetCheckSpec(
            RECONCILE_CHECK,
            asset=HISTORY_ASSETS[stream.name],
            description=(
                "For each file of the run: rows_read = loaded + rejected + duplicate + "
                "conflicting, and history and quarantine hold exactly the loaded, rejected "
                "and conflicting rows."
            ),
            blocking=True,
        )
        for stream in STREAM_ORDER
    ],
    can_subset=True,
)
def rows_reconcile(
    context: dg.AssetCheckExecutionContext, energy: EnergyStorage
) -> Iterator[dg.AssetCheckResult]:
    streams = [
        s
        for s in STREAM_ORDER
        if dg.AssetCheckKey(HISTORY_ASSETS[s.name], RECONCILE_CHECK)
        in context.selected_asset_check_keys
    ]
    # Each stream's count scans its touched days: the streams are checked side by side.
    with ThreadPoolExecutor(max_workers=len(streams) or 1) as pool:
        results = {s: pool.submit(_reconcile, energy, s, context.run.run_id) for s in streams}
        for stream in streams:
            result = results[stream].result()
            yield dg.AssetCheckResult(
                asset_key=HISTORY_ASSETS[stream.name],
                check_name=RECONCILE_CHECK,
                passed=not result.files_not_reconciled,
                metadata={
                    "files_checked": result.files_checked,
                    "files_not_reconciled": ", ".join(result.files_not_reconciled) or "none",
                },
            )


RECONCILE_CHECKS = [rows_reconcile]
