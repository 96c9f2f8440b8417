"""Current-status assets, refreshed after each load from the readings loaded since the last one.
One step refreshes both streams' tables side by side."""

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import dagster as dg

from energy_pipelines.contract import Stream
from energy_pipelines.defs.ingestion.assets import HISTORY_ASSETS
from energy_pipelines.defs.resources import POSTGRES_WRITES_POOL, EnergyStorage
from energy_pipelines.hot_status.refresh import (
    HOT_STREAMS,
    STATUS_TABLES,
    StatusRefresh,
    refresh_status,
)

HOT_STORE_GROUP = "hot_store"

STATUS_SPECS = {
    stream.name: dg.AssetSpec(
        key=STATUS_TABLES[stream.name],
        group_name=HOT_STORE_GROUP,
        deps=[HISTORY_ASSETS[stream.name]],
        kinds={"postgres"},
        description=(
            f"Latest reading per {stream.name} (UPSERT that never moves back in time), "
            "folded in incrementally from the files loaded since the last refresh."
        ),
        code_version="1",
        owners=["team:data-engineering"],
    )
    for stream in HOT_STREAMS
}
# Asset keys by stream name, for the checks.
STATUS_ASSETS = {name: spec.key for name, spec in STATUS_SPECS.items()}


def _refresh(energy: EnergyStorage, stream: Stream) -> tuple[StatusRefresh, int, float]:
    started = time.perf_counter()
    with energy.connection() as conn:
        refreshed = refresh_status(conn, stream)
        with conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {STATUS_TABLES[stream.name]}")  # constant
            devices = int(cur.fetchone()[0])
        conn.rollback()
    return refreshed, devices, time.perf_counter() - started


@dg.multi_asset(
    name="refresh_current_status",
    specs=list(STATUS_SPECS.values()),
    can_subset=True,
    pool=POSTGRES_WRITES_POOL,
)
def refresh_current_status(
    context: dg.AssetExecutionContext, energy: EnergyStorage
) -> Iterator[dg.MaterializeResult]:
    streams = [s for s in HOT_STREAMS if STATUS_ASSETS[s.name] in context.selected_asset_keys]
    with ThreadPoolExecutor(max_workers=len(streams) or 1) as pool:
        results = {s: pool.submit(_refresh, energy, s) for s in streams}
        for stream in streams:
            refreshed, devices, seconds = results[stream].result()
            context.log.info(
                f"{stream.name}: {refreshed.files} new file(s): {refreshed.devices_seen} devices "
                f"seen, {refreshed.devices_changed} moved forward"
            )
            yield dg.MaterializeResult(
                asset_key=STATUS_ASSETS[stream.name],
                metadata={
                    "dagster/row_count": devices,
                    "new_files": refreshed.files,
                    "devices_seen": refreshed.devices_seen,
                    "devices_changed": refreshed.devices_changed,
                    "watermark_file_id": refreshed.watermark,
                    "seconds": round(seconds, 3),
                },
            )
