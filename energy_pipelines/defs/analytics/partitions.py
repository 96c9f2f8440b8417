"""UTC day partitions of the daily tables: one per day that loaded data touched.

The partitions are dynamic: the load adds the days its files touched, the daily sensor and the
CLI the days they refresh. The partition view then lists days with data only, where a fixed
daily range would list every day since a start date, nearly all of them empty. Keys are ISO
dates, so the UI's alphabetical sort is the calendar's order. Days before ENERGY_FIRST_DAY are
never added (nor recomputed)."""

from collections.abc import Iterable
from datetime import date

import dagster as dg

from energy_pipelines.settings import Settings

DAILY_PARTITIONS = dg.DynamicPartitionsDefinition(name="utc_day")


def day_keys(days: Iterable[date], first_day: date | None = None) -> list[str]:
    """The days' partition keys in calendar order, without those before the first day
    (ENERGY_FIRST_DAY when not given)."""
    if first_day is None:
        first_day = date.fromisoformat(Settings.from_env().first_day)
    return sorted({d.isoformat() for d in days if d >= first_day})


def add_day_partitions(instance: dg.DagsterInstance, days: Iterable[date]) -> list[str]:
    """Adds the days' partitions that the instance does not have yet; returns their keys."""
    keys = day_keys(days)
    if keys:
        instance.add_dynamic_partitions(DAILY_PARTITIONS.name, keys)
    return keys
