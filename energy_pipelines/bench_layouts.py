"""`energy-pipelines bench --layouts`: the same readings in the shapes gateways send them.

Each layout is loaded by `energy-pipelines ingest` into a fresh database (bench.pipeline_runs,
which also refuses a run that lost a reading): whole-fleet hourly files, one file per gateway
every few minutes, one whole-day file. The report gives files, seconds, readings/s and the
slowdown against the hourly files, then the fixed cost of a run (fixed_costs).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from energy_pipelines.bench import BenchSize, cached_files, cli_env, pipeline_runs
from energy_pipelines.layouts import Layout, cut_into_gateways
from energy_pipelines.load.database import execute_admin, with_database

# gateways 0: the simulator's whole-fleet files (hourly, or one file for the whole period).
# Keyed by the names `bench --layouts --layout KEY` takes.
LAYOUTS = {
    "hourly": Layout("hourly", 0, 60),
    "1x5": Layout("1 gateway x 5-minute files", 1, 5),
    "50x5": Layout("50 gateways x 5-minute files", 50, 5),
    "100x1": Layout("100 gateways x 1-minute files", 100, 1),
    "one-file": Layout("one file for the period", 0, 0),
}
DEFAULT_LAYOUTS = tuple(LAYOUTS.values())


def chosen_layouts(keys: list[str] | None) -> tuple[Layout, ...]:
    """The layouts named (every one when none is), the hourly files always first: the others'
    slowdown is measured against them."""
    if not keys:
        return DEFAULT_LAYOUTS
    unknown = sorted(set(keys) - set(LAYOUTS))
    if unknown:
        raise ValueError(f"unknown layout {', '.join(unknown)}: choose from {', '.join(LAYOUTS)}")
    return tuple(LAYOUTS[k] for k in LAYOUTS if k == "hourly" or k in keys)


def layout_files(cache: Path, size: BenchSize, layout: Layout) -> Path:
    """The landing root of a layout, generated once per size and layout."""
    hourly = BenchSize(
        size.meters, size.vehicles, size.minutes, max(1, size.minutes // 60), size.file_format
    )
    if layout.gateways == 0:
        files = 1 if layout.file_minutes == 0 else hourly.files_per_stream
        whole = BenchSize(size.meters, size.vehicles, size.minutes, files, size.file_format)
        return cached_files(cache, whole)
    root = cache / f"{hourly.key}-gw{layout.gateways}x{layout.file_minutes}m"
    done = root / ".complete"
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        cut_into_gateways(cached_files(cache, hourly), root, layout, size.file_format)
        done.write_text("ok\n")
    return root


def _count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def run_layouts(
    server_url: str, cache: Path, work: Path, size: BenchSize, layouts: tuple[Layout, ...]
) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for layout in layouts:
        root = layout_files(cache, size, layout)
        print(f"  {layout.name}: {_count_files(root):,} files ...", flush=True)
        [run] = pipeline_runs(server_url, [root], work, size.rows)
        report[layout.name] = {
            "files": _count_files(root),
            "seconds": round(run["seconds"], 2),
            "readings_per_second": round(size.rows / run["seconds"]),
            "peak_rss_mb": round(run.get("peak_rss_mb", 0.0)),
        }
    base = report.get(layouts[0].name)
    for entry in report.values():
        entry["slowdown_vs_first"] = round(entry["seconds"] / base["seconds"], 2) if base else None
    gateway_root = layout_files(cache, size, LAYOUTS["50x5"])
    three = sorted((gateway_root / "meter").rglob("*.parquet"))[:3]
    report["fixed_costs"] = fixed_costs(server_url, three, work)
    return report


def fixed_costs(server_url: str, files: list[Path], work: Path) -> dict[str, float]:
    """Seconds of an `energy-pipelines ingest` run with nothing waiting, and with one gateway
    file (one stream; `files`: three of them), each the best of three into one fresh database
    (the first run also creates the schema, timed apart); beside them what every run pays
    first, a Python process importing the project's CLI."""
    name = f"energy_bench_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    landing = work / "fixed-cost-landing"
    shutil.rmtree(landing, ignore_errors=True)
    landing.mkdir(parents=True)
    env = cli_env(with_database(server_url, name), landing, work)

    def timed(*command: str) -> float:
        started = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        return time.perf_counter() - started

    ingest = (sys.executable, "-m", "energy_pipelines.cli", "ingest")
    try:
        first = timed(*ingest)  # migrates the new database
        nothing = min(timed(*ingest) for _ in range(3))
        one = []
        for file in files:
            target = landing / file.relative_to(file.parents[2])
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
            one.append(timed(*ingest))
        imports = min(timed(sys.executable, "-c", "import energy_pipelines.cli") for _ in range(3))
    finally:
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return {
        "process_start_and_imports_s": round(imports, 2),
        "first_run_with_schema_s": round(first, 2),
        "nothing_waiting_s": round(nothing, 2),
        "one_gateway_file_s": round(min(one), 2),
    }
