"""Data quality from hour summaries: the rules against a plain reference (quality_reference.py)
on random days, and a day whose loads left hour summaries refreshed without reading its
readings back, late readings and other rules included."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from energy_pipelines.analytics.binary_copy import parse_copy_binary
from energy_pipelines.analytics.daily import materialize_vehicle_day
from energy_pipelines.analytics.quality import quality_of_day
from energy_pipelines.analytics.quality_db import refresh_quality_day
from energy_pipelines.analytics.quality_fold import StreamQuality
from energy_pipelines.contract import METER, VEHICLE, Stream
from energy_pipelines.load.derived import write_hour_quality
from energy_pipelines.load.retention import drop_old_partitions
from energy_pipelines.settings import EvidenceRules, QualityRules, Settings
from energy_pipelines.transform.derived import hour_quality_of
from tests.conftest import query
from tests.quality_reference import Reading, reference_rows
from tests.test_hot_and_daily import load

DAY = date(2026, 2, 11)
START = datetime(2026, 2, 11, tzinfo=UTC)
_INTEGERS = [
    "expected_intervals",
    "received_intervals",
    "gap_count",
    "longest_gap_minutes",
    "frozen_runs",
    "frozen_voltage_runs",
    "spike_count",
    "soc_drop_while_charging",
    "estimated_gap_count",
    "reporting_step_minutes",
]
_FLOATS = ["coverage", "spike_reference_kwh", "max_interval_kwh", "estimated_missing_kwh"]


def random_day(seed: int, devices: int, prefix: str, is_vehicle: bool) -> list[Reading]:
    """Readings with what the rules look for: stuck readings, a stuck voltage, gaps of every
    length, spikes, several readings in one minute, readings off the minute, SoC falls."""
    rng = np.random.default_rng(seed)
    readings: list[Reading] = []
    for d in range(devices):
        t = START + timedelta(minutes=int(rng.integers(0, 240)))
        value = 50.0 if is_vehicle else 230.0
        end = START + timedelta(minutes=int(rng.integers(1200, 1440)))
        while t < end:
            kind = rng.choice(["vary", "stuck", "gap", "spike", "double", "volts"])
            length = int(rng.integers(1, 25))
            kwh = float(rng.choice([0.0, 0.05, 0.1, 0.2]))
            for i in range(length if kind != "gap" else 0):
                second = int(rng.integers(0, 60)) if rng.random() < 0.2 else 0
                at = t + timedelta(minutes=i, seconds=second)
                if kind == "vary":
                    kwh = round(float(rng.uniform(0, 0.3)), 3)
                    value = round(value + float(rng.normal(0, 1)), 1)
                elif kind == "volts":
                    kwh = round(float(rng.uniform(0, 0.3)), 3)
                reading = 3.0 if kind == "spike" and i == 0 else kwh
                readings.append((f"{prefix}{d}", at, reading, value))
                if kind == "double":
                    readings.append((f"{prefix}{d}", at + timedelta(seconds=30), 0.01, value - 1))
            t += timedelta(minutes=length + (int(rng.integers(1, 40)) if kind == "gap" else 0))
    # A device's readings keep one timestamp each: history holds one reading per key.
    unique = {(r[0], r[1]): r for r in readings}
    return [r for r in unique.values() if r[1] < START + timedelta(days=1)]


def _frame(readings: list[Reading]) -> pl.DataFrame:
    schema = {"device_id": pl.String, "ts": pl.Datetime("us", "UTC"), "kwh": pl.Float64}
    return pl.DataFrame(readings, schema={**schema, "value": pl.Float64}, orient="row")


def assert_rows_match(rows: dict[str, dict], expected: dict[str, dict[str, object]]) -> None:
    assert set(rows) == set(expected)
    for device, want in expected.items():
        got = rows[device]
        assert {c: got[c] for c in _INTEGERS} == {c: want[c] for c in _INTEGERS}, device
        for c in _FLOATS:
            assert got[c] == pytest.approx(want[c], rel=1e-12), (device, c)


@pytest.mark.parametrize(
    ("stream", "cadence", "rules"),
    [
        ("meter", 1, QualityRules()),
        ("vehicle", 1, QualityRules()),
        ("meter", 1, QualityRules(frozen_min_intervals=3, spike_factor=2.0)),
        ("vehicle", 5, QualityRules(frozen_min_intervals=2, max_estimated_gap_intervals=3)),
        ("meter", 15, QualityRules(frozen_min_intervals=2, max_estimated_gap_intervals=0)),
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_rules_follow_the_reference_on_random_days(
    stream: str, cadence: int, rules: QualityRules, seed: int
) -> None:
    is_vehicle = stream == "vehicle"
    readings = random_day(seed, 12, stream[0], is_vehicle)
    before, after = (
        {f"{stream[0]}{d}" for d in range(0, 12, 3)},
        {f"{stream[0]}{d}" for d in (1, 4)},
    )
    references = {f"{stream[0]}{d}": 0.02 * d for d in range(6)}
    previous = pl.DataFrame(
        {"device_id": list(references), "max_interval_kwh": list(references.values())}
    )
    table = quality_of_day(
        _frame(readings),
        DAY,
        StreamQuality(stream, cadence),
        rules,
        reported_before=before,
        reported_after=after,
        previous=previous,
    )
    expected = reference_rows(readings, DAY, cadence, is_vehicle, rules, before, after, references)
    assert_rows_match({r["device_id"]: r for r in table.iter_rows(named=True)}, expected)
    # The random days hold what the rules count.
    totals = table.select(pl.col(_INTEGERS[2:]).sum()).row(0, named=True)
    assert totals["gap_count"] and totals["spike_count"]
    assert totals["estimated_gap_count"] or rules.max_estimated_gap_intervals == 0
    assert totals["frozen_runs"] or cadence > 1


def _csv(stream: Stream, readings: list[Reading]) -> list[str]:
    if stream is METER:
        return [f"{d},{kwh},{v},{t.isoformat()}" for d, t, kwh, v in readings]
    return [f"{d},{v},{kwh},25,{t.isoformat()}" for d, t, kwh, v in readings]


def _inserted(stream: Stream, readings: list[Reading]) -> pl.DataFrame:
    """The rows the loader hands its hook: the stream's columns."""
    names = {METER.name: ("meter_id", "kwh_consumed_ac", "voltage")}
    device, kwh, value = names.get(stream.name, ("vehicle_id", "kwh_delivered_dc", "soc"))
    return _frame(readings).rename({"device_id": device, "kwh": kwh, "value": value})


def load_with_summaries(db, settings: Settings, stream: Stream, readings: list[Reading]) -> None:  # type: ignore[no-untyped-def]
    """Load readings as a file, then hand the rows to the loader's hour summaries again, in a
    transaction of their own (a summary already kept for an hour stays)."""
    load(db, settings, stream.name, _csv(stream, readings))
    rows = hour_quality_of(_inserted(stream, readings), stream, settings)
    assert rows is not None
    with db.cursor() as cur:
        write_hour_quality(cur, stream, rows)
    db.commit()


def _rows(db, day: date) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    names = ["device_id", *_INTEGERS, *_FLOATS]
    found = query(db, f"SELECT {', '.join(names)} FROM daily_device_quality WHERE day = $1", (day,))
    return {r[0]: dict(zip(names, r, strict=True)) for r in found}


def test_a_day_of_hour_summaries_is_refreshed_without_reading_history(
    db, database_url: str, settings: Settings
) -> None:
    rules = settings.quality
    meters = random_day(11, 4, "m", False)
    vehicles = random_day(12, 4, "v", True)
    # Files of six hours each, as gateways send them; every load leaves its hour summaries.
    for stream, readings in ((METER, meters), (VEHICLE, vehicles)):
        for first in range(0, 24, 6):
            block = [r for r in readings if first <= r[1].hour < first + 6]
            load_with_summaries(db, settings, stream, block)
    done = refresh_quality_day(db, database_url, DAY, settings)
    assert (done.readings_read, done.rows) == (0, {"meter": 4, "vehicle": 4})
    got = _rows(db, DAY)
    assert_rows_match(
        {d: r for d, r in got.items() if d[0] == "m"}, reference_rows(meters, DAY, 1, False, rules)
    )
    assert_rows_match(
        {d: r for d, r in got.items() if d[0] == "v"}, reference_rows(vehicles, DAY, 1, True, rules)
    )

    # A late reading in an hour m0 already reported in (05:xx, before the kept fold): the
    # hour's summary no longer counts all its readings, so m0 is folded again from its other
    # hours' summaries and that hour's readings alone.
    hour = [r for r in meters if r[0] == "m0" and r[1].hour == 5]
    late = ("m0", START + timedelta(hours=5, minutes=59, seconds=59), 0.7, 231.5)
    assert hour and late[1] not in {r[1] for r in hour}
    load_with_summaries(db, settings, METER, [late])
    again = refresh_quality_day(db, database_url, DAY, settings)
    assert (again.devices_folded_again, again.readings_read) == (1, len(hour) + 1)
    assert_rows_match(
        {d: r for d, r in _rows(db, DAY).items() if d[0] == "m"},
        reference_rows([*meters, late], DAY, 1, False, rules),
    )

    # Hours without a summary (v9's: its load's summaries are gone) are read from history; so
    # is every hour when the summaries were made with other rules.
    new = [("v9", START + timedelta(hours=22, minutes=m), 0.1, 60.0 + m) for m in range(20)]
    load_with_summaries(db, settings, VEHICLE, new)
    with db.cursor() as cur:
        cur.execute("DELETE FROM device_hour_quality WHERE device_id = 'v9'")
    db.commit()
    assert refresh_quality_day(db, database_url, DAY, settings).readings_read == len(new)
    other = QualityRules(frozen_min_intervals=4)
    redone = refresh_quality_day(db, database_url, DAY, replace(settings, quality=other))
    assert redone.readings_read == len(meters) + 1 + len(vehicles) + len(new)
    assert_rows_match(
        {d: r for d, r in _rows(db, DAY).items() if d[0] == "v"},
        reference_rows([*vehicles, *new], DAY, 1, True, other),
    )


def test_binary_copy_reads_32_bit_integers_and_the_largest_energies() -> None:
    header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    top = np.array([3.5] + [-np.inf] * 15, ">f8").tobytes()
    row = (2).to_bytes(2, "big") + (4).to_bytes(4, "big") + (7).to_bytes(4, "big", signed=True)
    row += (128).to_bytes(4, "big") + top
    counts, largest = parse_copy_binary(header + row + row + b"\xff\xff", "nt")
    assert counts.tolist() == [7, 7] and largest.shape == (2, 16)
    assert largest[0, 0] == 3.5 and np.isneginf(largest[0, 1:]).all()


def test_retention_drops_the_hour_summaries_of_the_days_it_drops(db, settings: Settings) -> None:
    old = [("m1", START - timedelta(days=3, minutes=-m), 0.1, 230.0) for m in range(3)]
    kept = [("m1", START + timedelta(minutes=m), 0.1, 230.0) for m in range(3)]
    load_with_summaries(db, settings, METER, old + kept)
    drop_old_partitions(db, keep_days=1, today=DAY)
    assert query(db, "SELECT device_id, hour FROM device_hour_quality") == [("m1", START)]
    assert query(
        db, "SELECT has_table_privilege('energy_loader', 'device_hour_quality', 'SELECT, INSERT')"
    ) == [(True,)]


@pytest.mark.parametrize("every", [5, 15])
def test_a_meter_reporting_less_often_than_the_cadence_setting(
    db, database_url: str, settings: Settings, every: int
) -> None:
    """Another cadence (docs/analytics.md "Data quality"): measured against the setting, and
    named."""
    load(db, settings, "correlation", ["m-1,v-1"])
    charge = START + timedelta(hours=20)
    # The vehicle reports every minute of a 4-hour charge (0.1 kWh DC each); the meter every
    # `every` minutes, each reading the energy of its `every` minutes (0.11 kWh AC a minute).
    load(db, settings, "vehicle", _csv(VEHICLE, [
        ("v-1", charge + timedelta(minutes=m), 0.1, 50 + m / 5) for m in range(240)
    ]))  # fmt: skip
    readings = 240 // every
    load(db, settings, "meter", _csv(METER, [
        ("m-1", charge + timedelta(minutes=m), round(0.11 * every, 3), 230.0 + m % 3)
        for m in range(0, 240, every)
    ]))  # fmt: skip
    per_minute = replace(settings, evidence=EvidenceRules())  # the default, 60 s
    result = refresh_quality_day(db, database_url, DAY, per_minute)
    meter = _rows(db, DAY)["m-1"]
    # Against 1-minute intervals the meter is expected from its first reading to its last and
    # misses `every` - 1 intervals after each reading; its reporting step says why.
    expected = 240 - every + 1
    assert (meter["received_intervals"], meter["expected_intervals"]) == (readings, expected)
    assert (meter["gap_count"], meter["longest_gap_minutes"]) == (readings - 1, every - 1)
    assert meter["reporting_step_minutes"] == every
    assert result.slower == [("meter", "m-1", every, 1, readings)]
    # Short gaps get estimates linear between neighbours, as the rule says: here they overstate
    # (each reading already holds its minutes), which is why the check names the device.
    assert every - 1 <= settings.quality.max_estimated_gap_intervals
    assert meter["estimated_missing_kwh"] == pytest.approx(
        (every - 1) * 0.11 * every * (readings - 1)
    )
    materialize_vehicle_day(db, DAY, per_minute.evidence)
    [(coverage, paired, status)] = query(
        db, "SELECT energy_coverage, paired_efficiency_ratio, status FROM daily_vehicle_efficiency"
    )
    # Paired by minute, `every` minutes of AC meet one minute of DC: a wrong verdict.
    assert coverage == pytest.approx(1 / every)
    assert paired == pytest.approx(0.1 / (0.11 * every))
    assert status == "fault_suspected"

    # With the setting at the meter's cadence, both agree with the readings.
    fitting = replace(settings, evidence=EvidenceRules(meter_cadence_seconds=every * 60))
    result = refresh_quality_day(db, database_url, DAY, fitting)
    meter = _rows(db, DAY)["m-1"]
    assert (meter["received_intervals"], meter["expected_intervals"], meter["gap_count"]) == (
        readings,
        readings,
        0,
    )
    assert meter["reporting_step_minutes"] == every and result.slower == []
    materialize_vehicle_day(db, DAY, fitting.evidence)
    [(coverage, paired, status)] = query(
        db, "SELECT energy_coverage, paired_efficiency_ratio, status FROM daily_vehicle_efficiency"
    )
    assert (coverage, status) == (pytest.approx(1.0), "normal")
    assert paired == pytest.approx(24.0 / 26.4)
