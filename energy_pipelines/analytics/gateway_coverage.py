"""Coverage of a UTC day by landing folder (one gateway each), from the manifest alone.

When a gateway goes quiet, every device behind it has a gap at the same time: an operator wants
one line naming the gateway, not a hundred device problems. A folder's hours are the UTC hours
its loaded files covered; a folder is quiet for the hours in which the rest of the fleet sent
readings and it sent none.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import polars as pl

from energy_pipelines.load.database import Connection

# Each loaded reading file's folder and the UTC hours it covered (the manifest's time range).
_FOLDER_HOURS_SQL = """
SELECT stream, regexp_replace(path, '/[^/]*$', '') AS folder, min_ts, max_ts, rows_loaded
  FROM ingested_files
 WHERE status = 'loaded' AND stream IN ('meter', 'vehicle') AND rows_loaded > 0
   AND max_ts >= $1 AND min_ts < $2
"""


@dataclass(frozen=True)
class QuietGateway:
    folder: str
    hours_reported: int
    hours_quiet: int
    longest_quiet_hours: int
    first_quiet_hour: int  # 0-23, UTC


def folder_hours(files: pl.DataFrame, day: date) -> pl.DataFrame:
    """folder, hour (0-23), readings: what each folder's files carried in each hour of the day
    (a file spanning several hours counts in each; its readings are spread evenly)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    first = (pl.col("min_ts") - start).dt.total_hours()
    last = (pl.col("max_ts") - start).dt.total_hours()
    spread = files.with_columns(
        first.cast(pl.Int32).alias("first"), last.cast(pl.Int32).alias("last")
    ).with_columns(
        pl.int_ranges(pl.col("first").clip(0, 23), pl.col("last").clip(0, 23) + 1).alias("hour"),
        (pl.col("rows_loaded") / (pl.col("last") - pl.col("first") + 1)).alias("readings"),
    )
    return (
        spread.explode("hour")
        .group_by("folder", "hour")
        .agg(pl.col("readings").sum())
        .sort("folder", "hour")
    )


def _runs_of_missing(hours: set[int], active: list[int]) -> tuple[int, int, int]:
    """Missing hours among the fleet's active hours: count, longest run, first missing."""
    missing = [h for h in active if h not in hours]
    longest = run = 0
    previous = None
    for hour in missing:
        run = run + 1 if previous is not None and hour == previous + 1 else 1
        longest = max(longest, run)
        previous = hour
    return len(missing), longest, missing[0] if missing else -1


def quiet_gateways(per_hour: pl.DataFrame, min_quiet_hours: int = 1) -> list[QuietGateway]:
    """Folders that sent nothing for at least `min_quiet_hours` of the hours in which the fleet
    sent readings, the quietest first."""
    if per_hour.height == 0:
        return []
    active = sorted(per_hour["hour"].unique().to_list())
    quiet = []
    for folder, hours in per_hour.group_by("folder").agg(pl.col("hour")).iter_rows():
        count, longest, first = _runs_of_missing(set(hours), active)
        if count >= min_quiet_hours:
            quiet.append(QuietGateway(folder, len(hours), count, longest, first))
    return sorted(quiet, key=lambda q: (-q.hours_quiet, q.folder))


def read_folder_hours(conn: Connection, day: date) -> pl.DataFrame:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    with conn.cursor() as cur:
        cur.execute(_FOLDER_HOURS_SQL, (start, start + timedelta(days=1)))
        files = cur.fetch_polars()
    conn.rollback()
    if files.height == 0:
        return pl.DataFrame(schema={"folder": pl.String, "hour": pl.Int32, "readings": pl.Float64})
    return folder_hours(files, day)


def render_coverage_png(per_hour: pl.DataFrame, day: date, max_folders: int = 60) -> bytes:
    """A heat map: one row per folder (the quietest on top), one column per UTC hour, shaded by
    the readings of the hour against the folder's busiest hour."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt
    import numpy as np

    order = quiet_gateways(per_hour, min_quiet_hours=0)[:max_folders]
    folders = [q.folder for q in order]
    grid = np.zeros((max(len(folders), 1), 24))
    for row, folder in enumerate(folders):
        part = per_hour.filter(pl.col("folder") == folder)
        peak = part["readings"].max() or 1.0
        for hour, readings in zip(part["hour"], part["readings"], strict=True):
            grid[row, hour] = readings / peak
    height = 1.2 + 0.18 * len(folders)
    figure, axes = plt.subplots(figsize=(9, height))
    axes.imshow(grid, aspect="auto", cmap="Greens", vmin=0, vmax=1, interpolation="nearest")
    axes.set_yticks(range(len(folders)), folders, fontsize=6)
    axes.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)], fontsize=7)
    axes.set_xlabel("UTC hour")
    axes.set_title(f"Readings per landing folder and hour, {day} (white: nothing)", fontsize=9)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()
