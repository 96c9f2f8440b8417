"""Small builders shared by the database tests."""

from __future__ import annotations

from pathlib import Path

METER_HEADER = "meterId,kwhConsumedAc,voltage,timestamp"
VEHICLE_HEADER = "vehicleId,soc,kwhDeliveredDc,batteryTemp,timestamp"


def write_csv(landing: Path, stream: str, name: str, header: str, rows: list[str]) -> Path:
    path = landing / stream / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path
