"""The 24-hour performance summary, in the original API's JSON shape."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from energy_pipelines.load.database import Connection


class UnknownVehicle(LookupError):
    pass


def parse_as_of(text: str) -> datetime:
    """An ISO-8601 instant as the CLI and the HTTP API accept it; without an offset it is UTC."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _number(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def vehicle_performance(
    conn: Connection, vehicle_id: str, as_of: datetime | None = None, fault_threshold: float = 0.85
) -> dict[str, Any]:
    as_of = as_of or datetime.now(UTC)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT * FROM vehicle_performance_24h($1, $2, $3)",
            (vehicle_id, as_of, fault_threshold),
        )
        row = cur.fetch_arrow_table().to_pylist()[0]
    conn.rollback()
    if not row["known_vehicle"]:
        raise UnknownVehicle(f"vehicle {vehicle_id!r} is unknown: no readings and no meter pairing")
    return {
        "vehicleId": row["vehicle_id"],
        "period": "24 hours",
        "totalKwhConsumedAc": _number(row["total_kwh_consumed_ac"]),
        "totalKwhDeliveredDc": _number(row["total_kwh_delivered_dc"]),
        "efficiencyRatio": _number(row["efficiency_ratio"]),
        "averageBatteryTemp": _number(row["average_battery_temp"]),
        "recordCount": int(row["record_count"]),
        "status": row["status"],
        "window": {
            "start": row["window_start"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "end": row["window_end"].astimezone(UTC).isoformat().replace("+00:00", "Z"),
        },
    }
