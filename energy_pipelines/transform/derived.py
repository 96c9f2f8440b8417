"""What a load derives for later stages from the rows it inserted: each device's latest reading
(hot status candidates), per-device hourly totals (evidence for analytics) and per-device hour
quality summaries. Pure functions; load/derived.py writes the results in the load's
transaction, so later stages read tables, not the loader."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import pyarrow as pa

from energy_pipelines.analytics.quality_fold import StreamQuality
from energy_pipelines.analytics.quality_hours_db import STREAMS as QUALITY_STREAMS
from energy_pipelines.analytics.quality_hours_db import hour_quality_rows
from energy_pipelines.contract import STREAM_ORDER, Stream
from energy_pipelines.settings import Settings
from energy_pipelines.transform.readings import hourly_totals

# The streams whose loads feed hot status and the daily evidence.
DERIVING_STREAMS = tuple(s.name for s in STREAM_ORDER if s.hourly_totals_table)


@dataclass(frozen=True)
class DerivedRows:
    status_candidates: pl.DataFrame  # latest inserted reading per device (with file_id)
    hourly_totals: pl.DataFrame  # per device and UTC hour
    hour_quality: pa.Table | None  # device_hour_quality rows


def latest_per_device(inserted: pl.DataFrame, stream: Stream) -> pl.DataFrame:
    """Each device's latest reading among the rows a load inserted, with the file_id of the
    file that carried it when the rows have one."""
    device = stream.key[0]
    carried = ["file_id"] if "file_id" in inserted.columns else []
    # Each device's row at its greatest ts: no sort (nor copy) of all the rows.
    return (
        inserted.group_by(device)
        .agg(pl.exclude(device).get(pl.col("ts").arg_max()))
        .sort(device)
        .select(*carried, *stream.key, *stream.value_columns)
    )


def derive(inserted: pl.DataFrame, stream: Stream, settings: Settings) -> DerivedRows | None:
    """The derivations of one write's inserted rows; None for streams without any."""
    if stream.name not in DERIVING_STREAMS or inserted.height == 0:
        return None
    return DerivedRows(
        status_candidates=latest_per_device(inserted, stream),
        hourly_totals=hourly_totals(inserted, stream),
        hour_quality=hour_quality_of(inserted, stream, settings),
    )


def hour_quality_of(inserted: pl.DataFrame, stream: Stream, settings: Settings) -> pa.Table | None:
    """The device_hour_quality rows of inserted rows, by the stream's cadence and the quality
    rules; None for streams without them."""
    if stream.name not in QUALITY_STREAMS:
        return None
    seconds = getattr(settings.evidence, f"{stream.name}_cadence_seconds")
    spec = StreamQuality(stream.name, seconds // 60)
    return hour_quality_rows(inserted, stream, spec, settings.quality)
