"""OpenAPI pieces of the gateway: request bodies are read and checked by hand (for speed), so their
schemas are declared here rather than derived from pydantic models."""

from __future__ import annotations

from typing import Any

from energy_pipelines.contract import CORRELATION, METER, VEHICLE, Stream
from energy_pipelines.gateway.shape import field_types

READING_SCHEMA_NAMES = {
    METER.name: "MeterReading",
    VEHICLE.name: "VehicleReading",
    CORRELATION.name: "Correlation",
}
_EXAMPLES: dict[str, Any] = {
    "meterId": "m-1",
    "vehicleId": "v-1",
    "kwhConsumedAc": 0.42,
    "kwhDeliveredDc": 0.37,
    "voltage": 231.5,
    "soc": 64.0,
    "batteryTemp": 28.5,
    "timestamp": "2026-02-11T10:30:00Z",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _reading_schema(stream: Stream) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, wanted in field_types(stream):
        if wanted == "number":
            properties[name] = {"type": "number", "example": _EXAMPLES[name]}
        else:
            properties[name] = {"type": "string", "example": _EXAMPLES[name]}
    return {
        "type": "object",
        "required": [name for name, _ in field_types(stream)],
        "properties": properties,
        "description": (
            f"One {stream.name} record. Only the JSON types are checked here; value rules "
            "(ranges, ISO-8601 timestamps, non-blank ids) are applied by the pipeline, which "
            "quarantines rows that break them."
        ),
    }


def _error_schema(with_items: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": ["statusCode", "error", "message"],
        "properties": {
            "statusCode": {"type": "integer"},
            "error": {"type": "string"},
            "message": {"type": "string"},
        },
    }
    if with_items:
        schema["properties"]["errors"] = {
            "type": "array",
            "description": "Each bad item and field (at most 100; errorCount has the total).",
            "items": {
                "type": "object",
                "required": ["index", "field", "problem"],
                "properties": {
                    "index": {
                        "type": ["integer", "null"],
                        "description": "Position in the array (0 for a single object).",
                    },
                    "field": {"type": ["string", "null"]},
                    "problem": {"type": "string"},
                },
            },
        }
        schema["properties"]["errorCount"] = {"type": "integer"}
    return schema


_NULLABLE_NUMBER = {"type": ["number", "null"]}

COMPONENT_SCHEMAS: dict[str, Any] = {
    **{READING_SCHEMA_NAMES[s.name]: _reading_schema(s) for s in (METER, VEHICLE, CORRELATION)},
    "Accepted": {
        "type": "object",
        "required": ["accepted"],
        "properties": {
            "accepted": {
                "type": "integer",
                "description": "Records made durable in the spool; they reach landing within "
                "the roll interval.",
            }
        },
    },
    "Error": _error_schema(),
    "ShapeError": _error_schema(with_items=True),
    "PerformanceSummary": {
        "type": "object",
        "required": [
            "vehicleId",
            "period",
            "totalKwhConsumedAc",
            "totalKwhDeliveredDc",
            "efficiencyRatio",
            "averageBatteryTemp",
            "recordCount",
            "status",
            "window",
        ],
        "properties": {
            "vehicleId": {"type": "string"},
            "period": {"type": "string", "example": "24 hours"},
            "totalKwhConsumedAc": _NULLABLE_NUMBER,
            "totalKwhDeliveredDc": _NULLABLE_NUMBER,
            "efficiencyRatio": _NULLABLE_NUMBER,
            "averageBatteryTemp": _NULLABLE_NUMBER,
            "recordCount": {"type": "integer"},
            "status": {"type": "string"},
            "window": {
                "type": "object",
                "required": ["start", "end"],
                "properties": {"start": {"type": "string"}, "end": {"type": "string"}},
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "spool": {"type": "object"}},
    },
}


def json_content(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": ref(schema_name)}}


def ingestion_request_body(stream: Stream) -> dict[str, Any]:
    reading = ref(READING_SCHEMA_NAMES[stream.name])
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"anyOf": [reading, {"type": "array", "items": reading}]}
                }
            },
        }
    }


def ingestion_responses(with_token: bool) -> dict[int | str, dict[str, Any]]:
    responses: dict[int | str, dict[str, Any]] = {
        202: {"description": "Durable in the spool (fsynced)", "content": json_content("Accepted")},
        400: {
            "description": "Malformed JSON, a missing field or a wrong JSON type; nothing accepted",
            "content": json_content("ShapeError"),
        },
        413: {"description": "Body above the size limit", "content": json_content("Error")},
        503: {
            "description": "The spool could not make the records durable; retry",
            "content": json_content("Error"),
        },
    }
    if with_token:
        responses[401] = {"description": "Missing or wrong bearer token"}
        responses[401]["content"] = json_content("Error")
    return responses
