"""Request models generated from the contract: one pydantic model per stream, its fields the
contract's columns (camelCase, snake_case also accepted), typed by their value kind, and with
the file contract's value rules when the gateway checks values (ENERGY_GATEWAY_CHECK_VALUES):
each kind's range and words from the contract, the kWh ceiling from the settings, as the
validator applies them.

The models describe the request bodies in the OpenAPI document in both cases. Values are checked
with them only when the gateway is asked to: by default the pipeline applies the rules, and a
row that breaks one is quarantined exactly as from a file. Checked here, a body with such a row
is refused whole (422) and each problem carries the words quarantine would show.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import polars as pl
from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    create_model,
)
from pydantic import Field as ModelField
from pydantic_core import PydanticCustomError

from energy_pipelines.contract import (
    CORRELATION,
    DEVICE_ID,
    MAX_ID_LENGTH,
    METER,
    NOT_FINITE,
    TIMESTAMP,
    VEHICLE,
    Range,
    Stream,
)
from energy_pipelines.gateway.shape import Problems, RequestField, ValueRuleError, request_fields
from energy_pipelines.settings import ValidationLimits
from energy_pipelines.validate.ids import ID_RULES
from energy_pipelines.validate.schemas import allowed_range

READING_SCHEMA_NAMES = {
    METER.name: "MeterReading",
    VEHICLE.name: "VehicleReading",
    CORRELATION.name: "Correlation",
}
_EXAMPLES: dict[str, Any] = {
    "kwh": 0.42,
    "voltage": 231.5,
    "soc": 64.0,
    "battery_temp": 28.5,
    "timestamp": "2026-02-11T10:30:00Z",
}

# Non-blank, no control character (Unicode Cc): the id rules of validate.ids, as a pattern the
# OpenAPI document can carry. A value it refuses is judged again by validate.ids itself.
ID_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
# ISO-8601 date and time with seconds, optional fraction and offset; a space may stand for T.
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}(:?\d{2})?)?")


def number_range(field: RequestField, limits: ValidationLimits) -> Range:
    """The range a number of `field` must fall in, as the validator applies it to files."""
    allowed = allowed_range(field.kind, limits)
    assert allowed is not None, f"a number without a range: {field.name}"
    return allowed


def parse_timestamp(text: str) -> datetime | None:
    """The instant an ISO-8601 text names (UTC without an offset), or None."""
    text = text.strip()
    if not _DATE_TIME.fullmatch(text):
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def timestamp_problem(text: str, limits: ValidationLimits, now: datetime) -> str | None:
    """The rule of the file contract a timestamp breaks when it arrives at `now`, or None."""
    when = parse_timestamp(text)
    if when is None:
        return TIMESTAMP.unparseable
    earliest = datetime(limits.min_year, 1, 1, tzinfo=UTC)
    if when < earliest:
        return f"must not be before {earliest:%Y-%m-%d} (was the device clock set?)"
    if when > now + timedelta(minutes=limits.max_future_minutes):
        return (
            f"must not be more than {limits.max_future_minutes:g} minutes after the "
            f"ingestion time ({now.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ})"
        )
    return None


def _checked_timestamp(text: str, info: ValidationInfo) -> str:
    context = info.context or {}
    problem = timestamp_problem(text, context["limits"], context["now"])
    if problem is not None:
        raise PydanticCustomError("contract_rule", problem)
    return text


def python_name(field: RequestField) -> str:
    """The model attribute of a field: its snake_case name."""
    return field.other_names[0] if field.other_names else field.name


def _example(field: RequestField) -> Any:
    if field.kind is DEVICE_ID:  # meterId -> meter-001
        return field.name.removesuffix("Id") + "-001"
    return _EXAMPLES.get(field.kind.name)


def _rule_words(field: RequestField, limits: ValidationLimits) -> str:
    if field.kind is DEVICE_ID:
        return f"non-blank, at most {MAX_ID_LENGTH} characters, no control characters"
    if field.kind is TIMESTAMP:
        return (
            "ISO-8601 date and time (UTC without an offset), not before "
            f"{limits.min_year}, at most {limits.max_future_minutes:g} minutes after arrival"
        )
    return number_range(field, limits).rule


def _definition(field: RequestField, limits: ValidationLimits, checked: bool) -> tuple[Any, Any]:
    """The annotation and pydantic Field of one request field; the value rules are enforced
    when `checked`, else only described."""
    words = _rule_words(field, limits)
    about: dict[str, Any] = {
        "alias": field.name,
        "validation_alias": AliasChoices(field.name, *field.other_names),
        "title": field.name,
        "examples": [_example(field)],
        "description": words if checked else f"{words} (else the pipeline quarantines the row)",
    }
    if field.kind is DEVICE_ID:
        constraints = {"max_length": MAX_ID_LENGTH, "pattern": ID_PATTERN} if checked else {}
        return str, ModelField(..., **about, **constraints)
    if field.kind is TIMESTAMP:
        if not checked:
            return str, ModelField(..., **about)
        timestamp = Annotated[str, AfterValidator(_checked_timestamp)]
        return timestamp, ModelField(..., **about, json_schema_extra={"format": "date-time"})
    if not checked:
        return float, ModelField(..., **about)
    allowed = number_range(field, limits)
    return float, ModelField(..., **about, ge=allowed.low, le=allowed.high, allow_inf_nan=False)


def reading_model(stream: Stream, limits: ValidationLimits, checked: bool) -> type[BaseModel]:
    """The request model of one record of `stream`: the file contract's value rules are
    enforced when `checked`, else only the JSON types (the pipeline applies the rules)."""
    if checked:
        about = (
            f"One {stream.name} record. Its values are checked against the file contract's "
            "rules; a body with any value that breaks one is refused whole (422)."
        )
    else:
        about = (
            f"One {stream.name} record. Only the JSON types are checked here; value rules "
            "(ranges, ISO-8601 timestamps, non-blank ids) are applied by the pipeline, which "
            "quarantines rows that break them."
        )
    about += " Each field may come under its snake_case name instead, not under both."
    request = request_fields(stream)

    def document(schema: dict[str, Any]) -> None:
        schema["description"] = about
        _document_other_names(schema, request)

    fields = {python_name(f): _definition(f, limits, checked) for f in request}
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        READING_SCHEMA_NAMES[stream.name],
        __config__=ConfigDict(populate_by_name=True, json_schema_extra=document),
        **fields,
    )
    return model


def _document_other_names(schema: dict[str, Any], fields: tuple[RequestField, ...]) -> None:
    """The JSON schema of a record as the gateway takes it: each field under exactly one of its
    names (pydantic's own schema shows only the first of a field's names)."""
    properties: dict[str, Any] = schema["properties"]
    one_name_each: list[dict[str, Any]] = []
    for field in fields:
        if not field.other_names:
            continue
        for other in field.other_names:
            properties[other] = {**properties[field.name], "title": other}
        schema["required"].remove(field.name)
        names = (field.name, *field.other_names)
        one_name_each.append({"oneOf": [{"required": [name]} for name in names]})
    if one_name_each:
        schema["allOf"] = one_name_each


class ValueCheck:
    """Checks the values of a body's records (already of the right shape) with the stream's
    request model."""

    def __init__(self, stream: Stream, limits: ValidationLimits) -> None:
        self.stream = stream
        self.limits = limits
        self._fields = {n: f for f in request_fields(stream) for n in (f.name, *f.other_names)}
        self._records = TypeAdapter(list[reading_model(stream, limits, checked=True)])  # type: ignore[misc]

    def check(self, records: list[dict[str, Any]], now: datetime) -> None:
        """Nothing, or ValueRuleError naming each value that breaks a rule."""
        try:
            self._records.validate_python(records, context={"limits": self.limits, "now": now})
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
        else:
            return
        located = [(int(e["loc"][0]), self._fields[str(e["loc"][1])], e) for e in errors]
        # Ids the pattern refused are judged by the pipeline's own id rules, all at once.
        refused_ids = [e["input"] for _, field, e in located if field.kind is DEVICE_ID]
        id_words = iter(broken_id_rules(refused_ids))
        problems = Problems()
        for index, field, error in located:
            words = next(id_words) if field.kind is DEVICE_ID else self._words(field, error)
            if words is not None:  # None: the pipeline's id rules take it after all
                problems.report(index, field.name, words)
        problems.raise_if_any(ValueRuleError, "the values of the request body")

    def _words(self, field: RequestField, error: Any) -> str:
        """The contract's words for a pydantic error on a timestamp or a number."""
        if field.kind is TIMESTAMP:
            return str(error["msg"])
        if error["type"] in ("greater_than_equal", "less_than_equal"):
            return number_range(field, self.limits).rule
        return NOT_FINITE  # non-finite, or an integer beyond float range (infinity)


def broken_id_rules(ids: list[str]) -> list[str | None]:
    """For each id, the first of validate.ids' rules it breaks (its words), or None."""
    if not ids:
        return []
    frame = pl.DataFrame({"id": ids}, schema={"id": pl.String})
    held = frame.select(
        rule.holds(pl.col("id")).alias(str(n)) for n, rule in enumerate(ID_RULES)
    ).rows()
    return [
        next((rule.error for rule, ok in zip(ID_RULES, row, strict=True) if not ok), None)
        for row in held
    ]
