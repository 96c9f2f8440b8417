"""The gateway's OpenAPI document. Ingestion bodies are read and checked by hand (for speed), so
FastAPI does not see their models: their schemas come from the request models generated from the
contract (models.py) and are declared here, beside the shapes of the answers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from energy_pipelines.contract import STREAMS, Stream
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.gateway.models import READING_SCHEMA_NAMES, reading_model
from energy_pipelines.settings import ValidationLimits


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def reading_schemas(limits: ValidationLimits, checked: bool) -> dict[str, Any]:
    """The request models' schemas, generated from the contract (models.reading_model)."""
    schemas: dict[str, Any] = {}
    for stream in STREAMS.values():
        model = reading_model(stream, limits, checked)
        schemas[READING_SCHEMA_NAMES[stream.name]] = model.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}"
        )
    return schemas


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

RESPONSE_SCHEMAS: dict[str, Any] = {
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


def ingestion_responses() -> dict[int | str, dict[str, Any]]:
    return {
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


def configured_ingestion_responses(config: GatewayConfig) -> dict[int | str, dict[str, Any]]:
    """Answers the ingestion routes give only with some settings: 401 with a token, 422 when
    the gateway checks values."""
    responses: dict[int | str, dict[str, Any]] = {}
    if config.token:
        responses[401] = {
            "description": "Missing or wrong bearer token",
            "content": json_content("Error"),
        }
    if config.check_values:
        responses[422] = {
            "description": "A value breaks a rule of the file contract; nothing accepted",
            "content": json_content("ShapeError"),
        }
    return responses


def install(app: FastAPI, config: GatewayConfig) -> None:
    """The app's OpenAPI document: FastAPI's, with the request and response schemas above."""
    components = {**reading_schemas(config.settings.limits, config.check_values)}
    components.update(RESPONSE_SCHEMAS)

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in schema["paths"].values():
                for parameter in path.get("get", {}).get("parameters", []):
                    if parameter["name"] == "asOf":  # a time, not FastAPI's "string or null"
                        parameter["schema"] = {"type": "string", "format": "date-time"}
            schema.setdefault("components", {}).setdefault("schemas", {}).update(components)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
