"""Real PostgreSQL for every test that needs one: the server DATABASE_URL names, else an embedded
server. Each test gets its own database, cloned from a migrated template, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from energy_pipelines.load.database import (
    connect,
    embedded_database_url,
    execute_admin,
    normalize_url,
    with_database,
)
from energy_pipelines.load.migrations import upgrade
from energy_pipelines.settings import Settings


@pytest.fixture(scope="session", autouse=True)
def dagster_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every CLI run records itself in a Dagster instance (the project's .dagster_home/ by
    default): the tests', in this process and the CLIs it starts, is a folder of their own."""
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    before = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    yield home
    if before is None:
        os.environ.pop("DAGSTER_HOME", None)
    else:
        os.environ["DAGSTER_HOME"] = before


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return normalize_url(url)
    return embedded_database_url(tmp_path_factory.mktemp("embedded-postgres"))


@pytest.fixture(scope="session")
def template_database(server_url: str) -> Iterator[str]:
    name = f"energy_tmpl_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    conn = connect(with_database(server_url, name))
    try:
        upgrade(conn)
    finally:
        conn.close()
    yield name
    execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(server_url: str, template_database: str) -> Iterator[str]:
    name = f"energy_test_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    yield with_database(server_url, name)
    execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def landing(tmp_path: Path) -> Path:
    root = tmp_path / "landing"
    for stream in ("meter", "vehicle", "correlation"):
        (root / stream).mkdir(parents=True)
    return root


@pytest.fixture
def settings(landing: Path, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        landing_dir=landing,
        database_url=database_url,
        state_dir=tmp_path / "state",
        settle_seconds=0.0,
    )


@pytest.fixture
def offline_settings(landing: Path, tmp_path: Path) -> Settings:
    """Settings for tests that never reach the database (the gateway's own)."""
    return Settings(landing_dir=landing, database_url=None, state_dir=tmp_path / "state")


@pytest.fixture
def process_env(landing: Path, tmp_path: Path) -> dict[str, str]:
    """The environment of a gateway or CLI process of this test, its database unset."""
    from tests.gateway_helpers import process_env_for

    return process_env_for(landing, tmp_path)


@pytest.fixture
def env(database_url: str, landing: Path) -> dict[str, str]:
    """Environment for running the CLI as a subprocess against this test's database."""
    variables = dict(os.environ)
    variables.pop("ENERGY_CRASH_AT", None)
    variables.update(
        DATABASE_URL=database_url, ENERGY_LANDING_DIR=str(landing), ENERGY_SETTLE_SECONDS="0"
    )
    return variables


@pytest.fixture
def db(database_url: str):  # type: ignore[no-untyped-def]
    conn = connect(database_url)
    yield conn
    conn.close()


def query(conn, sql: str, params: tuple = ()) -> list[tuple]:  # type: ignore[no-untyped-def]
    with conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    conn.rollback()
    return rows
