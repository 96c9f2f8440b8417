"""The fleet efficiency picture: the distribution of daily ratios and the worst vehicles."""

from __future__ import annotations

import io
from datetime import date, timedelta

import polars as pl

from energy_pipelines.load.database import Connection

WINDOW_DAYS = 7


def recent_efficiency(conn: Connection, last_day: date | None = None) -> pl.DataFrame:
    """Daily rows of the last WINDOW_DAYS computed days (ending at the newest day if not given)."""
    with conn.cursor() as cur:
        if last_day is None:
            cur.execute("SELECT max(day) FROM daily_vehicle_efficiency")
            last_day = cur.fetchone()[0]
        if last_day is None:
            conn.rollback()
            return pl.DataFrame(
                schema={"day": pl.Date, "vehicle_id": pl.String, "efficiency_ratio": pl.Float64}
            )
        cur.execute(
            # The ratio the status was decided on: over paired intervals where computed.
            "SELECT day, vehicle_id, CASE WHEN energy_coverage IS NULL THEN efficiency_ratio"
            " ELSE paired_efficiency_ratio END AS efficiency_ratio, status"
            " FROM daily_vehicle_efficiency"
            " WHERE day > $1 AND day <= $2",
            (last_day - timedelta(days=WINDOW_DAYS), last_day),
        )
        frame = cur.fetch_polars()
    conn.rollback()
    return frame


def worst_vehicles(daily: pl.DataFrame, count: int = 10) -> pl.DataFrame:
    """Vehicles by mean daily ratio over the window, lowest first (days without a ratio skipped)."""
    return (
        daily.drop_nulls("efficiency_ratio")
        .group_by("vehicle_id")
        .agg(pl.col("efficiency_ratio").mean().alias("mean_ratio"), pl.len().alias("days"))
        .sort("mean_ratio", "vehicle_id")
        .head(count)
    )


def vehicle_days(daily: pl.DataFrame) -> tuple[int, int]:
    """Vehicle-days in the window, and those with a ratio (an idle day or one without AC data
    has none): the histogram counts the second; the title and the asset's metadata say both."""
    return daily.height, daily.height - daily["efficiency_ratio"].null_count()


def chart_title(daily: pl.DataFrame) -> str:
    total, with_ratio = vehicle_days(daily)
    return (
        f"Daily efficiency, last {WINDOW_DAYS} days "
        f"({with_ratio} of {total} vehicle-days with a ratio)"
    )


def render_png(daily: pl.DataFrame, fault_threshold: float) -> bytes:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    ratios = daily.drop_nulls("efficiency_ratio")["efficiency_ratio"].to_list()
    worst = worst_vehicles(daily)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    left.hist(ratios, bins=40, range=(0.5, 1.2), color="#3b7dd8")
    left.axvline(fault_threshold, color="#c0392b", linestyle="--", label="fault threshold")
    left.axvline(1.0, color="#7f8c8d", linestyle=":", label="DC = AC")
    left.set_title(chart_title(daily))
    left.set_xlabel("DC delivered / AC consumed")
    left.set_ylabel("vehicle-days")
    left.legend()
    right.barh(
        worst["vehicle_id"].to_list()[::-1],
        worst["mean_ratio"].to_list()[::-1],
        color=["#c0392b" if r < fault_threshold else "#3b7dd8" for r in worst["mean_ratio"]][::-1],
    )
    right.axvline(fault_threshold, color="#c0392b", linestyle="--")
    right.set_title("Worst vehicles (mean daily ratio)")
    right.set_xlim(0, 1.2)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()
