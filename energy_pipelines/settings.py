"""Run-time configuration, read from the environment once and passed down explicitly.

Each setting's default is written once, on its field, beside the environment variable that
overrides it (`env_field`); `Settings.from_env` reads every such field. Default folders are in
the folder a command runs in (a checkout, or any folder where a user of the installed package
works), never in the package's own folder."""

from __future__ import annotations

import os
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from energy_pipelines.contract import FAULT_THRESHOLD, KWH

# Default folders, in the working folder; ENERGY_LANDING_DIR, ENERGY_STATE_DIR and DAGSTER_HOME
# put each elsewhere.
LANDING_FOLDER = "landing"
STATE_FOLDER = ".energy"
DAGSTER_HOME_FOLDER = ".dagster_home"
MIB = 2**20


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


def folder_env(name: str, default_folder: str) -> Path:
    """A folder from the environment, else `default_folder` in the working folder."""
    raw = os.environ.get(name)
    return Path(raw) if raw else Path.cwd() / default_folder


@dataclass(frozen=True)
class EnvVariable:
    """The environment variable that overrides a setting. A number is read in `unit`s of the
    setting (ENERGY_MAX_FILE_MB sets a byte count in MiB) and must be at least `minimum`; text
    must be one of `choices` when there are some."""

    name: str
    unit: int = 1
    minimum: float | None = None
    choices: tuple[str, ...] = ()

    def read(self, default: Any) -> Any:
        if isinstance(default, str):
            raw = (os.environ.get(self.name) or "").strip() or default
            if self.choices and raw.lower() not in self.choices:
                raise ValueError(f"{self.name}={raw!r} must be one of: {', '.join(self.choices)}")
            return raw.lower() if self.choices else raw
        value = float_env(self.name, default / self.unit, self.minimum) * self.unit
        return int(value) if isinstance(default, int) else value


def env_field(
    default: Any,
    name: str,
    *,
    unit: int = 1,
    minimum: float | None = None,
    choices: tuple[str, ...] = (),
) -> Any:
    """A setting's default and the environment variable that overrides it."""
    return field(default=default, metadata={"env": EnvVariable(name, unit, minimum, choices)})


Config = TypeVar("Config")


def read_env(config: type[Config], **given: Any) -> Config:
    """`config` with each env_field read from the environment (its default when unset), nested
    settings read the same way, and `given` values as they are."""
    values = dict(given)
    for setting in fields(config):  # type: ignore[arg-type]
        if setting.name in values:
            continue
        variable = setting.metadata.get("env")
        if variable is not None:
            values[setting.name] = variable.read(setting.default)
        elif setting.default_factory is not MISSING and is_dataclass(setting.default_factory):
            values[setting.name] = read_env(setting.default_factory)
    return config(**values)


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

    base_seconds: float = env_field(30.0, "ENERGY_SENSOR_RETRY_SECONDS", minimum=0.0)
    max_seconds: float = env_field(900.0, "ENERGY_SENSOR_RETRY_MAX_SECONDS", minimum=0.0)

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th run that did not do the work (1, 2, ...)."""
        return min(self.max_seconds, self.base_seconds * 2 ** max(0, min(attempts - 1, 30)))


@dataclass(frozen=True)
class ValidationLimits:
    """Bounds a reading must respect; everything outside is quarantined with the rule it broke."""

    max_kwh_per_reading: float = env_field(KWH.allowed.high, "ENERGY_MAX_KWH_PER_READING")
    max_future_minutes: float = env_field(10.0, "ENERGY_MAX_FUTURE_MINUTES")
    min_year: int = 2000


@dataclass(frozen=True)
class FileLimits:
    """Bounds on one landing file. Parsing memory and time grow with these, so they bound both;
    a file above a limit is quarantined, not loaded."""

    max_file_bytes: int = env_field(1 << 30, "ENERGY_MAX_FILE_MB", unit=MIB)  # on disk
    # A .csv.gz once expanded.
    max_decompressed_bytes: int = env_field(1 << 30, "ENERGY_MAX_DECOMPRESSED_MB", unit=MIB)
    # As a Parquet footer claims them.
    max_rows: int = env_field(20_000_000, "ENERGY_MAX_ROWS_PER_FILE")
    # Estimated peak memory of parsing one file (see landing.checks for the estimate).
    memory_budget_bytes: int = env_field(4 << 30, "ENERGY_PARSE_MEMORY_MB", unit=MIB)
    # Files with more rows than stream_above_rows are read, validated and loaded in chunks of
    # chunk_rows rows (still one transaction), so memory follows the chunk, not the file.
    stream_above_rows: int = env_field(1_000_000, "ENERGY_STREAM_ABOVE_ROWS", minimum=1)
    chunk_rows: int = env_field(100_000, "ENERGY_CHUNK_ROWS", minimum=1)


@dataclass(frozen=True)
class BatchLimits:
    """How many small files one transaction loads together. Files with more rows than
    small_file_rows load on their own, the next one prepared while one loads (a whole-fleet
    hourly export)."""

    max_files: int = env_field(2000, "ENERGY_BATCH_MAX_FILES", minimum=1)
    max_bytes: int = env_field(64 << 20, "ENERGY_BATCH_MAX_MB", unit=MIB, minimum=0.001)
    # As many rows as a whole-fleet hourly file: fewer transactions for a day of gateway files
    # (a full day of 50 gateways x 5-minute files: 34.6 s with 100,000, 28.8 s with 300,000).
    max_rows: int = env_field(300_000, "ENERGY_BATCH_MAX_ROWS", minimum=1)
    small_file_rows: int = env_field(50_000, "ENERGY_BATCH_FILE_MAX_ROWS", minimum=0)
    # Rows of the batches in flight at once in a process, all streams and sessions together
    # (ingest/pool.py): what bounds a run's memory when it loads on many sessions. Four
    # whole-fleet hourly files: a day's 48 files on 2 sessions a stream peaked at 750 MB.
    rows_in_flight: int = env_field(1_200_000, "ENERGY_ROWS_IN_FLIGHT", minimum=1)


@dataclass(frozen=True)
class EvidenceRules:
    """What an efficiency status may conclude from: the fault threshold, the AC energy the paired
    intervals must carry before their ratio is trusted, and each stream's reading cadence.
    Readings pair by interval of the coarser cadence (a whole number of minutes dividing 60)."""

    fault_threshold: float = env_field(FAULT_THRESHOLD, "ENERGY_FAULT_THRESHOLD")
    min_paired_kwh: float = env_field(1.0, "ENERGY_MIN_PAIRED_KWH", minimum=0.0)
    meter_cadence_seconds: int = env_field(60, "ENERGY_METER_CADENCE_SECONDS")
    vehicle_cadence_seconds: int = env_field(60, "ENERGY_VEHICLE_CADENCE_SECONDS")

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
    frozen_min_intervals: int = env_field(10, "ENERGY_FROZEN_MIN_INTERVALS")
    # A spike: interval energy above this multiple of the device's typical daily maximum.
    spike_factor: float = env_field(5.0, "ENERGY_SPIKE_FACTOR")
    # Gaps up to this many intervals get an estimate of the energy they probably held.
    max_estimated_gap_intervals: int = env_field(
        15, "ENERGY_MAX_ESTIMATED_GAP_INTERVALS", minimum=0
    )

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
    settle_seconds: float = env_field(5.0, "ENERGY_SETTLE_SECONDS")
    max_files_per_run: int = env_field(5000, "ENERGY_MAX_FILES_PER_RUN", minimum=1)
    # Streams load in worker processes ("processes"), on threads ("threads"), or "auto":
    # processes on a machine of 4 or more cores when two streams each have process_min_files
    # files waiting (ingest/streams.py).
    stream_workers: str = env_field(
        "auto", "ENERGY_STREAM_WORKERS", choices=("auto", "threads", "processes")
    )
    process_min_files: int = env_field(500, "ENERGY_PROCESS_MIN_FILES", minimum=1)
    # Sessions a stream's load may use at once, for the key builds of its new tables (0: as
    # many as this process has cores).
    sessions: int = env_field(0, "ENERGY_LOAD_SESSIONS", minimum=0)
    limits: ValidationLimits = field(default_factory=ValidationLimits)
    file_limits: FileLimits = field(default_factory=FileLimits)
    # Efficiency below evidence.fault_threshold is flagged fault_suspected, on paired evidence.
    evidence: EvidenceRules = field(default_factory=EvidenceRules)
    quality: QualityRules = field(default_factory=QualityRules)
    batch_limits: BatchLimits = field(default_factory=BatchLimits)
    # The freshness check fails when the newest reading is older than this.
    freshness_minutes: float = env_field(60.0, "ENERGY_FRESHNESS_MINUTES")
    # Days of raw history (and hourly totals) kept; 0 keeps everything.
    retention_days: int = env_field(90, "ENERGY_RETENTION_DAYS", minimum=0)
    # First UTC day of the daily partitions in Dagster.
    first_day: str = env_field("2020-01-01", "ENERGY_FIRST_DAY")
    sensor_retry: SensorRetry = field(default_factory=SensorRetry)

    @property
    def load_sessions(self) -> int:
        return self.sessions or usable_cores()

    @classmethod
    def from_env(cls) -> Settings:
        return read_env(
            cls,
            landing_dir=folder_env("ENERGY_LANDING_DIR", LANDING_FOLDER),
            database_url=os.environ.get("DATABASE_URL") or None,
            state_dir=folder_env("ENERGY_STATE_DIR", STATE_FOLDER),
        )

    @property
    def fault_threshold(self) -> float:
        return self.evidence.fault_threshold

    def with_landing_dir(self, landing_dir: Path | str | None) -> Settings:
        return self if landing_dir is None else replace(self, landing_dir=Path(landing_dir))
