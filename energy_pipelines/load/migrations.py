"""Apply the numbered SQL migrations in sql/ once each, in order, recorded in schema_migrations."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from energy_pipelines.load.database import Connection
from energy_pipelines.settings import PROJECT_ROOT

# Serializes concurrent upgrades (several ingest processes starting at once).
MIGRATION_LOCK_KEY = 0x656E_6572_6779_0001
_FILE_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path


def sql_dir() -> Path:
    return Path(os.environ.get("ENERGY_SQL_DIR", PROJECT_ROOT / "sql"))


def list_migrations(directory: Path | None = None) -> list[Migration]:
    found = []
    for path in sorted((directory or sql_dir()).glob("*.sql")):
        match = _FILE_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a number")
    return found


def pending(conn: Connection, numbered: list[Migration]) -> list[Migration]:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not cur.fetchone()[0]:
            conn.rollback()
            return numbered
        cur.execute("SELECT version FROM schema_migrations")
        applied = {row[0] for row in cur.fetchall()}
    conn.rollback()
    return [m for m in numbered if m.version not in applied]


def upgrade(conn: Connection) -> list[str]:
    """Apply every pending migration; each commits together with its schema_migrations row.

    A session-level advisory lock serializes concurrent upgrades: `executescript` (needed for
    files with several statements) commits before it runs, which would release a
    transaction-level lock.
    """
    migrations = list_migrations()
    bootstrap, numbered = migrations[0], migrations[1:]
    if bootstrap.version != 0:
        raise ValueError("sql/000_schema_migrations.sql must exist")
    if not pending(conn, numbered):
        # Nothing to do, and nothing that needs DDL rights: the energy_loader role gets here.
        return []
    applied_now: list[str] = []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock($1)", (MIGRATION_LOCK_KEY,))
        try:
            cur.executescript(bootstrap.path.read_text(encoding="utf-8"))
            conn.commit()
            cur.execute("SELECT version FROM schema_migrations")
            applied = {row[0] for row in cur.fetchall()}
            for migration in numbered:
                if migration.version in applied:
                    continue
                cur.executescript(migration.path.read_text(encoding="utf-8"))
                cur.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    (migration.version, migration.name),
                )
                conn.commit()
                applied_now.append(migration.path.name)
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.execute("SELECT pg_advisory_unlock($1)", (MIGRATION_LOCK_KEY,))
            conn.commit()
    return applied_now


# Database URLs this process has already migrated.
_UPGRADED: set[str] = set()


def upgrade_once(conn: Connection, url: str) -> None:
    """upgrade() the first time this process touches `url`: migrations run automatically
    before a run touches data, and a process's later runs skip the check (and its lock)."""
    if url not in _UPGRADED:
        upgrade(conn)
        _UPGRADED.add(url)
