"""Per-file limits: a file above any of them is rejected whole, before a parser allocates."""

from __future__ import annotations

import gzip
from pathlib import Path

import polars as pl
import pytest

from energy_pipelines.contract import METER
from energy_pipelines.landing.discover import find_waiting_files
from energy_pipelines.landing.errors import FileRejected
from energy_pipelines.landing.read import read_landing_file
from energy_pipelines.settings import FileLimits

ROWS = "".join(f"m-{i},0.5,230,2026-02-11T10:{i % 60:02d}:00Z\n" for i in range(2000))
CSV = ("meterId,kwhConsumedAc,voltage,timestamp\n" + ROWS).encode()


def _only_file(root: Path):  # type: ignore[no-untyped-def]
    [file] = find_waiting_files(root, METER, settle_seconds=0)
    return file


def _write(root: Path, name: str, content: bytes) -> None:
    (root / "meter").mkdir(parents=True, exist_ok=True)
    (root / "meter" / name).write_bytes(content)


def test_within_limits_loads(tmp_path: Path) -> None:
    _write(tmp_path, "a.csv", CSV)
    raw = read_landing_file(_only_file(tmp_path), METER, FileLimits())
    assert raw.frame.height == 2000


@pytest.mark.parametrize(
    ("name", "content", "limits", "words"),
    [
        ("a.csv", CSV, FileLimits(max_file_bytes=1000), "ENERGY_MAX_FILE_MB"),
        (
            "a.csv.gz",
            gzip.compress(CSV * 50),
            FileLimits(max_decompressed_bytes=100_000),
            "ENERGY_MAX_DECOMPRESSED_MB",
        ),
        ("a.csv", CSV, FileLimits(memory_budget_bytes=200_000), "ENERGY_PARSE_MEMORY_MB"),
        (
            "a.csv.gz",
            gzip.compress(CSV),
            FileLimits(memory_budget_bytes=200_000),
            "ENERGY_PARSE_MEMORY_MB",
        ),
    ],
)
def test_csv_above_a_limit_is_rejected(
    tmp_path: Path, name: str, content: bytes, limits: FileLimits, words: str
) -> None:
    _write(tmp_path, name, content)
    with pytest.raises(FileRejected, match=words):
        read_landing_file(_only_file(tmp_path), METER, limits)


@pytest.mark.parametrize(
    ("limits", "words"),
    [
        (FileLimits(max_rows=1999), "ENERGY_MAX_ROWS_PER_FILE"),
        (FileLimits(memory_budget_bytes=10_000), "ENERGY_PARSE_MEMORY_MB"),
    ],
)
def test_parquet_above_a_limit_is_rejected(tmp_path: Path, limits: FileLimits, words: str) -> None:
    (tmp_path / "meter").mkdir()
    pl.read_csv(CSV).write_parquet(tmp_path / "meter" / "a.parquet")
    assert read_landing_file(_only_file(tmp_path), METER, FileLimits()).frame.height == 2000
    with pytest.raises(FileRejected, match=words):
        read_landing_file(_only_file(tmp_path), METER, limits)


@pytest.mark.parametrize(
    ("unit", "value"),
    [("s", -(2**40) * 1000)]
    + [(unit, value) for unit in ("ms", "us", "ns") for value in (2**62, -(2**62))],
)
def test_absurd_parquet_timestamps_reject_rows_not_the_run(
    tmp_path: Path, unit: str, value: int
) -> None:
    """Found by fuzzing: Polars panicked converting timestamps far outside any calendar."""
    from datetime import UTC, datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    from energy_pipelines.settings import ValidationLimits
    from energy_pipelines.validate.rules import validate_rows

    (tmp_path / "meter").mkdir()
    good = (
        {"s": 1_770_000_000}[unit]
        if unit == "s"
        else 1_770_000_000
        * {
            "ms": 10**3,
            "us": 10**6,
            "ns": 10**9,
        }[unit]
    )
    table = pa.table(
        {
            "meterId": ["m-1", "m-2"],
            "kwhConsumedAc": [1.0, 1.0],
            "voltage": [230.0, 230.0],
            "timestamp": pa.array([value, good], pa.timestamp(unit, tz="UTC")),
        }
    )
    pq.write_table(table, tmp_path / "meter" / "a.parquet", coerce_timestamps=None)
    raw = read_landing_file(_only_file(tmp_path), METER, FileLimits())
    result = validate_rows(raw, METER, ValidationLimits(), datetime.now(UTC))
    assert result.rejects["row_number"].to_list() == [1]
    assert "timestamp" in result.rejects["column_name"].to_list()
    assert result.valid["meter_id"].to_list() == ["m-2"]
