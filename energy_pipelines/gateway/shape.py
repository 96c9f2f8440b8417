"""Shape checks of request bodies: valid JSON, objects, required fields, JSON types.

The fields are the contract's (camelCase names, snake_case accepted, as in files). Only the
shape is checked here, by hand and fast. Values (ranges, parseable timestamps, blank ids) are
the pipeline's rules, so a reading gets the same answer whether it arrives by file or by HTTP;
a gateway asked to check values does so after this, with the request models (models.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from energy_pipelines.contract import JsonType, Stream, ValueKind

MAX_REPORTED_ERRORS = 100

_MISSING = object()
_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


@dataclass(frozen=True)
class ShapeProblem:
    index: int | None
    field: str | None
    problem: str

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "field": self.field, "problem": self.problem}


class ShapeError(ValueError):
    """The request body is not what the endpoint takes; nothing of it is accepted."""

    status = 400

    def __init__(self, message: str, problems: list[ShapeProblem], total: int | None = None):
        super().__init__(message)
        self.message = message
        self.problems = problems
        self.total = len(problems) if total is None else total


class ValueRuleError(ShapeError):
    """A value of the body breaks a rule of the file contract (checked only when the gateway
    checks values); nothing of it is accepted."""

    status = 422


@dataclass(frozen=True)
class RequestField:
    """One field of a request record, as the contract defines it: its name (camelCase, as the
    original API and file headers spell it), the other names it may go by (snake_case), and the
    JSON type its value must have."""

    name: str
    other_names: tuple[str, ...]
    json_type: JsonType
    kind: ValueKind


_REQUEST_FIELDS: dict[str, tuple[RequestField, ...]] = {}


def request_fields(stream: Stream) -> tuple[RequestField, ...]:
    fields = _REQUEST_FIELDS.get(stream.name)
    if fields is None:
        fields = _REQUEST_FIELDS[stream.name] = tuple(
            RequestField(
                name=f.file_name,
                other_names=tuple(n for n in f.accepted_names if n != f.file_name),
                json_type=f.value_kind.json_type,
                kind=f.value_kind,
            )
            for f in stream.fields
        )
    return fields


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


def parse_json(body: bytes) -> Any:
    """UTF-8 JSON only: the spool keeps the body's bytes, so they must decode one way."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ShapeError(f"the body is not UTF-8 text (byte {exc.start})", []) from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ShapeError(
            f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", []
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise ShapeError(f"the body is not valid JSON: {exc}", []) from exc


def _type_name(value: object) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _text_problem(value: str) -> str | None:
    # A lone surrogate (from a `\ud800` escape) cannot be written as UTF-8, so cannot land.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (a lone surrogate escape)"
    return None


class Problems:
    """Problems of a body: all counted, the first MAX_REPORTED_ERRORS kept."""

    def __init__(self) -> None:
        self.kept: list[ShapeProblem] = []
        self.total = 0

    def report(self, index: int | None, field: str | None, problem: str) -> None:
        self.total += 1
        if len(self.kept) < MAX_REPORTED_ERRORS:
            self.kept.append(ShapeProblem(index, field, problem))

    def raise_if_any(
        self, error: type[ShapeError] = ShapeError, where: str = "the request body"
    ) -> None:
        if self.total:
            noun = "problem" if self.total == 1 else "problems"
            message = f"{self.total} {noun} in {where}; nothing of it was accepted"
            raise error(message, self.kept, self.total)


def _items_of(data: Any) -> list[Any]:
    if type(data) is dict:
        return [data]
    if type(data) is list:
        return data
    raise ShapeError(
        f"the body must be a JSON object or an array of objects, not {_type_name(data)}", []
    )


def _take_other_names(
    item: dict[str, Any], fields: tuple[RequestField, ...], index: int, problems: Problems
) -> None:
    """Moves a value given under a field's other name (snake_case) to its name, so the rest of
    the gateway reads one spelling; a field given under two names is a problem."""
    for field in fields:
        for other in field.other_names:
            if other not in item:
                continue
            if field.name in item:
                problems.report(index, field.name, f"is given twice, as {field.name} and {other}")
            else:
                item[field.name] = item.pop(other)


def check_records(data: Any, stream: Stream, escapes_present: bool = True) -> list[dict[str, Any]]:
    """The records of a body (one object or an array of objects), or ShapeError naming every
    bad item and field. A field may come under its snake_case name; the record then carries it
    under its camelCase name. `escapes_present=False` skips the per-string Unicode scan: without
    a `\\u` escape in the body no string can hold a lone surrogate."""
    items = _items_of(data)
    fields = request_fields(stream)
    expected = ", ".join(f.name for f in fields)
    width = len(fields)
    problems = Problems()
    for index, item in enumerate(items):
        if type(item) is not dict:
            problems.report(
                index, None, f"must be a JSON object with {expected}, not {_type_name(item)}"
            )
            continue
        # Another spelling is looked for only when a record has more keys than fields (perhaps
        # one field under two names) or when a name is missing: ordinary records pay nothing.
        renamed = len(item) > width
        if renamed:
            _take_other_names(item, fields, index, problems)
        for field in fields:
            value = item.get(field.name, _MISSING)
            if value is _MISSING and not renamed:
                renamed = True
                _take_other_names(item, fields, index, problems)
                value = item.get(field.name, _MISSING)
            kind = type(value)
            if field.json_type == "string":
                if kind is str:
                    if escapes_present and (problem := _text_problem(value)):
                        problems.report(index, field.name, problem)
                    continue
            elif kind is int or kind is float:
                continue
            if value is _MISSING:
                problems.report(index, field.name, "is missing")
            else:
                problems.report(
                    index, field.name, f"must be a {field.json_type}, not {_type_name(value)}"
                )
    problems.raise_if_any()
    return items


def has_unicode_escape(body: bytes) -> bool:
    return b"\\u" in body


def records_of_body(body: bytes, stream: Stream) -> list[dict[str, Any]]:
    return check_records(parse_json(body), stream, has_unicode_escape(body))


def _safe_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        # Beyond float range: infinity, which the pipeline quarantines as not finite.
        return math.inf if value > 0 else -math.inf


def _number_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values, type=pa.float64())
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        # Integers beyond 2**53 or int64: the float64 pyarrow refuses to round to.
        return pa.array([_safe_float(v) for v in values], type=pa.float64())


def records_to_table(records: list[dict[str, Any]], stream: Stream) -> pa.Table:
    """The contract's camelCase columns; timestamps stay the client's text (the pipeline parses
    them, as it does for CSV), numbers become float64."""
    columns: dict[str, pa.Array] = {}
    for field in request_fields(stream):
        values = [record[field.name] for record in records]
        columns[field.name] = (
            pa.array(values, type=pa.string())
            if field.json_type == "string"
            else _number_array(values)
        )
    return pa.table(columns)
