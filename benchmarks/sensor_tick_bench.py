"""How long one landing-sensor tick takes with many files waiting (not a test).

    .venv/bin/python benchmarks/sensor_tick_bench.py [--files 20000]

Writes that many small meter CSV files (in nested gateway folders) into a temporary landing
root, evaluates `landing_sensor` once as the daemon would, and prints a JSON line with the
seconds and the number of files the run request carries (the per-tick cap).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import dagster as dg

from energy_pipelines.defs import defs
from energy_pipelines.defs.ingestion.sensors import build_landing_sensor
from energy_pipelines.defs.resources import EnergyStorage


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        landing = Path(root)
        for i in range(args.files):
            folder = landing / "meter" / f"gw-{i % 100:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"f-{i:06d}.csv").write_text(
                f"meterId,kwhConsumedAc,voltage,timestamp\nm-{i},0.1,230,2026-02-11T10:00:00Z\n"
            )
        sensor = build_landing_sensor(defs.resolve_job_def("ingest_job"))
        energy = EnergyStorage(landing_dir=str(landing), settle_seconds=0)
        started = time.perf_counter()
        result = sensor(dg.build_sensor_context(resources={"energy": energy}))
        seconds = time.perf_counter() - started
        [request] = result.run_requests
        paths = request.run_config["ops"]["meter_readings_history"]["config"]["paths"]
        print(
            json.dumps(
                {
                    "files_waiting": args.files,
                    "tick_seconds": round(seconds, 3),
                    "files_in_run_request": len(paths),
                }
            )
        )


if __name__ == "__main__":
    main()
