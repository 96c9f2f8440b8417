"""Late data: re-materialize every day that newly loaded files touched.

The sensor writes nothing that would lose work: how far it has requested runs is its cursor,
returned with the run requests (Dagster stores both together), and PostgreSQL's daily
watermark moves only when the daily assets have recomputed a day (daily_position.py). A
position requested but never done (an evaluation whose result was lost, a daily run that
failed for good) is requested again: from the watermark when the cursor was not stored, or, when
no daily run is in progress and days are still not recomputed, after a back-off.
"""

import json
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import dagster as dg

from energy_pipelines.analytics.daily import days_to_refresh
from energy_pipelines.analytics.daily_position import (
    Positions,
    advance_over_refreshed,
    daily_watermarks,
    days_not_refreshed,
    newest_file_ids,
)
from energy_pipelines.defs.analytics.partitions import DAILY_PARTITIONS, day_keys
from energy_pipelines.defs.resources import EnergyStorage
from energy_pipelines.settings import Settings

_FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@dataclass
class DailyCursor:
    """Per stream, the newest file id whose stale days have been requested; and the attempts
    at requesting again days that runs left undone."""

    requested: Positions = field(default_factory=dict)
    retries: int = 0
    noticed_at: float | None = None  # when undone days were first seen with no run going

    @classmethod
    def parse(cls, text: str | None) -> "DailyCursor":
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            return cls()  # a cursor of an older version: start from the watermark
        if not isinstance(data, dict):
            return cls()
        requested = {str(k): int(v) for k, v in (data.get("requested") or {}).items()}
        return cls(requested, int(data.get("retries", 0)), data.get("noticed_at"))

    def dumps(self) -> str:
        return json.dumps(
            {"requested": self.requested, "retries": self.retries, "noticed_at": self.noticed_at},
            sort_keys=True,
        )


def build_daily_sensor(job: Any, quality_job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name="daily_analytics_sensor",
        jobs=[job, quality_job],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests one daily run and one data-quality run per UTC day touched by files "
            "loaded since the last request (late files and new meter pairings included). How "
            "far it has requested is its cursor; PostgreSQL's daily watermark moves when the "
            "daily assets have recomputed the days. Days that no daily run recomputed (a run "
            "failed for good) are requested again after a back-off "
            "(ENERGY_SENSOR_RETRY_SECONDS, doubling, at most ENERGY_SENSOR_RETRY_MAX_SECONDS)."
        ),
    )
    def daily_analytics_sensor(
        context: dg.SensorEvaluationContext, energy: EnergyStorage
    ) -> dg.SensorResult:
        settings = energy.settings()
        cursor = DailyCursor.parse(context.cursor)
        first_day = date.fromisoformat(settings.first_day)
        with energy.connection() as conn:
            watermark = daily_watermarks(conn)
            newest = newest_file_ids(conn)
            # Without a stored cursor (or with one beyond the newest file: another database),
            # everything after the watermark counts as not requested.
            cursor.requested = {
                s: max(watermark[s], cursor.requested.get(s, 0))
                if cursor.requested.get(s, 0) <= newest[s]
                else watermark[s]
                for s in newest
            }
            new_days: list[date] = []
            if any(newest[s] > cursor.requested[s] for s in newest):
                ranges = {s: (cursor.requested[s], newest[s]) for s in newest}
                new_days = days_to_refresh(conn, ranges)
            again: list[date] = []
            reason = "no loaded files since the last daily refresh"
            if any(watermark[s] < cursor.requested[s] for s in newest):
                again, reason = _undone(context, job, conn, settings, cursor)
            else:
                cursor.retries, cursor.noticed_at = 0, None
            runs = _requests(context, job, quality_job, new_days, _position(newest), "", first_day)
            if again:
                position = _position(cursor.requested)
                retry = f"-retry{cursor.retries}"
                fresh = set(new_days)  # requested anew above with a newer position
                undone = [d for d in again if d not in fresh]
                runs += _requests(context, job, None, undone, position, retry, first_day)
            cursor.requested = dict(newest)
        if runs:
            # The days' partitions exist before their runs are submitted (Dagster applies the
            # partition requests of a tick first); a day the load already added stays as it is.
            keys = sorted({r.partition_key for r in runs if r.partition_key})
            return dg.SensorResult(
                run_requests=runs,
                dynamic_partitions_requests=[DAILY_PARTITIONS.build_add_request(keys)],
                cursor=cursor.dumps(),
            )
        if new_days:
            reason = "the days the new files touched are all before ENERGY_FIRST_DAY"
        return dg.SensorResult(skip_reason=reason, cursor=cursor.dumps())

    return daily_analytics_sensor


def _undone(
    context: dg.SensorEvaluationContext,
    job: Any,
    conn: Any,
    settings: Settings,
    cursor: DailyCursor,
) -> tuple[list[date], str]:
    """Days requested before that the watermark does not cover yet: those to request again now
    (after the back-off, with no daily run in progress), and what the tick says otherwise."""
    going = _runs_in_progress(context, job.name)
    if going:
        return [], f"waiting for {going} daily runs in progress"
    first_day = date.fromisoformat(settings.first_day)
    days = days_not_refreshed(conn, cursor.requested, first_day)
    if not days:
        # What the watermark lags behind needs no recompute (files without readings, days
        # before the first partition): it moves past them, never past work not done.
        advance_over_refreshed(conn, first_day)
        cursor.retries, cursor.noticed_at = 0, None
        return [], "every requested day is recomputed"
    now = time.time()
    if cursor.noticed_at is None:
        cursor.noticed_at = now
    delay = settings.sensor_retry.delay(cursor.retries + 1)
    left = cursor.noticed_at + delay - now
    listed = ", ".join(d.isoformat() for d in days[:10]) + (" ..." if len(days) > 10 else "")
    if left > 0:
        return [], (
            f"{len(days)} requested days are not recomputed and no daily run is in progress "
            f"({listed}): requesting them again in {left:.0f} s (retry {cursor.retries + 1})"
        )
    cursor.retries, cursor.noticed_at = cursor.retries + 1, None
    context.log.warning(f"requesting again days no daily run recomputed: {listed}")
    return days, ""


def _position(positions: Positions) -> str:
    return "-".join(f"{s}{up_to}" for s, up_to in sorted(positions.items()))


def _requests(
    context: dg.SensorEvaluationContext,
    job: Any,
    quality_job: Any | None,
    days: list[date],
    position: str,
    suffix: str,
    first_day: date,
) -> list[dg.RunRequest]:
    requests = []
    kept = set(day_keys(days, first_day))
    for day in days:
        key = day.isoformat()
        if key not in kept:
            context.log.warning(f"{key} is before ENERGY_FIRST_DAY: no daily partition")
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"daily-{key}-{position}{suffix}", partition_key=key, job_name=job.name
            )
        )
        if quality_job is not None:
            requests.append(
                dg.RunRequest(
                    run_key=f"quality-{key}-{position}{suffix}",
                    partition_key=key,
                    job_name=quality_job.name,
                )
            )
    return requests


def _runs_in_progress(context: dg.SensorEvaluationContext, job_name: str) -> int:
    """Runs of the daily job queued or going (none known without an instance, as when a test
    evaluates the sensor on its own)."""
    try:
        instance = context.instance
    except dg.DagsterInvariantViolationError:
        return 0
    statuses = [s for s in dg.DagsterRunStatus if s not in _FINISHED]
    return len(
        instance.get_run_records(
            filters=dg.RunsFilter(job_name=job_name, statuses=statuses), limit=100
        )
    )
