"""`energy-pipelines bench` at a tiny size: the report keeps its contract and its figures come from
runs that really loaded every generated reading. (Its speed is not tested here: the benchmark
itself is how speed is measured.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from energy_pipelines.bench import BenchSize, cached_files, pipeline_runs, run_bench
from energy_pipelines.load.database import connect
from tests.conftest import query

REPORT_KEYS = {
    "rows",
    "pipeline_rows_per_s",
    "copy_indexed_rows_per_s",
    "copy_unindexed_rows_per_s",
    "ratio_vs_indexed",
    "ratio_vs_unindexed",
    "pipeline_seconds",
    "peak_rss_mb",
    "stage_seconds",
    "cpu_seconds",
    "later_days",
    "machine",
    "quality_seconds",
    "quality_readings_read",
}
STAGES = {
    "read",
    "validate",
    "transform",
    "load",
    "index",
    "lock_wait",
    "turn_wait",
    "hot_status",
    "daily",
}


def _bench_databases(server_url: str) -> list[tuple]:
    with connect(server_url) as conn:
        return query(conn, "SELECT datname FROM pg_database WHERE datname LIKE 'energy_bench_%'")


@pytest.mark.slow
def test_bench_reports_every_phase_of_a_run_that_loaded_all_rows(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _bench_databases(server_url)
    size = BenchSize(meters=12, vehicles=8, minutes=120, files_per_stream=2, file_format="csv")
    report = run_bench(server_url, tmp_path / "bench", size, days=2, sessions=3)

    assert report.keys() >= REPORT_KEYS
    assert report["rows"] == (12 + 8) * 120
    assert set(report["stage_seconds"]) == STAGES
    seconds = report["pipeline_seconds"]
    assert seconds > 0 and report["peak_rss_mb"] > 0
    assert report["pipeline_rows_per_s"] == pytest.approx(report["rows"] / seconds, rel=0.01)
    # The ratios are of the same run's figures: (c)/(a) = (a) seconds / (c) seconds (the
    # seconds are reported to 2 decimals, the ratios to 3).
    for ratio, copy_seconds in [
        ("ratio_vs_indexed", "copy_indexed_seconds"),
        ("ratio_vs_unindexed", "copy_unindexed_seconds"),
        ("ratio_vs_indexed_parallel", "copy_indexed_parallel_seconds"),
        ("ratio_vs_unindexed_parallel", "copy_unindexed_parallel_seconds"),
    ]:
        expected = report[copy_seconds] / seconds
        assert abs(report[ratio] - expected) <= 0.005 / seconds + 0.0005
    # The naive loads to beat also ran on as many sessions as asked (default: the cores).
    assert report["baseline_sessions"] == 3
    assert report["cores_busy"]["pipeline"] > 0 and report["cores_busy"]["postgres"] > 0
    # The pipeline runs in a subprocess; the server here is a process of this machine.
    assert report["cpu_seconds"]["pipeline"] > 0
    assert report["cpu_seconds"]["postgres_backends"] > 0
    # Each run records what the machine did during it (this is Linux).
    machine = report["machine"]
    assert machine["user_seconds"] > 0 and machine["pages_dirtied"] > 0
    assert machine["memory_free_mb_at_start"] > 0
    (day_two,) = report["later_days"]
    assert set(day_two["stage_seconds"]) == STAGES and day_two["pipeline_seconds"] > 0
    assert day_two["machine"]["system_seconds"] >= 0
    # Each day's data-quality rows are refreshed after its load and timed; the day's readings
    # are read back unless the load left its hour summaries (sql/019).
    assert report["quality_seconds"] > 0 and day_two["quality_seconds"] > 0
    assert report["quality_readings_read"] in (0, report["rows"])
    out = capsys.readouterr().out
    assert "ratio (c)/(a)" in out
    assert out.count(" s after the run: daily_device_quality, 20 rows,") == 2
    # Every phase's scratch database is gone again.
    assert _bench_databases(server_url) == before


def test_a_pipeline_run_that_loads_fewer_rows_than_generated_is_refused(
    server_url: str, tmp_path: Path
) -> None:
    # One reading more is expected than the files hold, as if the pipeline had lost one.
    size = BenchSize(meters=3, vehicles=2, minutes=60, files_per_stream=1, file_format="parquet")
    files = cached_files(tmp_path / "bench", size)
    before = _bench_databases(server_url)
    with pytest.raises(RuntimeError, match=r"loaded 300 readings; 301 were generated"):
        pipeline_runs(server_url, [files], tmp_path / "work", size.rows + 1)
    assert _bench_databases(server_url) == before


@pytest.mark.slow
def test_bench_layouts_load_every_layout_whole_and_report_the_fixed_cost_of_a_run(
    server_url: str, tmp_path: Path
) -> None:
    from energy_pipelines.bench_layouts import chosen_layouts, run_layouts

    before = _bench_databases(server_url)
    size = BenchSize(meters=12, vehicles=8, minutes=120, files_per_stream=2, file_format="parquet")
    cache = tmp_path / "bench"
    report = run_layouts(server_url, cache, cache / "work", size, chosen_layouts(["50x5"]))

    hourly, gateways = report["hourly"], report["50 gateways x 5-minute files"]
    # pipeline_runs refuses a run that lost a reading: both loaded all 2,400.
    assert hourly["files"] == 5 and gateways["files"] > hourly["files"]
    assert gateways["slowdown_vs_first"] == pytest.approx(
        gateways["seconds"] / hourly["seconds"], abs=0.01
    )
    costs = report["fixed_costs"]
    assert set(costs) == {
        "process_start_and_imports_s",
        "first_run_with_schema_s",
        "nothing_waiting_s",
        "one_gateway_file_s",
    }
    assert 0 < costs["process_start_and_imports_s"] < costs["nothing_waiting_s"]
    assert costs["nothing_waiting_s"] < costs["one_gateway_file_s"]
    assert _bench_databases(server_url) == before
