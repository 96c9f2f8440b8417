"""How long a refresh of daily_device_quality takes (not a test).

    DATABASE_URL=postgresql://... .venv/bin/python benchmarks/quality_refresh.py DAY \
        [--from-scratch] [--rounds 3]

Refreshes one UTC day of a database that already holds it (e.g. after `energy-pipelines
simulate --meters 5000 --minutes 1440 --files-per-stream 24 --start DAYT00:00:00Z --out DIR`
and `energy-pipelines ingest --landing DIR`) and prints one JSON line a round: wall seconds,
this process's CPU seconds, the CPU seconds of the PostgreSQL server processes on this machine
(every session's, so other work on the server counts too), the readings read and the load
average. --from-scratch drops the day's kept fold first, so the whole day is composed again
(from the hour summaries its loads left, sql/019, and from history for hours without one);
without it a round reads only what lies after the kept fold, as a refresh a minute does.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date
from pathlib import Path

from energy_pipelines.analytics.quality_db import refresh_quality_day
from energy_pipelines.load.database import connect, resolve_database_url
from energy_pipelines.settings import Settings


def server_cpu_seconds() -> float:
    """CPU seconds of the postgres processes this machine runs (0 for a remote server)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().startswith("postgres"):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                ticks += sum(int(f) for f in fields[11:15])
        except OSError:
            continue  # a process that ended while it was read
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("day", type=date.fromisoformat)
    parser.add_argument("--from-scratch", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    settings = Settings.from_env()
    url = resolve_database_url(settings)
    with connect(url) as conn:
        for _ in range(args.rounds):
            if args.from_scratch:
                with conn.cursor() as cur:
                    cur.execute("DELETE FROM device_quality_state WHERE day = $1", (args.day,))
                conn.commit()
            load, cpu, server = os.getloadavg()[0], time.process_time(), server_cpu_seconds()
            result = refresh_quality_day(conn, url, args.day, settings)
            print(
                json.dumps(
                    {
                        "day": args.day.isoformat(),
                        "from_scratch": args.from_scratch,
                        "seconds": round(result.seconds, 2),
                        "client_cpu_seconds": round(time.process_time() - cpu, 2),
                        "server_cpu_seconds": round(server_cpu_seconds() - server, 2),
                        "readings_read": result.readings_read,
                        "rows": result.rows,
                        "load_average": round(load, 2),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
