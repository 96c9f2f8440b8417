"""The data-quality rules of docs/analytics.md "Data quality" written as plainly as possible:
one device at a time, one interval at a time, in Python. Slow, and independent of the numpy
fold, summaries and composition it checks."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime
from itertools import pairwise

from energy_pipelines.settings import QualityRules

Reading = tuple[str, datetime, float, float]  # device, ts, kWh, voltage or SoC
Interval = tuple[int, float, float]  # index in the day, energy, value


def _intervals(
    readings: list[Reading], day: date, cadence: int, is_vehicle: bool
) -> dict[str, list[Interval]]:
    """Per device, its received intervals (index in the day, energy, value) in order."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    cells: dict[tuple[str, int], list[tuple[datetime, float, float]]] = defaultdict(list)
    for device, ts, kwh, value in readings:
        cells[device, int((ts - start).total_seconds() // (cadence * 60))].append((ts, kwh, value))
    out: dict[str, list[Interval]] = defaultdict(list)
    for (device, index), got in sorted(cells.items()):
        energy = sum(kwh for _, kwh, _ in got)
        if is_vehicle:
            value = max(got, key=lambda r: r[0])[2]  # the latest SoC
        else:
            value = sum(v for _, _, v in got) / len(got)  # the mean voltage
        out[device].append((index, energy, value))
    return out


def _frozen_runs(
    intervals: list[Interval], same: Callable[[Interval, Interval], bool], key: int, n: int
) -> int:
    """Runs of at least n consecutive intervals, each the `same` as the one before, whose
    `key` field (energy or value) is not zero."""
    runs, length = 0, 0
    for i, item in enumerate(intervals):
        before = intervals[i - 1]
        if i and item[0] == before[0] + 1 and same(before, item):
            length += 1
            continue
        runs += int(i > 0 and length >= n and before[key] != 0)
        length = 1
    return runs + int(bool(intervals) and length >= n and intervals[-1][key] != 0)


def _same_reading(a: Interval, b: Interval) -> bool:
    return a[1] == b[1] and a[2] == b[2]


def _same_value(a: Interval, b: Interval) -> bool:
    return a[2] == b[2]


def reference_rows(
    readings: list[Reading],
    day: date,
    cadence: int,
    is_vehicle: bool,
    rules: QualityRules,
    reported_before: set[str] = frozenset(),  # type: ignore[assignment]
    reported_after: set[str] = frozenset(),  # type: ignore[assignment]
    references: dict[str, float] | None = None,
) -> dict[str, dict[str, object]]:
    """The quality row of each device that reported on `day` (the columns quality_of_day()
    answers, bar the timestamps); `references`: each device's median of earlier days' maxima."""
    per_hour, rows = 60 // cadence, {}
    for device, got in _intervals(readings, day, cadence, is_vehicle).items():
        first, last = got[0][0], got[-1][0]
        lo = 0 if device in reported_before else first
        hi = 24 * per_hour - 1 if device in reported_after else last
        gaps = [b[0] - a[0] - 1 for a, b in pairwise(got) if b[0] > a[0] + 1]
        estimates = [
            (b[0] - a[0] - 1) * (a[1] + b[1]) / 2
            for a, b in pairwise(got)
            if 1 < b[0] - a[0] <= rules.max_estimated_gap_intervals + 1
        ]
        edges = [g for g in (first - lo, hi - last) if g > 0]
        hour_max = [0.0] * 24
        for index, kwh, _ in got:
            hour_max[index // per_hour] = max(hour_max[index // per_hour], kwh)
        own = [m for m in hour_max if m > 0]
        reference = (references or {}).get(device)
        if not reference or reference <= 0:
            reference = statistics.median(own) if own else None
        limit = rules.spike_factor * reference if reference is not None else float("inf")
        drops = sum(1 for a, b in pairwise(got) if b[0] == a[0] + 1 and b[1] > 0 and b[2] < a[2])
        rows[device] = {
            "expected_intervals": hi - lo + 1,
            "received_intervals": len(got),
            "coverage": len(got) / (hi - lo + 1),
            "gap_count": len(gaps) + len(edges),
            "longest_gap_minutes": max(gaps + edges, default=0) * cadence,
            "frozen_runs": _frozen_runs(got, _same_reading, 1, rules.frozen_min_intervals),
            "frozen_voltage_runs": None
            if is_vehicle
            else _frozen_runs(got, _same_value, 2, rules.frozen_min_intervals),
            "spike_count": sum(1 for _, kwh, _ in got if kwh > limit),
            "spike_reference_kwh": reference,
            "max_interval_kwh": max(hour_max),
            "soc_drop_while_charging": drops if is_vehicle else None,
            "estimated_gap_count": len(estimates),
            "estimated_missing_kwh": sum(estimates),
            "reporting_step_minutes": math.gcd(*(b[0] - a[0] for a, b in pairwise(got))) * cadence
            if len(got) > 1
            else None,
        }
    return rows
