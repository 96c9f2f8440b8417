"""Run-time configuration, read from the environment once and passed down explicitly."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def float_env(name: str, default: float, minimum: float | None = None) -> float:
    """A number from the environment, with a message naming the variable when it is wrong."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number") from exc
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _choice_env(name: str, choices: tuple[str, ...]) -> str:
    """One of `choices` from the environment (the first is the default)."""
    raw = (os.environ.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise ValueError(f"{name}={raw!r} must be one of: {', '.join(choices)}")
    return raw


# How long a loader waits for its stream's lock (and any other lock inside a file's transaction)
# before it gives up with a transient error naming the holder. Longer than one file's
# transaction: a 7.2 M-row file loads in about 36 s (docs/performance.md).
DEFAULT_LOCK_TIMEOUT_SECONDS = 120.0


def lock_timeout_seconds() -> float:
    """ENERGY_LOCK_TIMEOUT_SECONDS, read where the lock is taken (no Settings reach it)."""
    return float_env("ENERGY_LOCK_TIMEOUT_SECONDS", DEFAULT_LOCK_TIMEOUT_SECONDS, minimum=0.001)


@dataclass(frozen=True)
class SensorRetry:
    """When a sensor asks again for work whose run ended without doing it (a failed run, or
    files still waiting after one): after `base_seconds`, doubling with each attempt, at most
    `max_seconds` apart."""

    base_seconds: float = 30.0
    max_seconds: float = 900.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th run that did not do the work (1, 2, ...)."""
        return min(self.max_seconds, self.base_seconds * 2 ** max(0, min(attempts - 1, 30)))


@dataclass(frozen=True)
class ValidationLimits:
    """Bounds a reading must respect; everything outside is quarantined with the rule it broke."""

    max_kwh_per_reading: float = 10_000.0
    max_future_minutes: float = 10.0
    min_year: int = 2000


@dataclass(frozen=True)
class FileLimits:
    """Bounds on one landing file. Parsing memory and time grow with these, so they bound both;
    a file above a limit is quarantined, not loaded."""

    max_file_bytes: int = 1 << 30  # on disk
    max_decompressed_bytes: int = 1 << 30  # a .csv.gz once expanded
    max_rows: int = 20_000_000  # as a Parquet footer claims them
    # Estimated peak memory of parsing one file (see landing.read for the estimate).
    memory_budget_bytes: int = 4 << 30
    # Files with more rows than stream_above_rows are read, validated and loaded in chunks of
    # chunk_rows rows (still one transaction), so memory follows the chunk, not the file.
    stream_above_rows: int = 1_000_000
    chunk_rows: int = 100_000


@dataclass(frozen=True)
class BatchLimits:
    """How many small files one transaction loads together. Files with more rows than
    small_file_rows load on their own, the next one prepared while one loads (a whole-fleet
    hourly export)."""

    max_files: int = 2000
    max_bytes: int = 64 << 20
    max_rows: int = 100_000
    small_file_rows: int = 50_000


@dataclass(frozen=True)
class EvidenceRules:
    """What an efficiency status may conclude from: the fault threshold, the AC energy the paired
    intervals must carry before their ratio is trusted, and each stream's reading cadence.
    Readings pair by interval of the coarser cadence (a whole number of minutes dividing 60)."""

    fault_threshold: float = 0.85
    min_paired_kwh: float = 1.0
    meter_cadence_seconds: int = 60
    vehicle_cadence_seconds: int = 60

    def __post_init__(self) -> None:
        for name in ("meter_cadence_seconds", "vehicle_cadence_seconds"):
            seconds = getattr(self, name)
            if seconds < 60 or seconds % 60 or 3600 % seconds:
                raise ValueError(
                    f"{name}={seconds}: a cadence is a whole number of minutes that divides an "
                    "hour (60, 120, 180, 240, 300, 360, 600, 720, 900, 1200, 1800 or 3600)"
                )

    @property
    def cadence_minutes(self) -> int:
        """The interval readings of both streams pair on: the coarser cadence."""
        return max(self.meter_cadence_seconds, self.vehicle_cadence_seconds) // 60

    def parameters(self) -> tuple[float, float, int]:
        """The summary function's last three arguments."""
        return (self.fault_threshold, self.min_paired_kwh, self.cadence_minutes)


@dataclass(frozen=True)
class QualityRules:
    """What the data-quality flags count (docs/analytics.md "Data quality"). They flag kept
    readings and never reject one; estimates are reported beside the readings, never stored as
    readings."""

    # A frozen run: the same non-zero value in at least this many consecutive intervals.
    frozen_min_intervals: int = 10
    # A spike: interval energy above this multiple of the device's typical daily maximum.
    spike_factor: float = 5.0
    # Gaps up to this many intervals get an estimate of the energy they probably held.
    max_estimated_gap_intervals: int = 15

    def __post_init__(self) -> None:
        if self.frozen_min_intervals < 2:
            raise ValueError(f"frozen_min_intervals={self.frozen_min_intervals}: at least 2")
        if not self.spike_factor >= 1.0:
            raise ValueError(f"spike_factor={self.spike_factor}: at least 1")
        if self.max_estimated_gap_intervals < 0:
            raise ValueError(
                f"max_estimated_gap_intervals={self.max_estimated_gap_intervals}: at least 0"
            )


@dataclass(frozen=True)
class Settings:
    landing_dir: Path
    # None means: use the embedded PostgreSQL kept under state_dir.
    database_url: str | None
    state_dir: Path
    settle_seconds: float = 5.0
    max_files_per_run: int = 5000
    # Streams load in worker processes ("processes"), on threads ("threads"), or "auto":
    # processes on a machine of 4 or more cores when two streams each have process_min_files
    # files waiting (ingest/streams.py).
    stream_workers: str = "auto"
    process_min_files: int = 500
    limits: ValidationLimits = field(default_factory=ValidationLimits)
    file_limits: FileLimits = field(default_factory=FileLimits)
    # Efficiency below evidence.fault_threshold is flagged fault_suspected, on paired evidence.
    evidence: EvidenceRules = field(default_factory=EvidenceRules)
    quality: QualityRules = field(default_factory=QualityRules)
    batch_limits: BatchLimits = field(default_factory=BatchLimits)
    # The freshness check fails when the newest reading is older than this.
    freshness_minutes: float = 60.0
    # Days of raw history (and hourly totals) kept; 0 keeps everything.
    retention_days: int = 90
    # First UTC day of the daily partitions in Dagster.
    first_day: str = "2020-01-01"
    sensor_retry: SensorRetry = field(default_factory=SensorRetry)

    @classmethod
    def from_env(cls) -> Settings:
        state_dir = Path(os.environ.get("ENERGY_STATE_DIR", PROJECT_ROOT / ".energy"))
        return cls(
            landing_dir=Path(os.environ.get("ENERGY_LANDING_DIR", PROJECT_ROOT / "landing")),
            database_url=os.environ.get("DATABASE_URL") or None,
            state_dir=state_dir,
            settle_seconds=float_env("ENERGY_SETTLE_SECONDS", 5.0),
            max_files_per_run=int(float_env("ENERGY_MAX_FILES_PER_RUN", 5000, minimum=1)),
            stream_workers=_choice_env("ENERGY_STREAM_WORKERS", ("auto", "threads", "processes")),
            process_min_files=int(float_env("ENERGY_PROCESS_MIN_FILES", 500, minimum=1)),
            file_limits=FileLimits(
                max_file_bytes=int(float_env("ENERGY_MAX_FILE_MB", 1024) * 2**20),
                max_decompressed_bytes=int(float_env("ENERGY_MAX_DECOMPRESSED_MB", 1024) * 2**20),
                max_rows=int(float_env("ENERGY_MAX_ROWS_PER_FILE", 20_000_000)),
                memory_budget_bytes=int(float_env("ENERGY_PARSE_MEMORY_MB", 4096) * 2**20),
                stream_above_rows=int(float_env("ENERGY_STREAM_ABOVE_ROWS", 1_000_000, minimum=1)),
                chunk_rows=int(float_env("ENERGY_CHUNK_ROWS", 100_000, minimum=1)),
            ),
            batch_limits=BatchLimits(
                max_files=int(float_env("ENERGY_BATCH_MAX_FILES", 2000, minimum=1)),
                max_bytes=int(float_env("ENERGY_BATCH_MAX_MB", 64, minimum=0.001) * 2**20),
                max_rows=int(float_env("ENERGY_BATCH_MAX_ROWS", 100_000, minimum=1)),
                small_file_rows=int(float_env("ENERGY_BATCH_FILE_MAX_ROWS", 50_000, minimum=0)),
            ),
            evidence=EvidenceRules(
                fault_threshold=float_env("ENERGY_FAULT_THRESHOLD", 0.85),
                min_paired_kwh=float_env("ENERGY_MIN_PAIRED_KWH", 1.0, minimum=0.0),
                meter_cadence_seconds=int(float_env("ENERGY_METER_CADENCE_SECONDS", 60)),
                vehicle_cadence_seconds=int(float_env("ENERGY_VEHICLE_CADENCE_SECONDS", 60)),
            ),
            quality=QualityRules(
                frozen_min_intervals=int(float_env("ENERGY_FROZEN_MIN_INTERVALS", 10)),
                spike_factor=float_env("ENERGY_SPIKE_FACTOR", 5.0),
                max_estimated_gap_intervals=int(
                    float_env("ENERGY_MAX_ESTIMATED_GAP_INTERVALS", 15, minimum=0)
                ),
            ),
            freshness_minutes=float_env("ENERGY_FRESHNESS_MINUTES", 60.0),
            first_day=os.environ.get("ENERGY_FIRST_DAY", "2020-01-01"),
            retention_days=int(float_env("ENERGY_RETENTION_DAYS", 90, minimum=0)),
            sensor_retry=SensorRetry(
                base_seconds=float_env("ENERGY_SENSOR_RETRY_SECONDS", 30.0, minimum=0.0),
                max_seconds=float_env("ENERGY_SENSOR_RETRY_MAX_SECONDS", 900.0, minimum=0.0),
            ),
            limits=ValidationLimits(
                max_kwh_per_reading=float_env("ENERGY_MAX_KWH_PER_READING", 10_000.0),
                max_future_minutes=float_env("ENERGY_MAX_FUTURE_MINUTES", 10.0),
            ),
        )

    @property
    def fault_threshold(self) -> float:
        return self.evidence.fault_threshold

    def with_landing_dir(self, landing_dir: Path | str | None) -> Settings:
        return self if landing_dir is None else replace(self, landing_dir=Path(landing_dir))
