"""The 24-hour summary over HTTP on a month of hourly history (1,440 leaf tables), loaded by the
product's own loader and served by the real gateway process: 32 concurrent clients get no error
and every answer is an independent exact SQL sum rounded as the summary rounds (4 decimals);
the gateway never holds more connections than its pool; a statement cancelled or cut off
mid-way is tried again instead of answering 503; a database that is really unavailable gets a
503 that says why; ids no file can hold get a quick 404."""

from __future__ import annotations

import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from energy_pipelines.bench_reads import (
    READ_END,
    HistoryShape,
    build_history,
    check_answers,
    leaf_tables,
    read_targets,
)
from energy_pipelines.gateway.reads import APPLICATION_NAME
from energy_pipelines.load.database import connect, execute_admin, with_database
from energy_pipelines.read_load import drive, free_port, running_gateway, summary_path
from tests.conftest import query

# 30 days x 24 hours x 2 streams = 1,440 leaves; a couple of devices suffice for the old days.
SHAPE = HistoryShape(days=30, old_fleet=2, last_fleet=12)
POOL_SIZE = 3
AS_OF = READ_END.isoformat().replace("+00:00", "Z")
Base = tuple[str, int]


@pytest.fixture(scope="module")
def history(
    server_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    name = f"energy_test_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    url = with_database(server_url, name)
    try:
        build_history(url, tmp_path_factory.mktemp("reads-history"), SHAPE)
        yield url
    finally:
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def gateway(history: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Base]:
    work = tmp_path_factory.mktemp("reads-gateway")
    with running_gateway(history, work, {"ENERGY_GATEWAY_DB_POOL_SIZE": str(POOL_SIZE)}) as (
        _,
        base,
    ):
        yield base


@pytest.fixture(scope="module")
def vehicles(history: str) -> list[str]:
    as_of, ids = read_targets(history)
    assert as_of == READ_END and len(ids) == SHAPE.last_fleet
    return ids


def get(base: Base, vehicle_id: str, as_of: str = AS_OF) -> tuple[int, dict, dict[str, str]]:
    client = http.client.HTTPConnection(*base, timeout=60)
    try:
        client.request("GET", summary_path(vehicle_id, as_of).decode())
        response = client.getresponse()
        return response.status, json.loads(response.read()), dict(response.getheaders())
    finally:
        client.close()


@pytest.mark.slow
def test_32_clients_on_1440_leaves_get_no_error_and_every_answer_right(
    history: str, gateway: Base, vehicles: list[str]
) -> None:
    assert leaf_tables(history)["total"] >= 1440
    result = drive(gateway, vehicles, AS_OF, connections=32, seconds=3.0, sample=len(vehicles))
    assert result.statuses.keys() == {"200"}, result.statuses
    assert result.requests >= 100
    # Every vehicle was asked for, and each distinct answer it got is checked.
    assert result.answers.keys() == set(vehicles)
    for vehicle, bodies in result.answers.items():
        assert {json.loads(body)["vehicleId"] for body in bodies} == {vehicle}
    assert check_answers(history, result.answers, READ_END) == []


def _gateway_sessions(conn) -> int:  # type: ignore[no-untyped-def]
    # One statement a transaction: pg_stat_activity is a snapshot taken once per transaction.
    return query(
        conn,
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = $1 AND datname = current_database()",
        (APPLICATION_NAME,),
    )[0][0]


def test_the_gateway_never_holds_more_connections_than_its_pool(
    history: str, gateway: Base, vehicles: list[str]
) -> None:
    seen: list[int] = []
    stop = threading.Event()

    def watch() -> None:
        with connect(history) as conn:
            while not stop.is_set():
                seen.append(_gateway_sessions(conn))
                time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = drive(gateway, vehicles, AS_OF, connections=32, seconds=2.0)
    finally:
        stop.set()
        watcher.join()
    assert result.statuses.keys() == {"200"}, result.statuses
    # 32 clients kept every pooled connection busy, and requests waited instead of opening more.
    assert len(seen) > 20 and max(seen) == POOL_SIZE


_LOCK_WAITER = (
    "SELECT pid, query_start FROM pg_stat_activity WHERE application_name = $1"
    " AND datname = current_database() AND wait_event_type = 'Lock'"
)
_INTERRUPT = {
    "cancel": "SELECT pg_cancel_backend($1::integer)",  # 57014 query_canceled
    "terminate": "SELECT pg_terminate_backend($1::integer)",  # the connection is lost mid-statement
}


def _lock_waiter(conn, other_than: tuple | None = None) -> tuple:  # type: ignore[no-untyped-def]
    """The gateway backend waiting for a lock (a statement other than `other_than`)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        waiting = [
            row for row in query(conn, _LOCK_WAITER, (APPLICATION_NAME,)) if row != other_than
        ]
        if waiting:
            return waiting[0]
        time.sleep(0.01)
    raise AssertionError("no gateway statement waited for the lock")


@pytest.mark.parametrize("interrupt", sorted(_INTERRUPT))
def test_a_statement_cancelled_or_cut_off_is_tried_again_instead_of_503(
    history: str, gateway: Base, vehicles: list[str], interrupt: str
) -> None:
    status, expected, _ = get(gateway, vehicles[0])
    assert status == 200
    locker, watcher = connect(history), connect(history)
    try:
        with locker.cursor() as cur:  # the summary's first read waits behind this lock
            cur.execute("LOCK TABLE meter_vehicle_correlation IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(get, gateway, vehicles[0])
            first = _lock_waiter(watcher)
            assert query(watcher, _INTERRUPT[interrupt], (first[0],)) == [(True,)]
            # The gateway sent the statement again (on a new connection once terminated).
            _lock_waiter(watcher, other_than=first)
            locker.rollback()
            status, body, _ = answer.result(timeout=30)
    finally:
        locker.close()
        watcher.close()
    assert (status, body) == (200, expected)


def test_a_database_really_unavailable_gets_503_with_the_reason(
    server_url: str, tmp_path: Path
) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with running_gateway(nowhere, tmp_path) as (_, base):
        started = time.monotonic()
        status, body, headers = get(base, "vehicle-00001")
        seconds = time.monotonic() - started
    assert status == 503 and headers.get("retry-after") == "1"
    # Tried again a few times with a short back-off, then the cause.
    assert body["message"].startswith("database unavailable after 4 attempt(s): ")
    assert seconds < 5
    empty = f"energy_test_{uuid.uuid4().hex[:12]}"  # a database nobody migrated
    execute_admin(server_url, f"CREATE DATABASE {empty}")
    try:
        with running_gateway(with_database(server_url, empty), tmp_path / "empty") as (_, base):
            status, body, _ = get(base, "vehicle-00001")
    finally:
        execute_admin(server_url, f"DROP DATABASE IF EXISTS {empty} WITH (FORCE)")
    assert status == 503 and body["message"].startswith("database error: ")
    assert "vehicle_performance_24h" in body["message"]


@pytest.mark.parametrize(
    ("vehicle_id", "reason"),
    [
        ("vehicle-00001' OR '1'='1", "no readings and no meter pairing"),
        ("vehicle-00001; DROP TABLE meter_vehicle_correlation; --", "no readings"),
        ("vehicle\x00-00001", "must not contain control characters"),
        ("vehicle\x1b[2J", "must not contain control characters"),
        ("v" * 65, "must be at most 64 characters"),
        ("   ", "must not be empty or only spaces"),
    ],
)
def test_ids_no_vehicle_can_have_get_a_quick_specific_404(
    history: str, gateway: Base, vehicle_id: str, reason: str
) -> None:
    started = time.monotonic()
    status, body, _ = get(gateway, vehicle_id)
    assert time.monotonic() - started < 1.0
    assert status == 404 and reason in body["message"], body
    with connect(history) as conn:  # and nothing was dropped
        assert query(conn, "SELECT count(*) FROM meter_vehicle_correlation")[0][0] > 0


def test_answers_for_an_as_of_clamped_or_in_the_past_stay_consistent(
    gateway: Base, vehicles: list[str]
) -> None:
    # Far outside Python's datetime range either way: clamped, still an answer.
    for as_of in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
        status, body, _ = get(gateway, vehicles[0], as_of)
        assert status == 200, body
        assert datetime.fromisoformat(body["window"]["end"].replace("Z", "+00:00"))
    status, body, _ = get(gateway, vehicles[0], "not a time")
    assert status == 400
