"""The 24-hour performance summary, in the original API's JSON shape.

One SQL function (`vehicle_performance_24h`, sql/014) computes it; the CLI (ADBC) and the HTTP
gateway (asyncpg) send the same statement and turn its row into JSON with `summary_from_row`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from energy_pipelines.load.database import Connection
from energy_pipelines.settings import EvidenceRules

# Positional parameters: vehicle id, as-of, then EvidenceRules.parameters(): fault threshold,
# minimum paired AC kWh, cadence in minutes. The function's own defaults serve analysts who
# call it in SQL.
PERFORMANCE_SQL = "SELECT * FROM vehicle_performance_24h($1, $2, $3, $4, $5::integer)"


class UnknownVehicle(LookupError):
    pass


def parse_as_of(text: str) -> datetime:
    """An ISO-8601 instant as the CLI and the HTTP API accept it; without an offset it is UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _number(value: Decimal | float | None) -> float | None:
    return None if value is None else float(value)


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def summary_from_row(row: Mapping[str, Any], vehicle_id: str) -> dict[str, Any]:
    """The JSON answer for one row of vehicle_performance_24h; UnknownVehicle when it is none."""
    if not row["known_vehicle"]:
        raise UnknownVehicle(f"vehicle {vehicle_id!r} is unknown: no readings and no meter pairing")
    summary: dict[str, Any] = {
        "vehicleId": row["vehicle_id"],
        "period": "24 hours",
        "totalKwhConsumedAc": _number(row["total_kwh_consumed_ac"]),
        "totalKwhDeliveredDc": _number(row["total_kwh_delivered_dc"]),
        "efficiencyRatio": _number(row["efficiency_ratio"]),
        "averageBatteryTemp": _number(row["average_battery_temp"]),
        "recordCount": int(row["record_count"]),
        "status": row["status"],
        "pairedKwhConsumedAc": _number(row["paired_kwh_consumed_ac"]),
        "pairedKwhDeliveredDc": _number(row["paired_kwh_delivered_dc"]),
        "pairedEfficiencyRatio": _number(row["paired_efficiency_ratio"]),
        "energyCoverage": _number(row["energy_coverage"]),
        "meterRecordCount": int(row["meter_record_count"]),
        "window": {"start": _iso(row["window_start"]), "end": _iso(row["window_end"])},
        "keptFrom": _iso(row["kept_from"]),
    }
    if row["requested_as_of"] != row["window_end"]:
        summary["asOfClampedFrom"] = _iso(row["requested_as_of"])
    return summary


def vehicle_performance(
    conn: Connection,
    vehicle_id: str,
    as_of: datetime | None = None,
    rules: EvidenceRules | None = None,
) -> dict[str, Any]:
    rules = rules or EvidenceRules()
    with conn.cursor() as cur:
        cur.execute(PERFORMANCE_SQL, (vehicle_id, as_of or datetime.now(UTC), *rules.parameters()))
        rows = cur.fetch_arrow_table().to_pylist()
    conn.rollback()
    return summary_from_row(rows[0], vehicle_id)
