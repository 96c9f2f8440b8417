"""Shape checks of request bodies: valid JSON, objects, required fields, JSON types.

Only the shape is checked here. Values (ranges, parseable timestamps, blank ids) are the
pipeline's rules, so a reading gets the same answer whether it arrives by file or by HTTP.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from energy_pipelines.contract import Stream

JsonType = Literal["string", "number"]
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

    def __init__(self, message: str, problems: list[ShapeProblem], total: int | None = None):
        super().__init__(message)
        self.message = message
        self.problems = problems
        self.total = len(problems) if total is None else total


def json_type(stream: Stream, file_name: str) -> JsonType:
    kind = next(f.kind for f in stream.fields if f.file_name == file_name)
    return "string" if kind in ("id", "timestamp") else "number"


def field_types(stream: Stream) -> tuple[tuple[str, JsonType], ...]:
    return tuple((f.file_name, json_type(stream, f.file_name)) for f in stream.fields)


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


def check_records(data: Any, stream: Stream, escapes_present: bool = True) -> list[dict[str, Any]]:
    """The records of a body (one object or an array of objects), or ShapeError naming every
    bad item and field. `escapes_present=False` skips the per-string Unicode scan: without a
    `\\u` escape in the body no string can hold a lone surrogate."""
    if type(data) is dict:
        items: list[Any] = [data]
    elif type(data) is list:
        items = data
    else:
        raise ShapeError(
            f"the body must be a JSON object or an array of objects, not {_type_name(data)}", []
        )
    fields = field_types(stream)
    expected = ", ".join(name for name, _ in fields)
    problems: list[ShapeProblem] = []
    total = 0

    def report(index: int, field: str | None, problem: str) -> None:
        nonlocal total
        total += 1
        if len(problems) < MAX_REPORTED_ERRORS:
            problems.append(ShapeProblem(index, field, problem))

    for index, item in enumerate(items):
        if type(item) is not dict:
            report(index, None, f"must be a JSON object with {expected}, not {_type_name(item)}")
            continue
        for name, wanted in fields:
            value = item.get(name, _MISSING)
            kind = type(value)
            if wanted == "string":
                if kind is str:
                    if escapes_present:
                        problem = _text_problem(value)
                        if problem:
                            report(index, name, problem)
                    continue
            elif kind is int or kind is float:
                continue
            if value is _MISSING:
                report(index, name, "is missing")
            else:
                report(index, name, f"must be a {wanted}, not {_type_name(value)}")
    if total:
        noun = "problem" if total == 1 else "problems"
        raise ShapeError(
            f"{total} {noun} in the request body; nothing of it was accepted", problems, total
        )
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
    for name, wanted in field_types(stream):
        values = [record[name] for record in records]
        columns[name] = (
            pa.array(values, type=pa.string()) if wanted == "string" else _number_array(values)
        )
    return pa.table(columns)
