"""The HTTP ingestion gateway, through a real HTTP client against a running server: shapes,
limits, auth, durability of the 202, the OpenAPI document, and the whole way from an
original-API client to history, hot status and the daily tables."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import hypothesis
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import schemathesis
from schemathesis import GenerationMode

from energy_pipelines.contract import CORRELATION, METER, VEHICLE
from energy_pipelines.gateway import spool as spool_module
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.settings import Settings
from tests.conftest import query
from tests.gateway_helpers import (
    CORRELATE_URL,
    METER_URL,
    SCHEMA_CASES,
    VEHICLE_URL,
    RunningGateway,
    gateway_config,
    landed_files,
    landed_rows,
    meter,
    run_cli,
    serve_in_thread,
    spool_lines,
    vehicle,
)


@pytest.fixture
def gateway(offline_settings: Settings) -> Iterator[RunningGateway]:
    with serve_in_thread(gateway_config(offline_settings)) as running:
        yield running


# --- each endpoint --------------------------------------------------------------------------


def test_each_endpoint_accepts_objects_and_arrays_and_lands_contract_parquet(
    offline_settings: Settings, landing: Path
) -> None:
    with serve_in_thread(gateway_config(offline_settings)) as gw, httpx.Client() as client:
        one = client.post(gw.url + METER_URL, json=meter("m-1", 0))
        assert (one.status_code, one.json()) == (202, {"accepted": 1})
        many = client.post(gw.url + VEHICLE_URL, json=[vehicle("v-1", 0), vehicle("v-1", 1)])
        assert (many.status_code, many.json()) == (202, {"accepted": 2})
        pair = client.post(gw.url + CORRELATE_URL, json={"meterId": "m-1", "vehicleId": "v-1"})
        assert (pair.status_code, pair.json()) == (202, {"accepted": 1})
        empty = client.post(gw.url + METER_URL, json=[])
        assert (empty.status_code, empty.json()) == (202, {"accepted": 0})
        health = client.get(gw.url + "/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["spool"]["streams"]["vehicle"]["spooledRecords"] == 2
        assert client.get(gw.url + "/docs").status_code == 200
        assert client.get(gw.url + "/openapi.json").json()["paths"].keys() >= {
            METER_URL,
            VEHICLE_URL,
            CORRELATE_URL,
            "/v1/analytics/performance/{vehicleId}",
            "/health",
        }
        assert not landed_files(landing, "meter")  # still in the spool
    # A clean stop rolls the spool into landing; nothing is left behind.
    [meter_file] = landed_files(landing, "meter")
    assert meter_file.name.endswith(".parquet") and not meter_file.name.startswith(".")
    table = pq.read_table(meter_file)
    assert table.schema == pa.schema(
        [
            ("meterId", pa.string()),
            ("kwhConsumedAc", pa.float64()),
            ("voltage", pa.float64()),
            ("timestamp", pa.string()),
        ]
    )
    assert table.to_pylist() == [meter("m-1", 0)]
    assert landed_rows(landing, "vehicle") == [vehicle("v-1", 0), vehicle("v-1", 1)]
    assert landed_rows(landing, "correlation") == [{"meterId": "m-1", "vehicleId": "v-1"}]
    assert not list((landing / "_gateway_spool").rglob("*.jsonl"))
    assert not [p for p in (landing / "meter" / "http").iterdir() if p.name.startswith(".")]


def test_shape_errors_name_each_item_and_field_and_accept_nothing(
    gateway: RunningGateway,
) -> None:
    body = [
        meter("m-1", 0),
        {"meterId": "m-1", "kwhConsumedAc": "1.5", "voltage": None, "timestamp": 5},
        "not an object",
        {"meterId": 7, "kwhConsumedAc": True, "voltage": 230},
    ]
    with httpx.Client(base_url=gateway.url) as client:
        bad = client.post(METER_URL, json=body)
        assert bad.status_code == 400
        payload = bad.json()
        assert payload["statusCode"] == 400 and "nothing" in payload["message"]
        assert [(e["index"], e["field"]) for e in payload["errors"]] == [
            (1, "kwhConsumedAc"),
            (1, "voltage"),
            (1, "timestamp"),
            (2, None),
            (3, "meterId"),
            (3, "kwhConsumedAc"),
            (3, "timestamp"),
        ]
        problems = {(e["index"], e["field"]): e["problem"] for e in payload["errors"]}
        assert problems[(1, "kwhConsumedAc")] == "must be a number, not string"
        assert problems[(1, "voltage")] == "must be a number, not null"
        assert problems[(3, "kwhConsumedAc")] == "must be a number, not boolean"
        assert problems[(3, "timestamp")] == "is missing"
        assert payload["errorCount"] == 7

        for raw, words in [
            (b'[{"meterId": "m-1",', "not valid JSON"),
            (b"", "not valid JSON"),
            (b"42", "must be a JSON object or an array"),
            (b'{"meterId":"m","kwhConsumedAc":NaN,"voltage":1,"timestamp":"t"}', "NaN"),
            (b"\xff\xfe{}", "not UTF-8"),
        ]:
            answer = client.post(METER_URL, content=raw)
            assert answer.status_code == 400, raw
            assert words in answer.json()["message"], answer.json()
        surrogate = client.post(CORRELATE_URL, content=b'{"meterId": "\\ud800", "vehicleId": "v"}')
        assert surrogate.status_code == 400
    assert spool_lines(gateway.config, "meter") == []
    assert spool_lines(gateway.config, "correlation") == []


def test_value_rules_are_left_to_the_pipeline(db, settings: Settings, landing: Path) -> None:
    # The right shape with wrong values is accepted; the pipeline quarantines the rows with the
    # rule they break, exactly as it would from a file.
    good = meter("m-1", 0)
    bad = [
        {**good, "meterId": " "},
        {**good, "meterId": "m\x00"},
        {**good, "kwhConsumedAc": -5},
        {**good, "voltage": 1e308},
        {**good, "voltage": 10**400},  # beyond float: lands as infinity
        {**good, "timestamp": "yesterday"},
    ]
    with serve_in_thread(gateway_config(settings)) as gw, httpx.Client(base_url=gw.url) as client:
        answer = client.post(METER_URL, json=[good, *bad])
        assert (answer.status_code, answer.json()) == (202, {"accepted": 7})
        assert len(spool_lines(gw.config, "meter")) == 1
    assert landed_rows(landing, "meter")[5]["voltage"] == float("inf")
    [outcome] = ingest_stream(db, METER, settings, run_id="test")
    assert (outcome.manifest.rows_loaded, outcome.manifest.rows_rejected) == (1, 6)
    rules = query(db, "SELECT row_number, column_name, rule FROM rejected_rows ORDER BY 1")
    assert [(n, column) for n, column, _ in rules] == [
        (2, "meterId"),
        (3, "meterId"),
        (4, "kwhConsumedAc"),
        (5, "voltage"),
        (6, "voltage"),
        (7, "timestamp"),
    ]
    assert "control characters" in rules[1][2] and "finite" in rules[4][2]


def test_body_above_the_limit_gets_413(offline_settings: Settings) -> None:
    config = gateway_config(offline_settings, max_body_bytes=2_000)
    big = [meter(f"m-{i}", i % 60) for i in range(100)]
    with serve_in_thread(config) as gw, httpx.Client(base_url=gw.url) as client:
        declared = client.post(METER_URL, json=big)
        assert declared.status_code == 413 and declared.json()["statusCode"] == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted while reading
            yield json.dumps(big).encode()

        chunked = client.post(METER_URL, content=chunks())
        assert chunked.status_code == 413
        assert client.post(METER_URL, json=big[:5]).status_code == 202
        assert spool_lines(config, "meter") and len(spool_lines(config, "meter")) == 1


def test_token_is_required_on_post_when_configured(offline_settings: Settings) -> None:
    config = gateway_config(offline_settings, token="s3cret-token")
    with serve_in_thread(config) as gw, httpx.Client(base_url=gw.url) as client:
        missing = client.post(METER_URL, json=meter("m-1", 0))
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post(
            METER_URL, json=meter("m-1", 0), headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        right = client.post(
            METER_URL, json=meter("m-1", 0), headers={"Authorization": "Bearer s3cret-token"}
        )
        assert right.status_code == 202
        assert client.get("/health").status_code == 200
        document = client.get("/openapi.json").json()
        assert document["paths"][METER_URL]["post"]["security"] == [{"bearerToken": []}]
    assert len(spool_lines(config, "meter")) == 0  # rolled at the clean stop
    assert len(landed_rows(offline_settings.landing_dir, "meter")) == 1


def test_202_only_after_an_fsync_covering_the_request(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced_sizes: list[int] = []
    real_sync = spool_module._sync_data

    def recording_sync(fd: int) -> None:
        size = os.fstat(fd).st_size  # before the sync: what it is sure to cover
        real_sync(fd)
        synced_sizes.append(size)

    monkeypatch.setattr(spool_module, "_sync_data", recording_sync)
    segment_dir = gateway.config.spool_dir / "meter"

    def post(i: int) -> int:
        with httpx.Client(base_url=gateway.url) as client:
            answer = client.post(METER_URL, json=[meter(f"m-{i}", j) for j in range(10)])
            assert answer.status_code == 202
            # Everything this request wrote is inside the synced prefix of the segment.
            [segment] = segment_dir.glob("*.jsonl")
            assert max(synced_sizes) >= segment.stat().st_size - _bytes_after(segment, i)
            return answer.json()["accepted"]

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(post, range(40))) == 400
    lines = spool_lines(gateway.config, "meter")
    assert len(lines) == 40
    records = [r for line in lines for r in json.loads(line)]
    assert len({(r["meterId"], r["timestamp"]) for r in records}) == 400
    # Group commit: concurrent requests share fsyncs.
    assert len(synced_sizes) <= 40


def _bytes_after(segment: Path, i: int) -> int:
    """Bytes appended after request i's line (by other, concurrent requests)."""
    data = segment.read_bytes()
    marker = f'"m-{i}"'.encode()
    end = data.index(b"\n", data.index(marker)) + 1
    return len(data) - end


def test_a_failed_fsync_answers_503_and_the_next_request_gets_a_fresh_segment(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_sync = spool_module._sync_data

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with httpx.Client(base_url=gateway.url) as client:
        monkeypatch.setattr(spool_module, "_sync_data", failing_sync)
        failed = client.post(METER_URL, json=meter("m-1", 0))
        assert failed.status_code == 503 and failed.headers["retry-after"] == "1"
        assert "sync" in client.get("/health").json()["spool"]["streams"]["meter"]["lastError"]
        monkeypatch.setattr(spool_module, "_sync_data", real_sync)
        deadline = time.monotonic() + 10
        while (answer := client.post(METER_URL, json=meter("m-2", 0))).status_code != 202:
            assert answer.status_code == 503 and time.monotonic() < deadline
            time.sleep(0.05)


# --- crash and recovery ---------------------------------------------------------------------


# --- the OpenAPI document -------------------------------------------------------------------


def test_openapi_document_holds_under_schemathesis(settings: Settings) -> None:
    with serve_in_thread(gateway_config(settings)) as gw:
        schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == 5
        for operation in operations:
            modes = [GenerationMode.POSITIVE]
            if operation.path != "/health":  # nothing in GET /health can be made invalid
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:

                @SCHEMA_CASES
                @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
                def check(case: schemathesis.Case) -> None:
                    case.call_and_validate(base_url=gw.url)

                check()


# --- analytics and the whole way through the pipeline ---------------------------------------


class OriginalApiClient:
    """Written against the original service: its URLs and its JSON, nothing gateway-specific."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10)

    def send_meter(self, reading: dict | list[dict]) -> int:
        return self.http.post("/v1/ingestion/meter", json=reading).status_code

    def send_vehicle(self, reading: dict | list[dict]) -> int:
        return self.http.post("/v1/ingestion/vehicle", json=reading).status_code

    def correlate(self, meter_id: str, vehicle_id: str) -> int:
        body = {"meterId": meter_id, "vehicleId": vehicle_id}
        return self.http.post("/v1/ingestion/correlate", json=body).status_code

    def performance(self, vehicle_id: str, as_of: str | None = None) -> httpx.Response:
        params = {"asOf": as_of} if as_of else None
        return self.http.get(f"/v1/analytics/performance/{vehicle_id}", params=params)


def test_original_client_reaches_history_hot_status_and_daily_tables(
    db, settings: Settings, database_url: str, process_env: dict[str, str], landing: Path
) -> None:
    with serve_in_thread(gateway_config(settings)) as gw:
        client = OriginalApiClient(gw.url)
        assert client.correlate("m-1", "v-1") == 202
        assert client.send_meter(meter("m-1", 0)) == 202
        assert client.send_meter([meter("m-1", 15), meter("m-1", 30), meter("m-1", 45)]) == 202
        assert client.send_meter(meter("m-1", 50, voltage=5000)) == 202  # out of range
        for minute in (0, 15, 30, 45):
            assert client.send_vehicle(vehicle("v-1", minute)) == 202
        assert client.send_vehicle({**vehicle("v-1", 59), "timestamp": "yesterday"}) == 202
    # The clean stop rolled the spool; the normal pipeline takes it from here.
    done = run_cli("ingest", env={**process_env, "DATABASE_URL": database_url})
    assert done.returncode == 0, done.stderr
    assert query(db, "SELECT count(*), sum(kwh_consumed_ac) FROM meter_readings_history") == [
        (4, 4.0)
    ]
    assert query(db, "SELECT count(*) FROM vehicle_readings_history") == [(4,)]
    assert query(db, "SELECT meter_id, vehicle_id FROM meter_vehicle_correlation") == [
        ("m-1", "v-1")
    ]
    assert query(db, "SELECT meter_id, ts::text FROM meter_current_status") == [
        ("m-1", "2026-02-11 10:45:00+00")
    ]
    assert query(db, "SELECT vehicle_id, ts::text FROM vehicle_current_status") == [
        ("v-1", "2026-02-11 10:45:00+00")
    ]
    assert query(
        db,
        "SELECT day::text, vehicle_id, round(efficiency_ratio::numeric, 4)::float, status"
        " FROM daily_vehicle_efficiency",
    ) == [("2026-02-11", "v-1", 0.9, "normal")]
    assert query(db, "SELECT day::text, meter_id, record_count FROM daily_meter_usage") == [
        ("2026-02-11", "m-1", 4)
    ]
    # Rejected rows show in quarantine as they would for a file.
    rejected = query(
        db, "SELECT stream, column_name, rule, raw_values FROM rejected_rows ORDER BY stream"
    )
    assert [(s, c) for s, c, _, _ in rejected] == [("meter", "voltage"), ("vehicle", "timestamp")]
    assert "between 0 and 2000" in rejected[0][2]
    assert json.loads(rejected[1][3])["timestamp"] == "yesterday"


def test_performance_endpoint_agrees_with_the_cli(
    db, settings: Settings, database_url: str, process_env: dict[str, str]
) -> None:
    with serve_in_thread(gateway_config(settings)) as gw:
        client = OriginalApiClient(gw.url)
        assert client.correlate("m-1", "v-1") == 202
        assert client.send_meter([meter("m-1", m, kwh=1.25) for m in range(0, 60, 10)]) == 202
        assert client.send_vehicle([vehicle("v-1", m, dc=1.0) for m in range(0, 60, 10)]) == 202
    for contract in (CORRELATION, METER, VEHICLE):  # in process: the CLI path is tested above
        [outcome] = ingest_stream(db, contract, settings, run_id="test")
        assert outcome.manifest.status == "loaded"

    as_of = "2026-02-12T00:00:00Z"
    cli = run_cli(
        "performance", "v-1", "--as-of", as_of, env={**process_env, "DATABASE_URL": database_url}
    )
    assert cli.returncode == 0, cli.stderr
    with serve_in_thread(gateway_config(settings)) as gw:
        client = OriginalApiClient(gw.url)
        answer = client.performance("v-1", as_of)
        assert answer.status_code == 200
        assert answer.json() == json.loads(cli.stdout)
        assert answer.json()["efficiencyRatio"] == 0.8 and answer.json()["recordCount"] == 6
        naive = client.performance("v-1", "2026-02-12T00:00:00")  # no offset: UTC, as the CLI
        assert naive.json() == json.loads(cli.stdout)
        assert client.performance("v-1").status_code == 200  # default: now
        unknown = client.performance("v-404", as_of)
        assert unknown.status_code == 404
        assert unknown.json()["statusCode"] == 404 and "v-404" in unknown.json()["message"]
        assert client.performance("v-1", "last tuesday").status_code == 400
