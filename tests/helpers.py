"""Small builders shared by the database tests."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

METER_HEADER = "meterId,kwhConsumedAc,voltage,timestamp"
VEHICLE_HEADER = "vehicleId,soc,kwhDeliveredDc,batteryTemp,timestamp"


def write_csv(landing: Path, stream: str, name: str, header: str, rows: list[str]) -> Path:
    path = landing / stream / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def as_user(url: str, user: str, password: str | None = None) -> str:
    """The same server and database, another login."""
    parts = urlsplit(url)
    host = parts.netloc.split("@", 1)[-1]
    login = user if password is None else f"{user}:{password}"
    return urlunsplit(parts._replace(netloc=f"{login}@{host}"))


def assert_forbidden(conn, statements: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    """Each statement fails for lack of privilege (and leaves the connection usable)."""
    for statement in statements:
        with (
            pytest.raises(Exception, match=r"permission denied|must be owner"),
            conn.cursor() as cur,
        ):
            cur.execute(statement)
        conn.rollback()


def cli(
    *args: str, env: dict[str, str], wait: bool = True
) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """Run `energy-pipelines ARGS` as its own process (wait=False: return it running)."""
    command = [sys.executable, "-m", "energy_pipelines.cli", *args]
    if not wait:
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)


def meter_table(**overrides: object):  # type: ignore[no-untyped-def]
    """A valid two-row meter Parquet table; keyword arguments replace whole columns."""
    import pyarrow as pa

    ts = datetime(2026, 2, 11, 10, 30, tzinfo=UTC)
    columns = {
        "meterId": pa.array(["m-1", "m-2"]),
        "kwhConsumedAc": pa.array([1.5, 2.5]),
        "voltage": pa.array([230.0, 231.0]),
        "timestamp": pa.array([ts, ts], pa.timestamp("us", tz="UTC")),
    }
    columns.update(overrides)
    return pa.table(columns)


def scans_of_day(db, day: str) -> int:  # type: ignore[no-untyped-def]
    """Scans of one UTC day's meter history tables (day as YYYYMMDD) so far, once every other
    session of the database has ended (a session publishes its statistics when it ends)."""
    import time

    from tests.conftest import query

    for _ in range(100):
        others = query(
            db,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        if others == [(0,)]:
            break
        time.sleep(0.05)
    [(scans,)] = query(
        db,
        "SELECT coalesce(sum(coalesce(seq_scan, 0) + coalesce(idx_scan, 0)), 0)::bigint"
        " FROM pg_stat_user_tables WHERE relname LIKE $1",
        (f"meter_readings_history_p{day}%",),
    )
    return int(scans)
