"""Hot status, daily efficiency and the 24-hour summary, against hand-computed expectations."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime

import pytest

from energy_pipelines.analytics.daily import (
    advance_daily_watermark,
    materialize_meter_day,
    materialize_vehicle_day,
    pending_days,
)
from energy_pipelines.analytics.performance import UnknownVehicle, vehicle_performance
from energy_pipelines.contract import CORRELATION, METER, VEHICLE
from energy_pipelines.hot_status.refresh import refresh_status
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.load.database import connect
from energy_pipelines.settings import EvidenceRules, Settings
from tests.conftest import query
from tests.helpers import METER_HEADER, VEHICLE_HEADER, as_user, assert_forbidden, write_csv

DAY = date(2026, 2, 11)
_counter = iter(range(10_000))


def load(db, settings: Settings, stream: str, rows: list[str]) -> None:  # type: ignore[no-untyped-def]
    header = {"meter": METER_HEADER, "vehicle": VEHICLE_HEADER}.get(stream, "meterId,vehicleId")
    write_csv(settings.landing_dir, stream, f"f{next(_counter)}.csv", header, rows)
    contract = {"meter": METER, "vehicle": VEHICLE, "correlation": CORRELATION}[stream]
    [outcome] = ingest_stream(db, contract, settings, run_id="test")
    assert outcome.manifest.status == "loaded"


def meter(meter_id: str, kwh: float, ts: str) -> str:
    return f"{meter_id},{kwh},230,{ts}"


def vehicle(vehicle_id: str, dc: float, ts: str, soc: float = 50, temp: float = 25) -> str:
    return f"{vehicle_id},{soc},{dc},{temp},{ts}"


def test_late_file_never_moves_status_back_and_refresh_is_idempotent(db, settings) -> None:
    load(db, settings, "vehicle", [vehicle("v-1", 0.1, "2026-02-11T10:05:00Z", soc=60)])
    first = refresh_status(db, VEHICLE)
    assert (first.files, first.devices_changed) == (1, 1)
    load(
        db,
        settings,
        "vehicle",
        [
            vehicle("v-1", 0.1, "2026-02-11T10:00:00Z", soc=50),  # older than the status
            vehicle("v-2", 0.1, "2026-02-11T09:00:00Z", soc=10),
        ],
    )
    second = refresh_status(db, VEHICLE)
    assert (second.files, second.devices_seen, second.devices_changed) == (1, 2, 1)
    assert query(db, "SELECT vehicle_id, ts::text, soc FROM vehicle_current_status ORDER BY 1") == [
        ("v-1", "2026-02-11 10:05:00+00", 60.0),
        ("v-2", "2026-02-11 09:00:00+00", 10.0),
    ]
    again = refresh_status(db, VEHICLE)
    assert (again.files, again.devices_changed) == (0, 0)
    load(db, settings, "vehicle", [vehicle("v-1", 0.2, "2026-02-11T11:00:00Z", soc=70)])
    refresh_status(db, VEHICLE)
    assert query(db, "SELECT soc FROM vehicle_current_status WHERE vehicle_id = 'v-1'") == [(70.0,)]


def _fleet_day(db, settings) -> None:  # type: ignore[no-untyped-def]
    t1, t2 = "2026-02-11T00:00:00Z", "2026-02-11T23:59:00Z"
    load(
        db,
        settings,
        "correlation",
        [
            "m-1,v-1",
            "m-2,v-2",
            "m-3,v-3",
            "m-4,v-4",
            "m-6,v-6",
            "m-6,v-7",
            "m-8a,v-8",
            "m-8b,v-8",
            "m-9,v-9",
        ],
    )
    load(
        db,
        settings,
        "meter",
        [
            meter("m-1", 1.0, t1),
            meter("m-1", 1.0, t2),
            meter("m-1", 5.0, "2026-02-12T00:00:00Z"),  # next day
            meter("m-2", 1.0, t1),
            meter("m-3", 1.0, t1),
            meter("m-6", 1.0, t1),
            meter("m-8a", 1.0, t1),
            meter("m-8b", 1.0, t2),
            meter("m-9", 1.0, t1),
        ],
    )
    load(
        db,
        settings,
        "vehicle",
        [
            vehicle("v-1", 0.9, t1, temp=20),
            vehicle("v-1", 0.9, t2, temp=30),
            vehicle("v-1", 9.0, "2026-02-12T00:00:00Z"),
            vehicle("v-2", 0.8, t1),
            vehicle("v-3", 1.2, t1),
            vehicle("v-4", 0.5, t1),
            vehicle("v-5", 0.5, t1),
            vehicle("v-6", 0.9, t1),
            vehicle("v-7", 0.5, t1),
            vehicle("v-8", 1.7, t1),
            vehicle("v-9", 1.0, t1),
        ],
    )


def test_daily_efficiency_statuses_by_hand(db, settings: Settings) -> None:
    _fleet_day(db, settings)
    result = materialize_vehicle_day(db, DAY, EvidenceRules())
    rows = {
        r[0]: r[1:]
        for r in query(
            db,
            "SELECT vehicle_id, total_kwh_delivered_dc, total_kwh_consumed_ac, efficiency_ratio,"
            " avg_battery_temp, vehicle_record_count, meter_record_count, meter_ids,"
            " shared_meter, status FROM daily_vehicle_efficiency WHERE day = $1",
            (DAY,),
        )
    }
    assert result.rows == len(rows) == 9
    dc, ac, ratio, temp, n_vehicle, n_meter, _meters, shared, status = rows["v-1"]
    assert (dc, ac, temp, n_vehicle, n_meter, shared, status) == (
        pytest.approx(1.8),
        2.0,
        25.0,
        2,
        2,
        False,
        "normal",
    )
    assert ratio == pytest.approx(0.9)
    expected = {
        "v-2": ("fault_suspected", 0.8, False),
        "v-3": ("implausible", 1.2, False),
        "v-4": ("no_ac_data", None, False),
        "v-5": ("uncorrelated", None, False),
        "v-6": ("normal", 0.9, True),
        "v-7": ("fault_suspected", 0.5, True),
        # Its two meters never reported in the same minute: no interval is paired.
        "v-8": ("insufficient_data", 0.85, False),
        "v-9": ("normal", 1.0, False),  # so is exactly 1.0
    }
    for vehicle_id, (want_status, want_ratio, want_shared) in expected.items():
        got = rows[vehicle_id]
        assert got[8] == want_status, vehicle_id
        assert got[2] == (None if want_ratio is None else pytest.approx(want_ratio)), vehicle_id
        assert got[7] is want_shared, vehicle_id
    assert rows["v-4"][1] == 0.0 and rows["v-4"][5] == 0  # paired, but the meter sent nothing
    assert rows["v-5"][1] is None and rows["v-5"][6] == []  # no meter paired
    assert rows["v-8"][6] == ["m-8a", "m-8b"] and rows["v-8"][1] == 2.0
    assert sorted(v for v, _s, _r in result.flagged) == ["v-2", "v-3", "v-7"]

    # A stricter threshold is configuration, not code.
    materialize_vehicle_day(db, DAY, EvidenceRules(fault_threshold=0.95))
    assert query(
        db,
        "SELECT status FROM daily_vehicle_efficiency WHERE day = $1 AND vehicle_id = 'v-1'",
        (DAY,),
    ) == [("fault_suspected",)]

    assert materialize_meter_day(db, DAY) == 7
    assert query(
        db,
        "SELECT total_kwh_consumed_ac, avg_voltage, min_voltage, max_voltage, record_count"
        " FROM daily_meter_usage WHERE day = $1 AND meter_id = 'm-1'",
        (DAY,),
    ) == [(2.0, 230.0, 230.0, 230.0, 2)]


def test_late_files_and_new_pairings_mark_their_days_stale(db, settings: Settings) -> None:
    load(db, settings, "vehicle", [vehicle("v-10", 0.9, "2026-02-10T08:00:00Z")])
    load(db, settings, "meter", [meter("m-10", 1.0, "2026-02-10T08:00:00Z")])
    pending = pending_days(db)
    assert pending.days == [date(2026, 2, 10)]
    materialize_vehicle_day(db, date(2026, 2, 10), EvidenceRules())
    materialize_meter_day(db, date(2026, 2, 10))
    advance_daily_watermark(db, pending)
    assert pending_days(db).days == []
    status = (
        "SELECT status, efficiency_ratio FROM daily_vehicle_efficiency WHERE vehicle_id = 'v-10'"
    )
    assert query(db, status) == [("uncorrelated", None)]

    # The pairing arrives after the readings: the day is recomputed with it.
    load(db, settings, "correlation", ["m-10,v-10"])
    pending = pending_days(db)
    assert pending.days == [date(2026, 2, 10)]
    materialize_vehicle_day(db, date(2026, 2, 10), EvidenceRules())
    advance_daily_watermark(db, pending)
    assert query(db, status) == [("normal", pytest.approx(0.9))]

    # The vehicle charged at 09:00 too, but its meter's reading of that minute is missing: the
    # ratio is judged on the paired 08:00 alone, with the coverage that says so.
    load(db, settings, "vehicle", [vehicle("v-10", 0.9, "2026-02-10T09:00:00Z")])
    materialize_vehicle_day(db, date(2026, 2, 10), EvidenceRules())
    evidence = (
        "SELECT status, efficiency_ratio, paired_efficiency_ratio, energy_coverage"
        " FROM daily_vehicle_efficiency WHERE vehicle_id = 'v-10'"
    )
    assert query(db, evidence) == [("normal", pytest.approx(1.8), pytest.approx(0.9), 0.5)]

    # A late meter file fills the gap: the day is stale again and judged on both minutes.
    load(db, settings, "meter", [meter("m-10", 1.5, "2026-02-10T09:00:00Z")])
    pending = pending_days(db)
    assert pending.days == [date(2026, 2, 10)]
    materialize_vehicle_day(db, date(2026, 2, 10), EvidenceRules())
    assert query(db, evidence) == [
        ("fault_suspected", pytest.approx(1.8 / 2.5), pytest.approx(1.8 / 2.5), 1.0)
    ]


def test_performance_window_edges_and_rounding(db, settings: Settings) -> None:
    load(db, settings, "correlation", ["m-1,v-1", "m-2,v-1"])
    load(
        db,
        settings,
        "meter",
        [
            meter("m-1", 100.0, "2026-02-11T00:00:00Z"),  # exactly as_of - 24 h: outside
            meter("m-1", 1.0, "2026-02-11T12:00:00Z"),
            meter("m-2", 2.0, "2026-02-12T00:00:00Z"),  # exactly as_of: inside
        ],
    )
    load(
        db,
        settings,
        "vehicle",
        [
            vehicle("v-1", 50.0, "2026-02-11T00:00:00Z", temp=99),
            vehicle("v-1", 1.0, "2026-02-11T12:00:00Z", temp=20.004),
            vehicle("v-1", 1.0, "2026-02-12T00:00:00Z", temp=21.0),
            vehicle("v-1", 7.0, "2026-02-12T00:00:01Z"),  # after as_of
        ],
    )
    summary = vehicle_performance(db, "v-1", datetime(2026, 2, 12, tzinfo=UTC))
    assert summary == {
        "vehicleId": "v-1",
        "period": "24 hours",
        "totalKwhConsumedAc": 3.0,
        "totalKwhDeliveredDc": 2.0,
        "efficiencyRatio": 0.6667,
        "averageBatteryTemp": 20.5,
        "recordCount": 2,
        # Its two meters never reported in the same minute: no interval is paired.
        "status": "insufficient_data",
        "pairedKwhConsumedAc": 0.0,
        "pairedKwhDeliveredDc": 0.0,
        "pairedEfficiencyRatio": None,
        "energyCoverage": 0.0,
        "meterRecordCount": 2,
        "window": {"start": "2026-02-11T00:00:00Z", "end": "2026-02-12T00:00:00Z"},
        "keptFrom": "2026-02-11T00:00:00Z",
    }
    with pytest.raises(UnknownVehicle):
        vehicle_performance(db, "v-404", datetime(2026, 2, 12, tzinfo=UTC))


def test_performance_locks_only_the_partitions_of_its_window(db, settings: Settings) -> None:
    days = ["2026-02-08", "2026-02-09", "2026-02-10", "2026-02-11", "2026-02-12"]
    hours = [f"{d}T{h:02d}:00:00Z" for d in days for h in range(24)]
    load(db, settings, "correlation", ["m-1,v-1"])
    load(db, settings, "meter", [meter(f"m-{i}", 1.0, ts) for i in range(20) for ts in hours])
    load(db, settings, "vehicle", [vehicle(f"v-{i}", 0.9, ts) for i in range(20) for ts in hours])
    # Prepared statements and pooled connections plan with parameters: the function must prune
    # for them too, so call it through a generic plan.
    with db.cursor() as cur:
        cur.execute("SET plan_cache_mode = force_generic_plan")
        for _ in range(3):
            cur.execute(
                "SELECT status FROM vehicle_performance_24h($1, $2)",
                ("v-1", datetime(2026, 2, 12, 6, 30, tzinfo=UTC)),
            )
            assert cur.fetchall() == [("normal",)]
        cur.execute(
            "SELECT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE l.pid = pg_backend_pid() AND c.relname LIKE '%_readings_history_p%'"
        )
        locked = {row[0] for row in cur.fetchall()}
    db.rollback()
    # Whole hours come from the hourly totals; only the window's two edges read history.
    # The parent's own index (..._history_pkey) may be locked too: it is no day's partition.
    days_locked = {m.group(1) for name in locked if (m := re.search(r"_p(\d{8})", name))}
    assert days_locked == {"20260211", "20260212"}


def _walk(node):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_cli_performance_prints_json_and_exits_2_for_unknown(db, settings, database_url) -> None:
    load(db, settings, "correlation", ["m-1,v-1"])
    load(db, settings, "meter", [meter("m-1", 1.0, "2026-02-11T12:00:00Z")])
    load(db, settings, "vehicle", [vehicle("v-1", 0.9, "2026-02-11T12:00:00Z")])
    env = {**os.environ, "DATABASE_URL": database_url}
    command = [sys.executable, "-m", "energy_pipelines.cli", "performance"]
    done = subprocess.run(
        [*command, "v-1", "--as-of", "2026-02-12T00:00:00Z"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == vehicle_performance(db, "v-1", datetime(2026, 2, 12, tzinfo=UTC))
    assert printed["efficiencyRatio"] == 0.9
    unknown = subprocess.run(
        [*command, "v-404"], env=env, capture_output=True, text=True, timeout=120
    )
    assert unknown.returncode == 2
    assert "v-404" in unknown.stderr and "unknown" in unknown.stderr


def test_analyst_role_reads_but_cannot_write(db, settings, database_url: str) -> None:
    load(db, settings, "vehicle", [vehicle("v-1", 0.9, "2026-02-11T12:00:00Z")])
    materialize_vehicle_day(db, DAY, EvidenceRules())
    analyst = connect(as_user(database_url, "energy_analyst"))
    try:
        with analyst.cursor() as cur:
            cur.execute("SELECT current_user, count(*) FROM vehicle_readings_history")
            assert cur.fetchone() == ("energy_analyst", 1)
            cur.execute("SELECT vehicle_id, status FROM v_fleet_efficiency_latest")
            assert cur.fetchall() == [("v-1", "uncorrelated")]
        analyst.rollback()
        assert_forbidden(
            analyst,
            (
                "INSERT INTO meter_vehicle_correlation (meter_id, vehicle_id, file_id)"
                " VALUES ('m', 'v', 1)",
                "DELETE FROM vehicle_readings_history",
                "UPDATE daily_vehicle_efficiency SET status = 'normal'",
                "CREATE TABLE analyst_scratch (x int)",
                "DROP TABLE rejected_rows",
            ),
        )
    finally:
        analyst.close()


def test_a_stream_committing_a_lower_file_id_later_is_not_skipped(
    db, settings: Settings, database_url: str
) -> None:
    """Streams load at once: a meter file can take id N and commit after a vehicle file with
    id N+1 has been folded into the daily refresh. Its day must still be refreshed."""
    slow = connect(database_url)
    try:
        with slow.cursor() as cur:
            cur.execute(
                "INSERT INTO ingested_files (stream, path, sha256, size_bytes, status, rows_read,"
                " rows_loaded, days_touched, started_at)"
                " VALUES ('meter', 'meter/slow.csv', 'x', 1, 'loaded', 1, 1, '{2026-02-09}', now())"
            )
        # Meanwhile the vehicle stream loads and commits a file with a higher id.
        load(db, settings, "vehicle", [vehicle("v-1", 0.9, "2026-02-10T08:00:00Z")])
        first = pending_days(db)
        assert first.days == [date(2026, 2, 10)]
        advance_daily_watermark(db, first)
        slow.commit()
    finally:
        slow.close()
    assert pending_days(db).days == [date(2026, 2, 9)]


def test_hourly_totals_equal_a_fresh_sum_over_history_after_mixed_loads(db, settings) -> None:
    # New days, a file crossing midnight, then a file with duplicates and conflicts of stored
    # readings (the conflict path): the totals must count exactly what history holds.
    load(
        db,
        settings,
        "meter",
        [meter("m-1", 0.5, "2026-02-10T23:59:00Z"), meter("m-1", 0.25, "2026-02-11T00:00:00Z")],
    )
    load(db, settings, "meter", [meter("m-2", 1.5, "2026-02-11T10:00:00Z")])
    load(
        db,
        settings,
        "meter",
        [
            meter("m-1", 0.25, "2026-02-11T00:00:00Z"),  # duplicate of a stored reading
            meter("m-2", 9.0, "2026-02-11T10:00:00Z"),  # conflicts: the stored reading stays
            "m-2,2.0,240,2026-02-11T11:00:00Z",
        ],
    )
    load(
        db,
        settings,
        "vehicle",
        [
            vehicle("v-1", 0.5, "2026-02-11T10:00:00Z", temp=20),
            vehicle("v-1", 0.5, "2026-02-11T11:00:00Z", temp=30),
        ],
    )
    totals = query(
        db,
        "SELECT to_char(hour AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24'), meter_id, kwh_consumed_ac,"
        " voltage_sum, voltage_min, voltage_max, readings, minutes FROM meter_hourly_totals"
        " ORDER BY 1, 2",
    )
    # Computed here without the product's helpers: the bit of each reading's minute, OR-ed.
    fresh = query(
        db,
        "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24'), meter_id, sum(kwh_consumed_ac),"
        " sum(voltage), min(voltage), max(voltage), count(*),"
        " bit_or((2::numeric ^ extract(minute FROM ts AT TIME ZONE 'UTC'))::bigint)"
        " FROM meter_readings_history GROUP BY 1, 2 ORDER BY 1, 2",
    )
    assert (
        totals
        == fresh
        == [
            ("2026-02-10 23", "m-1", 0.5, 230.0, 230.0, 230.0, 1, 2**59),
            ("2026-02-11 00", "m-1", 0.25, 230.0, 230.0, 230.0, 1, 1),
            ("2026-02-11 10", "m-2", 1.5, 230.0, 230.0, 230.0, 1, 1),
            ("2026-02-11 11", "m-2", 2.0, 240.0, 240.0, 240.0, 1, 1),
        ]
    )
    assert query(
        db,
        "SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24'), vehicle_id, kwh_delivered_dc,"
        " battery_temp_sum, readings FROM vehicle_hourly_totals ORDER BY 1",
    ) == [("10", "v-1", 0.5, 20.0, 1), ("11", "v-1", 0.5, 30.0, 1)]
    materialize_meter_day(db, date(2026, 2, 11))
    assert query(
        db,
        "SELECT meter_id, total_kwh_consumed_ac, avg_voltage, min_voltage, max_voltage,"
        " record_count FROM daily_meter_usage WHERE day = '2026-02-11' ORDER BY 1",
    ) == [("m-1", 0.25, 230.0, 230.0, 230.0, 1), ("m-2", 3.5, 235.0, 230.0, 240.0, 2)]


def test_the_agreement_check_reads_hourly_totals_and_catches_a_status_moved_back(
    db, settings: Settings
) -> None:
    from energy_pipelines.defs.hot_store.checks import _agrees_with_history

    load(
        db,
        settings,
        "meter",
        [meter("m-1", 0.5, f"2026-02-{d}T10:{m:02d}:00Z") for d in (10, 11) for m in (5, 7)],
    )
    refresh_status(db, METER)
    result = _agrees_with_history(db, METER, "test")  # the run that loaded the file
    assert result.passed
    with db.cursor() as cur:
        cur.execute("UPDATE meter_current_status SET ts = ts - interval '2 minutes'")
    db.commit()
    moved_back = _agrees_with_history(db, METER, "test")
    assert not moved_back.passed
    assert moved_back.metadata["devices_disagreeing (first 20)"].value == "m-1"
    # Its cost and locks do not grow with history: no history partition is read.
    from energy_pipelines.defs.hot_store.checks import _disagreeing_sql

    with db.cursor() as cur:
        cur.execute(
            _disagreeing_sql(
                device="meter_id", status="meter_current_status", totals="meter_hourly_totals"
            ),
            (["m-1"],),
        )
        cur.fetchall()
        cur.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE l.pid = pg_backend_pid() AND c.relname LIKE 'meter_readings_history%'"
        )
        assert cur.fetchone()[0] == 0
    db.rollback()


def test_performance_says_when_nothing_is_kept_and_clamps_a_future_as_of(
    db, settings: Settings
) -> None:
    load(db, settings, "correlation", ["m-1,v-1"])
    load(db, settings, "meter", [meter("m-1", 1.0, "2026-02-11T12:00:00Z")])
    load(db, settings, "vehicle", [vehicle("v-1", 0.9, "2026-02-11T12:00:00Z")])
    # A window wholly before the oldest kept hour: said so, not zeros of an idle vehicle.
    before = vehicle_performance(db, "v-1", datetime(2026, 2, 10, 12, tzinfo=UTC))
    assert before["status"] == "no_kept_data"
    assert before["totalKwhDeliveredDc"] is None and before["recordCount"] == 0
    assert before["keptFrom"] == "2026-02-11T12:00:00Z"
    # A window that reaches kept data counts it.
    # 1.0 kWh of paired AC is just enough evidence: 0.9 / 1.0 is normal.
    assert vehicle_performance(db, "v-1", datetime(2026, 2, 11, 13, tzinfo=UTC))["status"] == (
        "normal"
    )
    # An as-of in the future is answered as of now, and the answer says what was asked.
    future = vehicle_performance(db, "v-1", datetime(2999, 1, 1, tzinfo=UTC))
    assert future["asOfClampedFrom"] == "2999-01-01T00:00:00Z"
    assert future["window"]["end"] < "2999"
    assert "asOfClampedFrom" not in vehicle_performance(
        db, "v-1", datetime(2026, 2, 12, tzinfo=UTC)
    )
