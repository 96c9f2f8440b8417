"""The contract's facts against what uses them: the migrated tables, the staging table, the
settings and the SQL functions. A fact changed in one place and not the other fails here."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import polars as pl
import pytest

from energy_pipelines.contract import (
    CANDIDATE_TABLES,
    FAULT_THRESHOLD,
    HOURLY_TOTALS_TABLES,
    REJECTED_ROWS_TABLE,
    STATUS_TABLES,
    STREAMS,
    VALUE_KINDS,
    Range,
    Stream,
)
from energy_pipelines.landing.read import ROW_NUMBER
from energy_pipelines.settings import EvidenceRules
from energy_pipelines.simulate import FAULTY_EFFICIENCY
from energy_pipelines.transform.readings import to_staging_table
from tests.conftest import query

READINGS = [s for s in STREAMS.values() if s.has_timestamp]


def _column_type(db, table: str, column: str) -> str:  # type: ignore[no-untyped-def]
    [(found,)] = query(
        db,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped",
        (table, column),
    )
    return str(found)


def _type_name(db, postgres_type: str) -> str:  # type: ignore[no-untyped-def]
    """PostgreSQL's own spelling of a type (timestamptz is `timestamp with time zone`)."""
    [(name,)] = query(db, "SELECT format_type(to_regtype($1), NULL)", (postgres_type,))
    return str(name)


def test_every_field_kind_has_one_record() -> None:
    kinds = {f.kind for s in STREAMS.values() for f in s.fields}
    assert kinds == set(VALUE_KINDS)
    for name, kind in VALUE_KINDS.items():
        assert kind.name == name
        # Numbers carry a range; ids and timestamps have rules of their own.
        assert (kind.allowed is not None) == (kind.json_type == "number")


@pytest.mark.parametrize("stream", list(STREAMS.values()), ids=list(STREAMS))
def test_history_columns_have_the_contract_types(db, stream: Stream) -> None:  # type: ignore[no-untyped-def]
    for field in stream.fields:
        expected = _type_name(db, field.value_kind.postgres_type)
        assert _column_type(db, stream.table, field.column) == expected, field.column


@pytest.mark.parametrize("stream", READINGS, ids=[s.name for s in READINGS])
def test_side_tables_exist_and_carry_the_contract_types(db, stream: Stream) -> None:  # type: ignore[no-untyped-def]
    assert stream.status_table == STATUS_TABLES[stream.name]
    assert stream.candidates_table == CANDIDATE_TABLES[stream.name]
    assert stream.hourly_totals_table == HOURLY_TOTALS_TABLES[stream.name]
    for table in (stream.status_table, stream.candidates_table):
        for field in stream.fields:
            expected = _type_name(db, field.value_kind.postgres_type)
            assert _column_type(db, table, field.column) == expected, (table, field.column)
    device = stream.fields[0]
    assert _column_type(db, stream.hourly_totals_table, device.column) == "text"
    assert _column_type(db, stream.hourly_totals_table, "hour") == _type_name(db, "timestamptz")


def test_correlation_has_no_side_tables(db) -> None:  # type: ignore[no-untyped-def]
    correlation = STREAMS["correlation"]
    assert (
        correlation.status_table,
        correlation.candidates_table,
        correlation.hourly_totals_table,
    ) == (None, None, None)
    assert set(STATUS_TABLES) == set(CANDIDATE_TABLES) == set(HOURLY_TOTALS_TABLES)
    assert query(db, "SELECT to_regclass($1) IS NOT NULL", (REJECTED_ROWS_TABLE,)) == [(True,)]


@pytest.mark.parametrize("stream", READINGS, ids=[s.name for s in READINGS])
def test_staging_table_takes_the_contract_arrow_types(stream: Stream) -> None:
    row = {
        "id": "d-1",
        "kwh": 1.5,
        "voltage": 230.0,
        "soc": 50.0,
        "battery_temp": 20.0,
        "timestamp": datetime(2026, 2, 11, 10, 30, tzinfo=UTC),
    }
    frame = pl.DataFrame(
        {
            **{f.column: [row[f.kind]] for f in stream.fields},
            ROW_NUMBER: [1],
        },
        schema={
            **{f.column: f.value_kind.polars_dtype for f in stream.fields},
            ROW_NUMBER: pl.Int64,
        },
    )
    table = to_staging_table(frame, stream)
    assert [table.schema.field(f.column).type for f in stream.fields] == [
        f.value_kind.arrow_type for f in stream.fields
    ]


def test_range_words() -> None:
    assert Range(0.0, 2_000.0, "V").rule == "must be between 0 and 2000 V"
    assert Range(-50.0, 120.5, "").rule == "must be between -50 and 120.5"


def test_fault_threshold_is_one_number(db) -> None:  # type: ignore[no-untyped-def]
    assert EvidenceRules().fault_threshold == FAULT_THRESHOLD
    assert FAULTY_EFFICIENCY == FAULT_THRESHOLD
    # The SQL functions' defaults restate it (for analysts calling them without arguments).
    rows = query(
        db,
        "SELECT p.oid::regprocedure::text, pg_get_function_arguments(p.oid) FROM pg_proc p"
        " WHERE pg_get_function_arguments(p.oid) LIKE '%fault_threshold%DEFAULT%'",
    )
    assert rows
    for name, arguments in rows:
        [default] = re.findall(r"fault_threshold double precision DEFAULT ([0-9.]+)", arguments)
        assert float(default) == FAULT_THRESHOLD, name
