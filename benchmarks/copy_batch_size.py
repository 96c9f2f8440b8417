"""How the record-batch size of an ADBC COPY changes its time (not a test).

    DATABASE_URL=postgresql://... .venv/bin/python benchmarks/copy_batch_size.py [--files 6]

COPYs the same 300,000-row meter readings (one simulated hourly file, typed as history stores
them) into a scratch table, in one record batch and in batches of several sizes, three rounds
each, and prints the median seconds and client CPU seconds per file as one JSON line. The ADBC
driver encodes a whole batch before it sends it, so smaller batches let PostgreSQL store one
while the next is encoded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from energy_pipelines.contract import ARROW_TYPES, METER
from energy_pipelines.load.database import connect, execute_admin, with_database
from energy_pipelines.simulate import simulate


def _thread_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=6, help="timed COPYs per batch size")
    args = parser.parse_args()
    import polars as pl

    server = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    with tempfile.TemporaryDirectory() as root:
        simulate(
            Path(root),
            meters=5000,
            vehicles=1,
            start=datetime(2026, 2, 10, tzinfo=UTC),
            minutes=60,
            file_format="parquet",
            files_per_stream=1,
        )
        (path,) = (Path(root) / "meter").glob("*.parquet")
        frame = pl.read_parquet(path).rename({f.file_name: f.column for f in METER.fields})
    schema = pa.schema([pa.field(f.column, ARROW_TYPES[f.kind]) for f in METER.fields])
    rows = frame.select(METER.columns).to_arrow().cast(schema).combine_chunks()

    name = f"energy_copy_bench_{uuid.uuid4().hex[:12]}"
    execute_admin(server, f"CREATE DATABASE {name}")
    timings: dict[str, list[tuple[float, float]]] = {}
    try:
        with connect(with_database(server, name)) as conn, conn.cursor() as cur:
            cur.execute(
                "CREATE TABLE readings (meter_id text, kwh_consumed_ac double precision,"
                " voltage double precision, ts timestamptz)"
            )
            conn.commit()
            for _ in range(3):
                for size in (None, 100_000, 50_000, 20_000, 10_000):
                    batches = rows if size is None else rows.to_batches(max_chunksize=size)
                    table = batches if size is None else pa.Table.from_batches(batches)
                    for _ in range(args.files):
                        cpu, wall = _thread_cpu_seconds(), time.perf_counter()
                        cur.adbc_ingest("readings", table, mode="append")
                        timings.setdefault(str(size or "one batch"), []).append(
                            (time.perf_counter() - wall, _thread_cpu_seconds() - cpu)
                        )
                    conn.commit()
                    cur.execute("TRUNCATE readings")
                    conn.commit()
    finally:
        execute_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    report = {
        "rows_per_copy": rows.num_rows,
        "median_seconds": {
            k: round(statistics.median(w for w, _ in v), 3) for k, v in timings.items()
        },
        "median_client_cpu_seconds": {
            k: round(statistics.median(c for _, c in v), 3) for k, v in timings.items()
        },
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
