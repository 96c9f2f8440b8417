"""The gateway's request models generated from the contract: the OpenAPI document, snake_case
names, and the value checks (422) next to the pipeline's rules."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from energy_pipelines.contract import METER, STREAMS
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.gateway.models import READING_SCHEMA_NAMES
from energy_pipelines.ingest import ingest_stream
from energy_pipelines.settings import Settings, ValidationLimits
from energy_pipelines.validate.schemas import allowed_range
from tests.conftest import query
from tests.gateway_helpers import (
    CORRELATE_URL,
    METER_URL,
    SCHEMA_CASES,
    VEHICLE_URL,
    client_for,
    gateway_config,
    landed_rows,
    serve_in_thread,
    spooled_lines,
)

POSTS = (METER_URL, VEHICLE_URL, CORRELATE_URL)
TOKEN = "s3cret-token"


def meter(meter_id: str = "m-1", minute: int = 0, **values: Any) -> dict[str, Any]:
    reading = {
        "meterId": meter_id,
        "kwhConsumedAc": 1.0,
        "voltage": 230.0,
        "timestamp": f"2026-02-11T10:{minute:02d}:00Z",
    }
    return {**reading, **values}


def vehicle(vehicle_id: str = "v-1", minute: int = 0, **values: Any) -> dict[str, Any]:
    reading = {
        "vehicleId": vehicle_id,
        "soc": 50.0,
        "kwhDeliveredDc": 0.9,
        "batteryTemp": 25.5,
        "timestamp": f"2026-02-11T10:{minute:02d}:00Z",
    }
    return {**reading, **values}


# --- the request models --------------------------------------------------------------------


def reading_schemas(settings: Settings, **changes: Any) -> dict[str, Any]:
    with client_for(gateway_config(settings, **changes)) as client:
        schemas: dict[str, Any] = client.get("/openapi.json").json()["components"]["schemas"]
    return {name: schemas[READING_SCHEMA_NAMES[name]] for name in STREAMS}


def test_request_schemas_are_the_contracts_fields(offline_settings: Settings) -> None:
    for name, schema in reading_schemas(offline_settings).items():
        fields = STREAMS[name].fields
        names = [n for f in fields for n in f.accepted_names]
        assert sorted(schema["properties"]) == sorted(names)
        # Each field is required under exactly one of its names.
        single = [f.file_name for f in fields if len(f.accepted_names) == 1]
        assert schema.get("required", []) == single
        one_of = [[r["required"] for r in choice["oneOf"]] for choice in schema.get("allOf", [])]
        assert one_of == [
            [[n] for n in f.accepted_names] for f in fields if f.file_name not in single
        ]
        for field in fields:
            for spelling in field.accepted_names:
                prop = schema["properties"][spelling]
                text = field.kind in ("id", "timestamp")
                assert prop["type"] == ("string" if text else "number"), field
                # Types only: the values are the pipeline's to judge, as for files.
                constraints = {"minimum", "maximum", "maxLength", "pattern", "format"}
                assert not prop.keys() & constraints


def test_checked_request_schemas_carry_the_contracts_ranges(offline_settings: Settings) -> None:
    limits = ValidationLimits(max_kwh_per_reading=50.0)
    settings = replace(offline_settings, limits=limits)
    for name, schema in reading_schemas(settings, check_values=True).items():
        for field in STREAMS[name].fields:
            prop = schema["properties"][field.file_name]
            if field.kind == "id":
                assert prop["maxLength"] == 64 and prop["pattern"]
            elif field.kind == "timestamp":
                assert prop["format"] == "date-time"
            else:
                allowed = allowed_range(field.value_kind, limits)
                assert allowed is not None
                assert (prop["minimum"], prop["maximum"]) == (allowed.low, allowed.high)
                assert prop["description"] == allowed.rule
    vehicle_schema = reading_schemas(settings, check_values=True)["vehicle"]
    assert vehicle_schema["properties"]["kwhDeliveredDc"]["maximum"] == 50.0


def test_snake_case_names_are_accepted_and_land_as_the_contracts_columns(
    offline_settings: Settings, landing: Path
) -> None:
    snake = {
        "vehicle_id": "v-1",
        "soc": 40.0,
        "kwh_delivered_dc": 0.5,
        "battery_temp": 21.0,
        "timestamp": "2026-02-11T10:00:00Z",
    }
    mixed = {**vehicle(minute=1), "kwh_delivered_dc": 0.7}
    del mixed["kwhDeliveredDc"]
    with client_for(gateway_config(offline_settings)) as client:
        answer = client.post(VEHICLE_URL, json=[snake, mixed])
        assert (answer.status_code, answer.json()) == (202, {"accepted": 2})
        twice = client.post(VEHICLE_URL, json=[vehicle(), {**vehicle(), "vehicle_id": "v-2"}])
        assert twice.status_code == 400
        assert twice.json()["errors"] == [
            {
                "index": 1,
                "field": "vehicleId",
                "problem": "is given twice, as vehicleId and vehicle_id",
            }
        ]
    assert landed_rows(landing, "vehicle") == [
        vehicle(soc=40.0, kwhDeliveredDc=0.5, batteryTemp=21.0),
        vehicle(minute=1, kwhDeliveredDc=0.7),
    ]


# --- value checks (ENERGY_GATEWAY_CHECK_VALUES) ----------------------------------------------


def test_checked_values_refuse_the_whole_body_with_422_naming_each_value(
    offline_settings: Settings,
) -> None:
    config = gateway_config(offline_settings, check_values=True)
    body = [
        meter("m-1", 0),
        meter("m-1", 1, kwhConsumedAc=-0.5),
        meter(" ", 2, voltage=2000.5),
        meter("m-1", 3, timestamp="yesterday"),
        meter("m-1", 4, voltage=10**400),
    ]
    with client_for(config) as client:
        answer = client.post(METER_URL, json=body)
        assert answer.status_code == 422
        payload = answer.json()
        assert payload["error"] == "Unprocessable Entity"
        assert payload["message"] == (
            "5 problems in the values of the request body; nothing of it was accepted"
        )
        assert payload["errorCount"] == 5
        assert payload["errors"] == [
            {"index": 1, "field": "kwhConsumedAc", "problem": "must be between 0 and 10000 kWh"},
            {"index": 2, "field": "meterId", "problem": "must not be empty or only spaces"},
            {"index": 2, "field": "voltage", "problem": "must be between 0 and 2000 V"},
            {
                "index": 3,
                "field": "timestamp",
                "problem": "is not a valid ISO-8601 timestamp with date and time "
                "(for example 2026-02-11T10:30:00Z)",
            },
            {
                "index": 4,
                "field": "voltage",
                "problem": "must be a finite number (not NaN or infinity)",
            },
        ]
        assert spooled_lines(config) == 0
        # The shape comes first, and keeps its 400: a string is no number, whatever its value.
        shape = client.post(METER_URL, json=meter(kwhConsumedAc="1.5"))
        assert shape.status_code == 400
        assert client.post(METER_URL, json=body[:1]).status_code == 202


def test_checked_values_accept_every_bound_of_the_contract(offline_settings: Settings) -> None:
    edges = [
        vehicle("v", soc=0.0, kwhDeliveredDc=0.0, batteryTemp=-50.0),
        vehicle("v", 1, soc=100, kwhDeliveredDc=10_000, batteryTemp=120),
        vehicle("x" * 64, 2, timestamp="2000-01-01T00:00:00Z"),
        vehicle("v", 3, timestamp=" 2026-02-11 10:03:00.123456789 "),
        vehicle("v", 4, timestamp="2026-02-11T12:04:00+02:00"),
        vehicle("véhicule 7", 5, timestamp="2026-02-11T10:05:00"),
    ]
    config = gateway_config(offline_settings, check_values=True)
    with client_for(config) as client:
        answer = client.post(VEHICLE_URL, json=edges)
        assert (answer.status_code, answer.json()) == (202, {"accepted": 6}), answer.json()
        beyond = [
            vehicle("v", soc=-0.001),
            vehicle("v", soc=100.001),
            vehicle("v", batteryTemp=-50.1),
            vehicle("v", batteryTemp=120.1),
            vehicle("v", kwhDeliveredDc=10_000.01),
            vehicle("x" * 65),
            vehicle("v\u0085"),
            vehicle("v", timestamp="1999-12-31T23:59:59Z"),
            vehicle("v", timestamp="2999-01-01T00:00:00Z"),
        ]
        refused = client.post(VEHICLE_URL, json=beyond)
        assert refused.status_code == 422
        assert [e["index"] for e in refused.json()["errors"]] == list(range(len(beyond)))


def test_checked_values_count_every_problem_and_name_the_first_hundred(
    offline_settings: Settings,
) -> None:
    config = gateway_config(offline_settings, check_values=True)
    body = [meter(" " if i % 2 else "m\x07", voltage=-1) for i in range(20_000)]
    with client_for(config) as client:
        answer = client.post(METER_URL, json=body)
    assert answer.status_code == 422
    assert answer.json()["errorCount"] == 40_000
    errors = answer.json()["errors"]
    assert len(errors) == 100
    assert errors[:4] == [
        {"index": 0, "field": "meterId", "problem": "must not contain control characters"},
        {"index": 0, "field": "voltage", "problem": "must be between 0 and 2000 V"},
        {"index": 1, "field": "meterId", "problem": "must not be empty or only spaces"},
        {"index": 1, "field": "voltage", "problem": "must be between 0 and 2000 V"},
    ]


def test_checked_values_agree_with_the_pipelines_quarantine(
    db, settings: Settings, landing: Path
) -> None:
    # The same records: refused by a gateway that checks values, and quarantined by the pipeline
    # behind a gateway that does not, each value with the same rule in the same words.
    records = [
        meter("m-ok", 0),
        meter("", 1),
        meter("  ", 2),
        meter("m\x00", 3),
        meter("m\x1b[31m", 4),
        meter("m" * 65, 5),
        meter("m-1", 6, kwhConsumedAc=-1),
        meter("m-1", 7, kwhConsumedAc=10_000.5),
        meter("m-1", 8, voltage=-0.1),
        meter("m-1", 9, voltage=2001),
        meter("m-1", 10, voltage=10**400),
        meter("m-1", 11, timestamp="yesterday"),
        meter("m-1", 12, timestamp="2026-02-30T10:00:00Z"),
        meter("m-1", 13, timestamp="2026-02-11"),
        meter("m-1", 14, timestamp="1999-12-31T23:59:59Z"),
        meter("m-1", 15, timestamp="2999-01-01T00:00:00Z"),
        meter("m-1", 16, timestamp="2026-02-11T10:16:00+0200"),
        meter("m-1", 17, kwhConsumedAc=0, voltage=2000),
    ]
    with client_for(gateway_config(settings, check_values=True)) as client:
        refused = client.post(METER_URL, json=records)
        assert refused.status_code == 422
        by_gateway = [(e["index"] + 1, e["field"], e["problem"]) for e in refused.json()["errors"]]
    with client_for(gateway_config(settings)) as client:
        assert client.post(METER_URL, json=records).status_code == 202
    [outcome] = ingest_stream(db, METER, settings, run_id="test")
    assert outcome.manifest.rows_loaded == 3
    by_pipeline = query(
        db, "SELECT row_number, column_name, rule FROM rejected_rows ORDER BY row_number"
    )

    def without_time(problems: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # The future rule names its ingestion time, which differs between the two.
        return [(n, f, p.split(" (2")[0]) for n, f, p in problems]

    assert without_time(by_gateway) == without_time(by_pipeline)
    assert len(by_gateway) == 15


def test_check_values_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, offline_settings: Settings
) -> None:
    monkeypatch.delenv("ENERGY_GATEWAY_CHECK_VALUES", raising=False)
    assert GatewayConfig.from_env(offline_settings).check_values is False
    for raw, expected in [("1", True), ("Yes", True), ("on", True), ("0", False), ("off", False)]:
        monkeypatch.setenv("ENERGY_GATEWAY_CHECK_VALUES", raw)
        assert GatewayConfig.from_env(offline_settings).check_values is expected
    monkeypatch.setenv("ENERGY_GATEWAY_CHECK_VALUES", "sometimes")
    with pytest.raises(ValueError, match="ENERGY_GATEWAY_CHECK_VALUES='sometimes'"):
        GatewayConfig.from_env(offline_settings)


def test_checked_openapi_document_holds_under_schemathesis(offline_settings: Settings) -> None:
    config = gateway_config(offline_settings, check_values=True, token=TOKEN)
    with serve_in_thread(config) as gw:
        schema = schemathesis.openapi.from_url(gw.url + "/openapi.json")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        posts = [r.ok() for r in schema.get_all_operations() if r.ok().method.upper() == "POST"]
        assert [p.path for p in posts] == list(POSTS)
        for operation in posts:
            assert "422" in operation.definition.raw["responses"]
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @SCHEMA_CASES
                @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
                def check(case: schemathesis.Case) -> None:
                    # A timestamp must fall between 2000 and a few minutes from now, which
                    # JSON Schema cannot say: generated "valid" times may rightly get 422.
                    case.call_and_validate(
                        base_url=gw.url, headers=auth, excluded_checks=[positive_data_acceptance]
                    )

                check()
