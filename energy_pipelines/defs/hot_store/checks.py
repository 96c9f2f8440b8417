"""Checks on the hot store: agreement with history, and freshness of the newest reading."""

import dagster as dg

from energy_pipelines.contract import Stream
from energy_pipelines.defs.hot_store.assets import STATUS_ASSETS
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.hot_status.refresh import HOT_STREAMS, STATUS_TABLES

# Devices whose status is not their latest history reading (missing or newer in history).
_DISAGREEING_SQL = """
SELECT s.{device}
  FROM {status} s
 WHERE NOT EXISTS (SELECT 1 FROM {history} h WHERE h.{device} = s.{device} AND h.ts = s.ts)
    OR EXISTS (SELECT 1 FROM {history} h WHERE h.{device} = s.{device} AND h.ts > s.ts)
 ORDER BY 1
 LIMIT 20
"""


def build_status_checks(stream: Stream) -> list[dg.AssetChecksDefinition]:
    status_table = STATUS_TABLES[stream.name]
    device = stream.key[0]

    @dg.asset_check(
        asset=STATUS_ASSETS[stream.name],
        name="agrees_with_history",
        description="Each device's status timestamp equals its latest timestamp in history.",
    )
    def agrees_with_history(energy: EnergyStorage) -> dg.AssetCheckResult:
        sql = _DISAGREEING_SQL.format(device=device, status=status_table, history=stream.table)
        with energy.connection() as conn, conn.cursor() as cur:
            cur.execute(sql)
            wrong = [row[0] for row in cur.fetchall()]
        return dg.AssetCheckResult(
            passed=not wrong,
            metadata={"devices_disagreeing (first 20)": ", ".join(wrong) or "none"},
        )

    @dg.asset_check(
        asset=STATUS_ASSETS[stream.name],
        name="fresh_data",
        description=(
            f"Fails when the newest {stream.name} reading is older than ENERGY_FRESHNESS_MINUTES "
            "(default 60)."
        ),
    )
    def fresh_data(energy: EnergyStorage) -> dg.AssetCheckResult:
        limit = energy.settings().freshness_minutes
        with energy.connection() as conn, conn.cursor() as cur:
            cur.execute(
                f"SELECT max(ts), extract(epoch FROM now() - max(ts)) / 60 FROM {status_table}"
            )
            newest, age_minutes = cur.fetchone()
        age = None if age_minutes is None else float(age_minutes)
        return dg.AssetCheckResult(
            passed=age is not None and age <= limit,
            metadata={
                "newest_reading": str(newest) if newest else "none",
                "age_minutes": round(age, 1) if age is not None else -1.0,
                "limit_minutes": limit,
            },
        )

    return [agrees_with_history, fresh_data]


STATUS_CHECKS = [check for s in HOT_STREAMS for check in build_status_checks(s)]
