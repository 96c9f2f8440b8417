"""Current-status assets, refreshed after each load from the readings loaded since the last one."""

import time

import dagster as dg

from energy_pipelines.contract import Stream
from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS
from energy_pipelines.defs.resources import POSTGRES_WRITES_POOL, EnergyStorage
from energy_pipelines.hot_status.refresh import HOT_STREAMS, STATUS_TABLES, refresh_status

HOT_STORE_GROUP = "hot_store"


def build_status_asset(stream: Stream) -> dg.AssetsDefinition:

    @dg.asset(
        name=STATUS_TABLES[stream.name],
        group_name=HOT_STORE_GROUP,
        deps=[HISTORY_ASSETS[stream.name]],
        kinds={"postgres"},
        description=(
            f"Latest reading per {stream.name} (UPSERT that never moves back in time), "
            "folded in incrementally from the files loaded since the last refresh."
        ),
        code_version="1",
        pool=POSTGRES_WRITES_POOL,
        owners=["team:data-engineering"],
    )
    def status_asset(
        context: dg.AssetExecutionContext, energy: EnergyStorage
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        with energy.connection() as conn:
            refreshed = refresh_status(conn, stream)
            with conn.cursor() as cur:
                cur.execute(f"SELECT count(*) FROM {STATUS_TABLES[stream.name]}")  # constant
                devices = int(cur.fetchone()[0])
            conn.rollback()
        context.log.info(
            f"{refreshed.files} new file(s): {refreshed.devices_seen} devices seen, "
            f"{refreshed.devices_changed} moved forward"
        )
        return dg.MaterializeResult(
            metadata={
                "dagster/row_count": devices,
                "new_files": refreshed.files,
                "devices_seen": refreshed.devices_seen,
                "devices_changed": refreshed.devices_changed,
                "watermark_file_id": refreshed.watermark,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )

    return status_asset


STATUS_ASSETS = {stream.name: build_status_asset(stream) for stream in HOT_STREAMS}
