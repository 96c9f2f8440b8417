"""Write what a load derived for later stages (transform/derived.py), in the load's transaction:
hot status candidates, hourly totals and hour quality summaries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pyarrow.compute as pc

from energy_pipelines.analytics.quality_hours_db import STAGING as QUALITY_STAGING
from energy_pipelines.analytics.quality_hours_db import TABLE as QUALITY_TABLE
from energy_pipelines.contract import CANDIDATE_TABLES, Stream
from energy_pipelines.load.history import add_hourly_totals, may_overlap_history
from energy_pipelines.transform.derived import DerivedRows


def write_derived(cur: Any, stream: Stream, derived: DerivedRows | None) -> None:
    if derived is None:
        return
    cur.adbc_ingest(
        CANDIDATE_TABLES[stream.name], derived.status_candidates.to_arrow(), mode="append"
    )
    add_hourly_totals(cur, stream, derived.hourly_totals)
    if derived.hour_quality is not None:
        write_hour_quality(cur, stream, derived.hour_quality)


def write_hour_quality(cur: Any, stream: Stream, rows: Any) -> None:
    """Keep each device's hour that had no summary yet (the caller holds the stream's load
    lock)."""
    if rows.num_rows == 0:
        return
    hours = pc.min_max(rows["hour"])
    first, last = hours["min"].as_py(), hours["max"].as_py()
    if not may_overlap_history(cur, stream, (first, last + timedelta(hours=1, microseconds=-1))):
        # No loaded file reaches into these hours, so no summary of them exists: COPY them
        # straight in (half the cost of the conflict check below).
        cur.adbc_ingest(QUALITY_TABLE, rows, mode="append")
        return
    cur.adbc_ingest(QUALITY_STAGING, rows, mode="replace", temporary=True)
    names = ", ".join(rows.column_names)
    cur.execute(
        f"INSERT INTO {QUALITY_TABLE} ({names}) SELECT {names} FROM pg_temp.{QUALITY_STAGING}"
        " ON CONFLICT DO NOTHING"
    )
