"""Reconciliation check: every row of every file the run handled is accounted for."""

import dagster as dg

from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.load.reconcile import reconcile_run


def build_reconcile_check(stream: Stream) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=HISTORY_ASSETS[stream.name],
        name="rows_reconcile",
        description=(
            "For each file of the run: rows_read = loaded + rejected + duplicate + conflicting, "
            "and history and quarantine hold exactly the loaded, rejected and conflicting rows."
        ),
        blocking=True,
    )
    def rows_reconcile(
        context: dg.AssetCheckExecutionContext, energy: EnergyStorage
    ) -> dg.AssetCheckResult:
        with energy.connection() as conn:
            result = reconcile_run(conn, stream, context.run.run_id)
        return dg.AssetCheckResult(
            passed=not result.files_not_reconciled,
            metadata={
                "files_checked": result.files_checked,
                "files_not_reconciled": ", ".join(result.files_not_reconciled) or "none",
            },
        )

    return rows_reconcile


RECONCILE_CHECKS = [build_reconcile_check(stream) for stream in STREAM_ORDER]
