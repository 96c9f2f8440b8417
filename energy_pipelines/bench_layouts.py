"""`energy-pipelines bench --layouts`: the same readings in the shapes gateways send them.

Each layout is loaded by `energy-pipelines ingest` into a fresh database (bench.pipeline_runs,
which also refuses a run that lost a reading): whole-fleet hourly files, one file per gateway
every few minutes, one whole-day file. The report gives files, seconds, readings/s and the
slowdown against the hourly files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from energy_pipelines.bench import BenchSize, cached_files, pipeline_runs
from energy_pipelines.layouts import Layout, cut_into_gateways

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
    return report
