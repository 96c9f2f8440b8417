"""The simulator writes deterministic, contract-conforming gateway files. No database needed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from energy_pipelines import simulate as sim
from energy_pipelines.contract import CORRELATION, METER, STREAMS, VEHICLE
from energy_pipelines.landing.discover import LandingFile, find_waiting_files, is_ignored_name
from energy_pipelines.landing.read import read_landing_file
from energy_pipelines.settings import ValidationLimits
from energy_pipelines.simulate import SimulationSummary, default_start, simulate
from energy_pipelines.validate.rules import validate_rows

START = datetime(2026, 2, 10, tzinfo=UTC)
# With 12 vehicles, seed 3 draws two faulty ones (checked in the test that relies on it).
FLEET_SEED = 3


def read_stream(root: Path, stream: str) -> pl.DataFrame:
    files = sorted((root / stream).iterdir())
    if files[0].suffix == ".csv":
        return pl.concat([pl.read_csv(f, try_parse_dates=False) for f in files])
    return pl.concat([pl.read_parquet(f) for f in files])


def day_of_fleet(root: Path, fmt: sim.FileFormat = "parquet") -> SimulationSummary:
    return simulate(root, 12, 12, START, 1440, file_format=fmt, seed=FLEET_SEED)


def test_same_seed_gives_byte_identical_csv(tmp_path: Path) -> None:
    runs = {
        name: simulate(tmp_path / name, 4, 3, START, 90, "csv", files_per_stream=2, seed=seed)
        for name, seed in (("a", 7), ("b", 7), ("other", 8))
    }
    names = {n: [p.relative_to(tmp_path / n) for p in s.files] for n, s in runs.items()}
    assert names["a"] == names["b"] == names["other"]
    for rel in names["a"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    rel_meter = next(r for r in names["a"] if r.parts[0] == "meter")
    # A different seed must change the readings, or the comparison above proves nothing.
    assert (tmp_path / "a" / rel_meter).read_bytes() != (
        tmp_path / "other" / rel_meter
    ).read_bytes()


def test_same_seed_gives_identical_parquet_frames(tmp_path: Path) -> None:
    for name, seed in (("a", 7), ("b", 7), ("other", 8)):
        simulate(tmp_path / name, 4, 3, START, 90, files_per_stream=2, seed=seed)
    for stream in ("meter", "vehicle", "correlation"):
        first = read_stream(tmp_path / "a", stream)
        assert first.equals(read_stream(tmp_path / "b", stream))
    for stream in ("meter", "vehicle"):
        assert not read_stream(tmp_path / "a", stream).equals(
            read_stream(tmp_path / "other", stream)
        )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_counts_names_and_order(tmp_path: Path, fmt: sim.FileFormat) -> None:
    summary = simulate(tmp_path, 7, 5, START, 30, file_format=fmt, files_per_stream=3)

    assert (summary.meter_rows, summary.vehicle_rows, summary.correlation_rows) == (210, 150, 5)
    by_stream = {s: [p for p in summary.files if p.parent.name == s] for s in STREAMS}
    assert [p.name for p in by_stream["meter"]] == [
        f"sim-meter-20260210T0000-{k:03d}of003.{fmt}" for k in (1, 2, 3)
    ]
    assert [p.name for p in by_stream["vehicle"]] == [
        f"sim-vehicle-20260210T0000-{k:03d}of003.{fmt}" for k in (1, 2, 3)
    ]
    assert [p.name for p in by_stream["correlation"]] == [f"sim-correlation-20260210T0000.{fmt}"]
    assert summary.files[0] == by_stream["correlation"][0]  # the pairing lands first

    for stream, expected_rows in (("meter", 210), ("vehicle", 150), ("correlation", 5)):
        frames = [read_stream_file(p) for p in by_stream[stream]]
        assert sum(f.height for f in frames) == expected_rows
        for frame in frames:
            assert frame.columns == [f.file_name for f in STREAMS[stream].fields]
            assert frame.equals(frame.sort(frame.columns[0], frame.columns[-1]))
    assert read_stream(tmp_path, "meter")["meterId"].unique().sort().to_list() == [
        f"meter-{i:05d}" for i in range(1, 8)
    ]


def read_stream_file(path: Path) -> pl.DataFrame:
    return pl.read_csv(path) if path.suffix == ".csv" else pl.read_parquet(path)


@pytest.mark.parametrize(("meters", "vehicles"), [(7, 5), (3, 7)])
def test_correlation_pairs_vehicle_with_meter_modulo(
    tmp_path: Path, meters: int, vehicles: int
) -> None:
    simulate(tmp_path, meters, vehicles, START, 5)
    pairs = read_stream(tmp_path, "correlation").rows()
    assert pairs == [
        (f"meter-{(j - 1) % meters + 1:05d}", f"vehicle-{j:05d}") for j in range(1, vehicles + 1)
    ]


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_values_within_contract_ranges(tmp_path: Path, fmt: sim.FileFormat) -> None:
    day_of_fleet(tmp_path, fmt)
    meter = read_stream(tmp_path, "meter")
    vehicle = read_stream(tmp_path, "vehicle")
    assert meter.null_count().sum_horizontal().item() == 0
    assert vehicle.null_count().sum_horizontal().item() == 0
    for frame, column, low, high in (
        (meter, "kwhConsumedAc", 0.0, 10_000.0),
        (meter, "voltage", 0.0, 2_000.0),
        (vehicle, "kwhDeliveredDc", 0.0, 10_000.0),
        (vehicle, "soc", 0.0, 100.0),
        (vehicle, "batteryTemp", -50.0, 120.0),
    ):
        values = frame[column].cast(pl.Float64)
        assert values.is_finite().all(), column
        assert low <= values.min() and values.max() <= high, column  # type: ignore[operator]
    # Realism, beyond the contract: the ranges the brief asks for.
    assert meter["voltage"].min() >= 200 and meter["voltage"].max() <= 250  # type: ignore[operator]
    assert abs(meter["voltage"].mean() - 230) < 1  # type: ignore[operator]
    assert vehicle["batteryTemp"].min() >= 15 and vehicle["batteryTemp"].max() <= 45  # type: ignore[operator]
    assert meter["kwhConsumedAc"].min() == 0.0  # an idle charger draws nothing


def test_parquet_types_and_compression(tmp_path: Path) -> None:
    summary = simulate(tmp_path, 2, 2, START, 10)
    for path in summary.files:
        schema = pl.read_parquet_schema(path)
        stream = STREAMS[path.parent.name]
        for field in stream.fields:
            expected = {
                "id": pl.String,
                "timestamp": pl.Datetime("us", "UTC"),
            }.get(field.kind, pl.Float64)
            assert schema[field.file_name] == expected, (path.name, field.file_name)
        meta = pq.ParquetFile(path).metadata
        assert meta.row_group(0).column(0).compression == "ZSTD"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_files_pass_the_pipelines_own_validation(tmp_path: Path, fmt: sim.FileFormat) -> None:
    summary = simulate(tmp_path, 3, 3, START, 120, file_format=fmt, files_per_stream=2)
    for path in summary.files:
        stream = STREAMS[path.parent.name]
        file = LandingFile(
            stream=stream.name,
            path=path,
            relative_path=path.relative_to(tmp_path).as_posix(),
            size_bytes=path.stat().st_size,
            modified_at=path.stat().st_mtime,
        )
        raw = read_landing_file(file, stream)
        assert raw.extra_columns == []
        result = validate_rows(raw, stream, ValidationLimits(), START + timedelta(days=2))
        assert result.rejects.height == 0, (path.name, result.rejects.head())
        assert result.valid.height == raw.frame.height


def test_dc_never_exceeds_ac_and_faulty_vehicles_show_low_efficiency(tmp_path: Path) -> None:
    summary = day_of_fleet(tmp_path)
    assert summary.faulty_vehicles, "seed no longer draws a faulty vehicle: pick another"
    assert len(summary.faulty_vehicles) < 12

    pairs = read_stream(tmp_path, "correlation")
    joined = (
        read_stream(tmp_path, "vehicle")
        .join(pairs, on="vehicleId")
        .join(read_stream(tmp_path, "meter"), on=["meterId", "timestamp"])
    )
    assert joined.height == 12 * 1440
    # One vehicle per meter here, so every minute's AC covers its DC.
    assert (joined["kwhDeliveredDc"] <= joined["kwhConsumedAc"]).all()

    # The paired meter is the charger's own sub-meter, so a day's DC / AC is the efficiency.
    per_vehicle = (
        joined.group_by("vehicleId")
        .agg(dc=pl.col("kwhDeliveredDc").sum(), ac=pl.col("kwhConsumedAc").sum())
        .filter(pl.col("ac") > 0)
    )
    assert per_vehicle.height >= 6  # most vehicles charge on a given day
    for row in per_vehicle.iter_rows(named=True):
        ratio = row["dc"] / row["ac"]
        if row["vehicleId"] in summary.faulty_vehicles:
            assert 0.80 - 1e-9 <= ratio < 0.85, row
        else:
            assert 0.85 <= ratio <= 0.97 + 1e-9, row
    assert set(summary.faulty_vehicles) & set(per_vehicle["vehicleId"]), "no faulty one charged"


def test_shared_meter_carries_all_its_vehicles(tmp_path: Path) -> None:
    simulate(tmp_path, 2, 6, START, 1440, seed=0)
    pairs = read_stream(tmp_path, "correlation")
    dc = (
        read_stream(tmp_path, "vehicle")
        .join(pairs, on="vehicleId")
        .group_by("meterId", "timestamp")
        .agg(dc=pl.col("kwhDeliveredDc").sum(), charging=(pl.col("kwhDeliveredDc") > 0).sum())
    )
    joined = read_stream(tmp_path, "meter").join(dc, on=["meterId", "timestamp"])
    assert joined.height == 2 * 1440
    # With seed 0 two cars behind one meter charge at the same time; the meter must carry both.
    assert joined.filter(pl.col("charging") >= 2).height > 0
    assert (joined["dc"] / 0.97 <= joined["kwhConsumedAc"] + 1e-6).all()


def test_vehicle_behaviour_over_a_day(tmp_path: Path) -> None:
    day_of_fleet(tmp_path)
    vehicle = read_stream(tmp_path, "vehicle").sort("vehicleId", "timestamp")
    steps = vehicle.with_columns(
        soc_change=pl.col("soc").diff().over("vehicleId"),
        charging=pl.col("kwhDeliveredDc") > 0,
    ).drop_nulls("soc_change")
    assert steps.filter("charging")["soc_change"].min() >= 0  # type: ignore[operator]
    assert steps.filter("charging")["soc_change"].mean() > 0  # type: ignore[operator]
    assert vehicle["soc"].max() <= 100  # type: ignore[operator]
    warm = steps.filter("charging")["batteryTemp"].mean()
    cool = steps.filter(~pl.col("charging"))["batteryTemp"].mean()
    assert warm > cool + 1  # type: ignore[operator]
    # Charging is a few hours a day, not all day.
    minutes = steps.group_by("vehicleId").agg(pl.col("charging").sum())["charging"]
    assert minutes.max() <= 8 * 60  # type: ignore[operator]


def test_no_temporary_files_left_behind(tmp_path: Path) -> None:
    summary = simulate(tmp_path, 3, 3, START, 30, files_per_stream=3)
    found = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    assert found == sorted(summary.files)
    assert not [p for p in found if is_ignored_name(p.name)]
    # The ingest job sees exactly these files.
    waiting = [
        f.path
        for stream in (CORRELATION, METER, VEHICLE)
        for f in find_waiting_files(tmp_path, stream, settle_seconds=0)
    ]
    assert sorted(waiting) == found


def test_failed_write_removes_its_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = sim._meter_readings

    def fail_on_second_batch(*args: object, **kwargs: object) -> pl.DataFrame:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sim, "_meter_readings", fail_on_second_batch)
    monkeypatch.setattr(sim, "_BATCH_ROWS", 10)  # several batches per file
    with pytest.raises(RuntimeError, match="disk full"):
        simulate(tmp_path, 4, 4, START, 10)
    assert calls == 2
    left = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()]
    assert left == ["correlation/sim-correlation-20260210T0000.parquet"]


def test_csv_is_utf8_with_iso_z_timestamps(tmp_path: Path) -> None:
    summary = simulate(tmp_path, 2, 2, START + timedelta(hours=10, minutes=30), 3, "csv")
    meter_file = next(p for p in summary.files if p.parent.name == "meter")
    lines = meter_file.read_bytes().decode("utf-8").splitlines()
    assert lines[0] == "meterId,kwhConsumedAc,voltage,timestamp"
    stamps = [line.split(",")[-1] for line in lines[1:]]
    assert stamps[:3] == ["2026-02-10T10:30:00Z", "2026-02-10T10:31:00Z", "2026-02-10T10:32:00Z"]
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
        assert datetime.fromisoformat(stamp).tzinfo == UTC
    vehicle_file = next(p for p in summary.files if p.parent.name == "vehicle")
    header = vehicle_file.read_text(encoding="utf-8").splitlines()[0]
    assert header == "vehicleId,soc,kwhDeliveredDc,batteryTemp,timestamp"
    # Plain decimals, as the validation's error message asks of gateways.
    assert "e-" not in meter_file.read_text(encoding="utf-8")


def test_slices_cover_every_minute_exactly_once(tmp_path: Path) -> None:
    minutes = 31  # not divisible by the file count
    summary = simulate(tmp_path, 3, 2, START, minutes, files_per_stream=4)
    expected = [START + timedelta(minutes=m) for m in range(minutes)]
    for stream, devices in (("meter", 3), ("vehicle", 2)):
        seen: list[datetime] = []
        for path in (p for p in summary.files if p.parent.name == stream):
            frame = pl.read_parquet(path)
            stamps = frame["timestamp"].unique().sort().to_list()
            # Contiguous minutes, every device in every minute.
            assert stamps == [stamps[0] + timedelta(minutes=m) for m in range(len(stamps))]
            assert frame.height == devices * len(stamps)
            assert frame.select(pl.struct(pl.all().gather([0, -1])).is_unique().all()).item()
            seen.extend(stamps)
        assert seen == expected, stream


def test_data_does_not_depend_on_file_or_batch_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulate(tmp_path / "one", 3, 7, START, 1440, seed=2)
    monkeypatch.setattr(sim, "_BATCH_ROWS", 100)  # forces device batches inside a file
    simulate(tmp_path / "split", 3, 7, START, 1440, files_per_stream=5, seed=2)
    for stream in ("meter", "vehicle"):
        one = read_stream(tmp_path / "one", stream)
        split = read_stream(tmp_path / "split", stream)
        keys = [stream + "Id", "timestamp"]
        assert one.sort(keys).equals(split.sort(keys)), stream
    assert read_stream(tmp_path / "one", "vehicle")["kwhDeliveredDc"].sum() > 0


def test_summary_lists_faulty_vehicles_by_efficiency(tmp_path: Path) -> None:
    summary = simulate(tmp_path, 1, 400, START, 1)
    # About 5% of vehicles: between 2% and 9% of 400 is far outside chance.
    assert 8 <= len(summary.faulty_vehicles) <= 36
    params = sim._vehicle_params(0, 400)
    drawn = [f"vehicle-{i + 1:05d}" for i, e in enumerate(params["efficiency"]) if e < 0.85]
    assert summary.faulty_vehicles == drawn
    assert params["efficiency"].min() >= 0.80 and params["efficiency"].max() <= 0.97  # type: ignore[operator]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 2, 11, 10, 30, tzinfo=UTC), datetime(2026, 2, 10, tzinfo=UTC)),
        (datetime(2026, 3, 1, 0, 0), datetime(2026, 2, 28, tzinfo=UTC)),  # naive means UTC
        # 00:30 in UTC+2 is still the 10th in UTC.
        (
            datetime(2026, 2, 11, 0, 30, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 2, 9, tzinfo=UTC),
        ),
    ],
)
def test_default_start_is_midnight_utc_of_the_previous_day(
    now: datetime, expected: datetime
) -> None:
    assert default_start(now) == expected
    assert default_start(now).tzinfo == UTC


def test_default_start_without_argument_is_in_the_past() -> None:
    start = default_start()
    age = datetime.now(UTC) - start
    assert timedelta(days=1) <= age < timedelta(days=2)
    assert (start.hour, start.minute, start.second) == (0, 0, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"meters": 0},
        {"vehicles": 0},
        {"minutes": 0},
        {"files_per_stream": 11},
        {"file_format": "json"},
        {"prefix": ".hidden"},
        {"prefix": "_x"},
        {"prefix": "a/b"},
        {"start": START + timedelta(seconds=30)},
    ],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {
        "meters": 2,
        "vehicles": 2,
        "start": START,
        "minutes": 10,
        "file_format": "parquet",
        "files_per_stream": 1,
        "prefix": "sim",
    } | kwargs
    with pytest.raises(ValueError):
        simulate(tmp_path, **args)  # type: ignore[arg-type]
    assert not any(tmp_path.rglob("*.*"))


def test_naive_and_aware_start_mean_the_same_instant(tmp_path: Path) -> None:
    naive = simulate(tmp_path / "naive", 1, 1, datetime(2026, 2, 10, 1, 0), 2)
    aware = simulate(
        tmp_path / "aware",
        1,
        1,
        datetime(2026, 2, 10, 3, 0, tzinfo=timezone(timedelta(hours=2))),
        2,
    )
    assert [p.name for p in naive.files] == [p.name for p in aware.files]
    assert read_stream(tmp_path / "naive", "meter").equals(read_stream(tmp_path / "aware", "meter"))
    assert read_stream(tmp_path / "naive", "meter")["timestamp"][0] == datetime(
        2026, 2, 10, 1, 0, tzinfo=UTC
    )


def test_follow_lands_whole_files_with_late_and_resent_ones(tmp_path: Path) -> None:
    from energy_pipelines.simulate import follow

    now = [datetime(2026, 2, 11, 10, 0, 30, tzinfo=UTC).timestamp()]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += 120  # two minutes pass between ticks

    ticks = list(
        follow(
            tmp_path,
            3,
            3,
            2.0,
            ticks=4,
            late_every=2,
            duplicate_every=3,
            clock=lambda: now[0],
            sleep=sleep,
        )
    )
    names = [[p.relative_to(tmp_path).as_posix() for p in tick] for tick in ticks]
    assert waits == [2.0, 2.0, 2.0]
    # Tick 0: the pairing and both streams; tick 1 holds its vehicle file back.
    assert [n.split("/")[0] for n in names[0]] == ["correlation", "meter", "vehicle"]
    assert [n.split("/")[0] for n in names[1]] == ["meter"]
    # Tick 2: a resent meter file (same bytes, another name) and nothing late yet.
    resent = [n for n in names[2] if n.endswith("-resent.parquet")]
    assert resent == ["meter/gw-live/live-000002-meter-20260211T1002-001of001-resent.parquet"]
    assert (tmp_path / resent[0]).read_bytes() == (
        tmp_path / "meter/gw-live/live-000002-meter-20260211T1002-001of001.parquet"
    ).read_bytes()
    # Tick 3: tick 1's vehicle file arrives late, beside tick 3's own held-back one.
    assert "vehicle/gw-live/live-000001-vehicle-20260211T1000-001of001.parquet" in names[3]
    # Every minute is covered exactly once per stream, and nothing hidden is left visible.
    meter = pl.concat(pl.read_parquet(p) for p in (tmp_path / "meter").rglob("live-*of001.parquet"))
    assert meter.height == 3 * meter["timestamp"].n_unique()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.parametrize("interval", [2.0, 30.0, 90.0])
def test_follow_never_writes_a_reading_after_the_wall_clock(
    tmp_path: Path, interval: float
) -> None:
    from energy_pipelines.simulate import follow

    now = [datetime(2026, 2, 11, 10, 0, 30, tzinfo=UTC).timestamp()]
    latest_written: list[tuple[float, float]] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    ticks = int(20 * 60 / interval)  # twenty minutes of live operation
    for landed in follow(
        tmp_path,
        2,
        2,
        interval,
        ticks=ticks,
        late_every=0,
        duplicate_every=0,
        clock=lambda: now[0],
        sleep=sleep,
    ):
        for path in landed:
            if path.parent.parent.name in ("meter", "vehicle"):
                newest = pl.read_parquet(path)["timestamp"].max()
                latest_written.append((newest.timestamp(), now[0]))
    assert latest_written
    assert all(stamp <= clock for stamp, clock in latest_written)
    meter = pl.concat(pl.read_parquet(p) for p in (tmp_path / "meter").rglob("*.parquet"))
    minutes = meter["timestamp"].unique().sort()
    # Every minute once per meter, no gap, and the newest at most two minutes behind the clock
    # (the last whole minute that passed, written at the next tick).
    assert meter.height == 2 * minutes.len()
    assert (minutes.diff().drop_nulls() == timedelta(minutes=1)).all()
    assert now[0] - minutes.max().timestamp() <= 120 + interval
