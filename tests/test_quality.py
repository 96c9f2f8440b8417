"""Data quality per device and day: the pure rules on hand-made readings, with the expected
numbers worked out by hand beside each test, and one refresh of loaded files in PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from energy_pipelines.analytics.binary_copy import parse_copy_binary
from energy_pipelines.analytics.quality import (
    encode_devices,
    fold_day,
    next_through,
    quality_of_day,
)
from energy_pipelines.analytics.quality_db import refresh_quality_day
from energy_pipelines.analytics.quality_fold import TOP_K, StreamQuality, empty_state, fold
from energy_pipelines.settings import QualityRules, Settings
from tests.conftest import query
from tests.helpers import scans_of_day
from tests.test_hot_and_daily import load

DAY = date(2026, 2, 11)
METERS = StreamQuality("meter", 1)
VEHICLES = StreamQuality("vehicle", 1)
RULES = QualityRules()  # frozen at 10 intervals, spikes above 5x, estimates up to 15 intervals
Reading = tuple[str, datetime, float, float]  # device, ts, kWh, voltage or SoC


def at(hour: int, minute: int, second: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def minutes(start: datetime, count: int) -> list[datetime]:
    return [start + timedelta(minutes=i) for i in range(count)]


def frame(readings: list[Reading]) -> pl.DataFrame:
    schema = {"device_id": pl.String, "ts": pl.Datetime("us", "UTC"), "kwh": pl.Float64}
    return pl.DataFrame(readings, schema={**schema, "value": pl.Float64}, orient="row")


def varying(device: str, times: list[datetime]) -> list[Reading]:
    """Readings whose energy and voltage never repeat from one minute to the next."""
    return [(device, t, 0.01 * (t.minute % 7 + 1), 230 + (t.minute % 3) / 10) for t in times]


def rows_of(readings: list[Reading], spec: StreamQuality = METERS, **kwargs: object) -> dict:
    table = quality_of_day(frame(readings), DAY, spec, RULES, **kwargs)  # type: ignore[arg-type]
    return {r["device_id"]: r for r in table.iter_rows(named=True)}


def test_gaps_at_the_start_middle_and_end_of_a_device_that_reported_around_the_day() -> None:
    # Every minute from 00:05 to 23:49 (1,425 minutes) except 12:00-12:29 (30).
    times = [t for t in minutes(at(0, 5), 1425) if not at(12, 0) <= t < at(12, 30)]
    around = rows_of(varying("m", times), reported_before=["m"], reported_after=["m"])["m"]
    # Expected all day: gaps 00:00-00:04 (5), 12:00-12:29 (30), 23:50-23:59 (10).
    assert (around["expected_intervals"], around["received_intervals"]) == (1440, 1395)
    assert around["coverage"] == pytest.approx(1395 / 1440)
    assert (around["gap_count"], around["longest_gap_minutes"]) == (3, 30)
    assert (around["expected_from"], around["expected_to"]) == (at(0, 0), at(0, 0) + timedelta(1))
    # Edge gaps have no neighbour on one side, the middle one is longer than 15: no estimate.
    assert (around["estimated_gap_count"], around["estimated_missing_kwh"]) == (0, 0.0)
    alone = rows_of(varying("m", times))["m"]  # nothing the day before or after
    assert (alone["expected_intervals"], alone["gap_count"], alone["longest_gap_minutes"]) == (
        1425,
        1,
        30,
    )
    assert (alone["first_interval"], alone["last_interval"]) == (at(0, 5), at(23, 49))


def test_a_device_starting_mid_day_is_expected_from_its_first_interval() -> None:
    times = minutes(at(14, 0), 600)  # 14:00-23:59
    new = rows_of(varying("m", times), reported_after=["m"])["m"]
    assert (new["expected_intervals"], new["received_intervals"], new["gap_count"]) == (600, 600, 0)
    assert new["coverage"] == 1.0
    known = rows_of(varying("m", times), reported_before=["m"])["m"]
    assert (known["expected_intervals"], known["gap_count"], known["longest_gap_minutes"]) == (
        1440,
        1,
        840,
    )


def _frozen(device: str, start: datetime, repeats: int, kwh: float, volts: float) -> list[Reading]:
    """Distinct readings around `repeats` identical ones from start + 1 minute."""
    before = varying(device, [start])
    same = [(device, t, kwh, volts) for t in minutes(start + timedelta(minutes=1), repeats)]
    return before + same + varying(device, [start + timedelta(minutes=repeats + 1)])


def test_frozen_runs_just_under_and_at_the_threshold() -> None:
    readings = [
        *_frozen("m-under", at(10, 0), 9, 0.5, 231.0),
        *_frozen("m-at", at(10, 0), 10, 0.5, 231.0),
        # A charger at constant power: the energy repeats, the voltage moves. Not frozen.
        *[("m-charging", t, 0.145, 230 + (t.minute % 3) / 10) for t in minutes(at(9, 0), 30)],
        # No energy, but the voltage is stuck: only the voltage run counts.
        *_frozen("m-idle", at(10, 0), 20, 0.0, 229.9),
        # Twelve identical readings broken by a missing minute are two runs of six.
        *[("m-broken", t, 0.5, 231.0) for t in minutes(at(10, 0), 6) + minutes(at(10, 7), 6)],
    ]
    rows = rows_of(readings)
    counts = {d: (r["frozen_runs"], r["frozen_voltage_runs"]) for d, r in rows.items()}
    assert counts == {
        "m-under": (0, 0),
        "m-at": (1, 1),
        "m-charging": (0, 0),
        "m-idle": (0, 1),
        "m-broken": (0, 0),
    }


def test_vehicle_frozen_runs_need_the_state_of_charge_stuck_too() -> None:
    stuck = [("v-stuck", t, 0.15, 60.0) for t in minutes(at(10, 0), 12)]
    charging = [("v-ok", t, 0.15, 60.0 + t.minute / 10) for t in minutes(at(10, 0), 12)]
    rows = rows_of(stuck + charging, VEHICLES)
    assert {d: r["frozen_runs"] for d, r in rows.items()} == {"v-stuck": 1, "v-ok": 0}
    assert rows["v-ok"]["frozen_voltage_runs"] is None


def test_a_spike_against_the_previous_days_and_against_the_day_itself() -> None:
    steady = [("m-1", t, 0.2, 230 + t.minute / 100) for t in minutes(at(10, 0), 30)]
    spikes = [("m-1", at(11, 0), 1.3, 230.0), ("m-1", at(11, 1), 1.25, 230.5)]
    previous = pl.DataFrame({"device_id": ["m-1"] * 4, "max_interval_kwh": [0.2, 0.3, 0.25, 0.0]})
    row = rows_of(steady + spikes, previous=previous)["m-1"]
    # Median of the non-zero maxima 0.2, 0.25, 0.3 is 0.25: above 1.25 is a spike, 1.25 is not.
    assert (row["spike_reference_kwh"], row["spike_count"]) == (0.25, 1)
    assert row["max_interval_kwh"] == 1.3
    # No earlier day: the median of the day's non-zero hourly maxima, 0.1 0.2 0.3 0.2 2.0 -> 0.2.
    hourly = [("m-2", at(h, 0), kwh, 230.0 + h) for h, kwh in enumerate([0.1, 0.2, 0.3, 0.2])]
    hourly += [("m-2", at(4, 30), 2.0, 231.0), ("m-2", at(4, 31), 0.9, 231.1)]
    hourly += [("m-2", at(5, 0), 0.0, 231.0)]
    row = rows_of(hourly)["m-2"]
    assert (row["spike_reference_kwh"], row["spike_count"]) == (0.2, 1)  # 2.0 > 1.0; 0.9 not


def test_more_spikes_than_the_kept_largest_intervals_are_counted_exactly() -> None:
    base = [("m", at(h, 0), 0.1, 230.0 + h) for h in range(20)]
    high = [("m", at(h, 1), 5.0 + h, 231.0 + h) for h in range(TOP_K + 4)]
    row = rows_of(base + high)["m"]
    # Hourly maxima 5..24 have a median of 14.5, five times that is 72.5: no spike. Against the
    # previous days' maximum of 0.1 every one of the 20 high intervals is one.
    assert row["spike_count"] == 0
    previous = pl.DataFrame({"device_id": ["m"], "max_interval_kwh": [0.1]})
    assert rows_of(base + high, previous=previous)["m"]["spike_count"] == TOP_K + 4


def test_two_readings_in_one_interval_and_a_reading_off_the_minute() -> None:
    readings = [
        ("v", at(10, 0), 0.1, 49.5),
        ("v", at(10, 1, 30), 0.2, 50.0),  # off the minute: interval 10:01
        ("v", at(10, 1, 45), 0.3, 49.0),  # same interval: its latest SoC counts
        ("v", at(10, 2), 0.1, 49.5),
    ]
    row = rows_of(readings, VEHICLES)["v"]
    assert (row["expected_intervals"], row["received_intervals"], row["gap_count"]) == (3, 3, 0)
    assert row["max_interval_kwh"] == pytest.approx(0.5)  # 0.2 + 0.3
    # 49.0 at 10:01 is below 49.5 at 10:00 while DC was delivered; with the mean SoC (49.5) it
    # would not be.
    assert row["soc_drop_while_charging"] == 1


def test_a_coarser_cadence_counts_five_minute_intervals() -> None:
    spec = StreamQuality("meter", 5)
    times = [at(10, m) for m in (0, 5, 10, 15, 35, 40, 45, 50, 55)]
    readings = [("m", t, 0.5, 230.0 + t.minute / 10) for t in times]
    readings += [("m", at(10, 31), 0.25, 229.0), ("m", at(10, 33), 0.35, 229.5)]
    row = rows_of(readings, spec)["m"]
    # Intervals 10:00..10:55 are 12; 10:20 and 10:25 are missing; 10:31 and 10:33 are one.
    assert (row["expected_intervals"], row["received_intervals"]) == (12, 10)
    assert (row["gap_count"], row["longest_gap_minutes"], row["cadence_minutes"]) == (1, 10, 5)
    # Two missing intervals between 0.5 (10:15) and 0.6 (10:30): 2 * (0.5 + 0.6) / 2.
    assert row["estimated_missing_kwh"] == pytest.approx(1.1)


def test_state_of_charge_falling_while_charging() -> None:
    readings = [
        ("v", at(10, 0), 0.1, 50.0),
        ("v", at(10, 1), 0.1, 51.0),
        ("v", at(10, 2), 0.1, 50.5),  # falls while charging: 1
        ("v", at(10, 3), 0.0, 50.0),  # falls, but no DC: not counted
        ("v", at(10, 5), 0.1, 49.0),  # after a missing interval: no previous one to compare
        ("v", at(10, 6), 0.2, 48.0),  # falls while charging: 2
    ]
    assert rows_of(readings, VEHICLES)["v"]["soc_drop_while_charging"] == 2
    assert (
        rows_of([(d, t, k, v) for d, t, k, v in readings], METERS)["v"]["soc_drop_while_charging"]
        is None
    )


def test_estimates_for_a_short_gap_and_none_for_a_long_one() -> None:
    readings = [("m", at(10, 0), 0.2, 230.0), ("m", at(10, 16), 0.4, 231.0)]
    readings += [("m", at(10, 33), 0.3, 232.0)]
    row = rows_of(readings)["m"]
    # 15 missing between 0.2 and 0.4: 15 * (0.2 + 0.4) / 2 = 4.5; 16 missing: too long.
    assert (row["gap_count"], row["longest_gap_minutes"]) == (2, 16)
    assert (row["estimated_gap_count"], row["estimated_missing_kwh"]) == (1, pytest.approx(4.5))


def _random_day(seed: int, spec: StreamQuality) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    readings: list[Reading] = []
    for device in range(5):
        t = at(0, 0) + timedelta(seconds=int(rng.integers(0, 3600)))
        kwh, value = 0.1, 230.0
        while t < at(0, 0) + timedelta(days=1):
            if rng.random() < 0.3:
                kwh, value = float(rng.choice([0.0, 0.1, 0.5, 3.0])), float(rng.choice([40, 230]))
            readings.append((f"d{device}", t, kwh, value))
            t += timedelta(seconds=int(rng.choice([30, 60, 60, 60, 300, 7200])))
    return frame(readings)


@pytest.mark.parametrize("spec", [METERS, VEHICLES, StreamQuality("vehicle", 15)])
def test_folding_a_day_in_blocks_equals_folding_it_at_once(spec: StreamQuality) -> None:
    coded, devices = encode_devices(_random_day(7, spec))
    whole = fold(empty_state(), coded, devices, spec, RULES, DAY, 0, spec.per_day)
    h = spec.per_hour
    kept, final = fold_day(
        empty_state(), coded.filter(pl.col("ts") < at(13, 0)), devices, spec, RULES, DAY, 0, 5 * h
    )
    # An empty block, then the rest of the day on the state kept at 05:00.
    later = coded.filter(pl.col("ts") >= at(5, 0))
    _, again = fold_day(kept, later, devices, spec, RULES, DAY, 5 * h, 5 * h)
    assert_frame_equal(again, whole, rel_tol=1e-12)
    assert not final.equals(whole)  # the first fold stopped at 13:00


def test_the_fold_is_kept_before_the_newest_hour_less_the_late_allowance() -> None:
    assert next_through(at(10, 14), DAY, at(0, 0)) == at(9, 0)
    assert next_through(at(10, 16), DAY, at(0, 0)) == at(10, 0)
    assert next_through(at(10, 16), DAY, at(11, 0)) == at(11, 0)  # never moves back
    assert next_through(None, DAY, at(3, 0)) == at(3, 0)


def test_quality_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENERGY_FROZEN_MIN_INTERVALS", "6")
    monkeypatch.setenv("ENERGY_SPIKE_FACTOR", "3.5")
    monkeypatch.setenv("ENERGY_MAX_ESTIMATED_GAP_INTERVALS", "4")
    assert Settings.from_env().quality == QualityRules(6, 3.5, 4)
    monkeypatch.setenv("ENERGY_SPIKE_FACTOR", "0.5")
    with pytest.raises(ValueError, match="spike_factor"):
        Settings.from_env()


def test_binary_copy_rows_are_checked_before_they_are_used() -> None:
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    row = (2).to_bytes(2, "big") + (8).to_bytes(4, "big") + (42).to_bytes(8, "big", signed=True)
    row += (8).to_bytes(4, "big") + np.array([1.5], ">f8").tobytes()
    ids, values = parse_copy_binary(header + row + b"\xff\xff", "if")
    assert (ids.tolist(), values.tolist()) == ([42], [1.5])
    with pytest.raises(ValueError, match="expected"):
        parse_copy_binary(header + row[:-1] + b"\xff\xff", "if")


def _meter_rows(start: datetime, count: int, kwh: float = 0.2) -> list[str]:
    return [
        f"m-1,{kwh},{230 + i % 3 / 10},{t.isoformat()}" for i, t in enumerate(minutes(start, count))
    ]


def _quality(db, day: date) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    names = [
        "device_id",
        "expected_intervals",
        "received_intervals",
        "gap_count",
        "longest_gap_minutes",
        "estimated_gap_count",
        "estimated_missing_kwh",
        "soc_drop_while_charging",
        "expected_to",
    ]
    rows = query(db, f"SELECT {', '.join(names)} FROM daily_device_quality WHERE day = $1", (day,))
    return {r[0]: dict(zip(names, r, strict=True)) for r in rows}


def load_without_summaries(db, settings: Settings, stream: str, rows: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Load a file and drop the hour summaries its load may have left (sql/019): the refresh
    then reads every hour it has not folded from history."""
    load(db, settings, stream, rows)
    with db.cursor() as cur:
        cur.execute("DELETE FROM device_hour_quality")
    db.commit()


def test_a_refresh_of_loaded_files_follows_late_readings_duplicates_and_the_next_day(
    db, database_url: str, settings: Settings
) -> None:
    before = DAY - timedelta(days=1)
    load_without_summaries(db, settings, "meter", _meter_rows(at(23, 59, day=before), 1))
    # 00:00-00:09 and 00:20-00:29 (energy 0.2 and 0.4 around the gap), then 02:00-02:29.
    load_without_summaries(
        db, settings, "meter", _meter_rows(at(0, 0), 10) + _meter_rows(at(0, 20), 10, 0.4)
    )
    load_without_summaries(db, settings, "meter", _meter_rows(at(2, 0), 30))
    vehicle = [(50, 0.1), (51, 0.1), (50.5, 0.1), (50.0, 0.0)]  # SoC falls while charging once
    rows = [f"v-1,{soc},{dc},25,{at(10, i).isoformat()}" for i, (soc, dc) in enumerate(vehicle)]
    load_without_summaries(db, settings, "vehicle", rows)
    scans = scans_of_day(db, "20260210")
    first = refresh_quality_day(db, database_url, DAY, settings)
    assert scans_of_day(db, "20260210") == scans  # only the day's partitions are read
    assert (first.rows, first.readings_read) == ({"meter": 1, "vehicle": 1}, 54)
    m = _quality(db, DAY)["m-1"]
    # Expected from 00:00 (it reported the day before) to 02:29: 150 intervals, 50 received;
    # gaps 00:10-00:19 (10, estimated 10 * (0.2 + 0.4) / 2 = 3) and 00:30-01:59 (90).
    assert (m["expected_intervals"], m["received_intervals"], m["gap_count"]) == (150, 50, 2)
    assert (m["longest_gap_minutes"], m["estimated_gap_count"]) == (90, 1)
    assert m["estimated_missing_kwh"] == pytest.approx(3.0)
    assert _quality(db, DAY)["v-1"]["soc_drop_while_charging"] == 1

    # The meters' fold is kept at 02:00: only the 30 readings after it are read again.
    again = refresh_quality_day(db, database_url, DAY, settings)
    assert (again.readings_read, again.devices_folded_again) == (34, 0)  # and v-1's 4
    assert _quality(db, DAY)["m-1"] == m

    # A late reading before 02:00 and a duplicate of one already kept: m-1 is folded again from
    # the day's start; the duplicate never counts twice.
    load_without_summaries(
        db, settings, "meter", _meter_rows(at(0, 15), 1, 0.3) + _meter_rows(at(2, 0), 1)
    )
    late = refresh_quality_day(db, database_url, DAY, settings)
    # Read: m-1's 21 readings before 02:00, the 30 from 02:00 (the duplicate is not in history)
    # and v-1's 4.
    assert (late.devices_folded_again, late.readings_read) == (1, 55)
    m = _quality(db, DAY)["m-1"]
    assert (m["received_intervals"], m["gap_count"], m["estimated_gap_count"]) == (51, 3, 2)

    # m-1 reports the next day: refreshing that day extends this day's span to its end.
    load_without_summaries(
        db, settings, "meter", _meter_rows(at(0, 0, day=DAY + timedelta(days=1)), 1)
    )
    nxt = refresh_quality_day(db, database_url, DAY + timedelta(days=1), settings)
    assert nxt.neighbours_refreshed == [DAY]
    m = _quality(db, DAY)["m-1"]
    assert (m["expected_intervals"], m["longest_gap_minutes"], m["expected_to"]) == (
        1440,
        1290,  # 02:30-23:59
        at(0, 0, day=DAY + timedelta(days=1)),
    )
    # A fold kept with other rules is not folded on: the day is read from its start again.
    other = replace(settings, quality=QualityRules(frozen_min_intervals=3))
    assert refresh_quality_day(db, database_url, DAY, other).readings_read == 51 + 4
    privileges = query(
        db,
        "SELECT has_table_privilege('energy_loader', 'daily_device_quality',"
        "                           'SELECT, INSERT, DELETE'),"
        "       has_table_privilege('energy_analyst', 'daily_device_quality', 'SELECT'),"
        "       has_table_privilege('energy_analyst', 'daily_device_quality', 'INSERT')",
    )
    assert privileges == [(True, True, False)]
