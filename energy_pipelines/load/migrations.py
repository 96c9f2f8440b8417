"""The database schema from the SQL files shipped in the package (energy_pipelines/sql/, or the
folder $ENERGY_SQL_DIR names):

- numbered files `NNN_name.sql`: tables, indexes, roles, grants on tables and data moves, each
  applied once, in order, and recorded in schema_migrations. They are the schema's history.
- `repeatable/*.sql`: the current text of every function and view with its grants, each in
  exactly one file, every statement CREATE OR REPLACE (or a GRANT/REVOKE). Applied after the
  numbered files, in name order, whenever a file's sha256 differs from the one recorded in
  schema_repeatables, and again after numbered migrations are applied (one may drop a view to
  change a table it reads).

CREATE OR REPLACE cannot change a function's argument names or types, remove an argument's
default or change its result type (or a RETURNS TABLE column), nor remove, rename or retype a
view's column. Such a change is a new numbered migration that drops the old object (`DROP
FUNCTION IF EXISTS name(old argument types)`, `DROP VIEW IF EXISTS name`), plus the new text in
the repeatable file. Removing a function or view is the same drop, and deleting its text.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from energy_pipelines.load.database import Connection

# Serializes concurrent upgrades (several ingest processes starting at once).
MIGRATION_LOCK_KEY = 0x656E_6572_6779_0001
REPEATABLE_FOLDER = "repeatable"
_NUMBERED_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_REPEATABLE_NAME = re.compile(r"^[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Traversable


@dataclass(frozen=True)
class RepeatableFile:
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Recorded:
    """What a database's ledgers say was applied."""

    versions: frozenset[int]
    # File name -> (sha256, newest numbered version when it was applied).
    repeatables: dict[str, tuple[str, int]]

    @property
    def newest_version(self) -> int:
        return max(self.versions, default=0)


def sql_dir() -> Traversable:
    """The SQL files: the package's own, or the folder $ENERGY_SQL_DIR names."""
    override = os.environ.get("ENERGY_SQL_DIR")
    return Path(override) if override else files("energy_pipelines").joinpath("sql")


def _sql_files(directory: Traversable) -> list[Traversable]:
    if not directory.is_dir():
        return []
    found = (entry for entry in directory.iterdir() if entry.is_file())
    return sorted((entry for entry in found if entry.name.endswith(".sql")), key=lambda e: e.name)


def list_migrations(directory: Traversable | None = None) -> list[Migration]:
    found = []
    for path in _sql_files(directory or sql_dir()):
        match = _NUMBERED_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migration files share a number")
    return found


def list_repeatables(directory: Traversable | None = None) -> list[RepeatableFile]:
    found = []
    for path in _sql_files((directory or sql_dir()).joinpath(REPEATABLE_FOLDER)):
        if not _REPEATABLE_NAME.match(path.name):
            raise ValueError(f"repeatable file {path.name} is not named name.sql")
        found.append(RepeatableFile(path.name, path.read_text(encoding="utf-8")))
    return found


def has_statements(sql: str) -> bool:
    """Whether a file holds SQL beyond comments: a numbered file whose functions live in
    repeatable files may keep only its note, and PostgreSQL refuses an empty query."""
    return any(line.strip() and not line.strip().startswith("--") for line in sql.splitlines())


def recorded(conn: Connection) -> Recorded:
    """The database's ledgers (empty before its first upgrade); read-only, in its own
    transaction."""
    versions: frozenset[int] = frozenset()
    repeatables: dict[str, tuple[str, int]] = {}
    with conn.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('schema_migrations') IS NOT NULL,"
            " to_regclass('schema_repeatables') IS NOT NULL"
        )
        has_migrations, has_repeatables = cur.fetchone()
        if has_migrations:
            cur.execute("SELECT version FROM schema_migrations")
            versions = frozenset(row[0] for row in cur.fetchall())
        if has_repeatables:
            cur.execute("SELECT name, sha256, after_version FROM schema_repeatables")
            repeatables = {name: (sha, after) for name, sha, after in cur.fetchall()}
    conn.rollback()
    return Recorded(versions, repeatables)


def stale_repeatables(files_: list[RepeatableFile], ledger: Recorded) -> list[RepeatableFile]:
    """The repeatable files to apply: changed, never applied, or applied before the newest
    numbered migration."""
    return [
        f for f in files_ if ledger.repeatables.get(f.name) != (f.sha256, ledger.newest_version)
    ]


def upgrade(conn: Connection) -> list[str]:
    """Apply every pending numbered migration, then every stale repeatable file; each file
    commits together with its ledger row. Returns the files applied.

    A session-level advisory lock serializes concurrent upgrades: `executescript` (needed for
    files with several statements) commits before it runs, which would release a
    transaction-level lock.
    """
    directory = sql_dir()
    bootstrap, *numbered = list_migrations(directory)
    if bootstrap.version != 0:
        raise ValueError("sql/000_schema_migrations.sql must exist")
    repeatables = list_repeatables(directory)
    ledger = recorded(conn)
    if ledger.newest_version > numbered[-1].version:
        # A newer version of the package migrated this database: its functions are newer than
        # this version's files, which must not replace them.
        return []
    if all(m.version in ledger.versions for m in numbered) and not stale_repeatables(
        repeatables, ledger
    ):
        # Nothing to do, and nothing that needs DDL rights: the energy_loader role gets here.
        return []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock($1)", (MIGRATION_LOCK_KEY,))
        try:
            cur.executescript(bootstrap.path.read_text(encoding="utf-8"))
            conn.commit()
            applied = _apply_numbered(conn, numbered, recorded(conn).versions)
            applied += _apply_repeatables(conn, repeatables, recorded(conn))
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.execute("SELECT pg_advisory_unlock($1)", (MIGRATION_LOCK_KEY,))
            conn.commit()
    return applied


def _apply_numbered(
    conn: Connection, numbered: list[Migration], applied: frozenset[int]
) -> list[str]:
    names = []
    with conn.cursor() as cur:
        for migration in numbered:
            if migration.version in applied:
                continue
            sql = migration.path.read_text(encoding="utf-8")
            if has_statements(sql):
                cur.executescript(sql)
            cur.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                (migration.version, migration.name),
            )
            conn.commit()
            names.append(migration.path.name)
    return names


def _apply_repeatables(
    conn: Connection, repeatables: list[RepeatableFile], ledger: Recorded
) -> list[str]:
    names = []
    with conn.cursor() as cur:
        for repeatable in stale_repeatables(repeatables, ledger):
            cur.executescript(repeatable.sql)
            cur.execute(
                "INSERT INTO schema_repeatables (name, sha256, after_version)"
                " VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE"
                " SET sha256 = excluded.sha256, after_version = excluded.after_version,"
                " applied_at = now()",
                (repeatable.name, repeatable.sha256, ledger.newest_version),
            )
            conn.commit()
            names.append(f"{REPEATABLE_FOLDER}/{repeatable.name}")
        # The ledger lists the files shipped: one deleted went with the migration that dropped
        # what it defined.
        shipped = {r.name for r in repeatables}
        for name in sorted(set(ledger.repeatables) - shipped):
            cur.execute("DELETE FROM schema_repeatables WHERE name = $1", (name,))
        conn.commit()
    return names


# Database URLs this process has already migrated.
_UPGRADED: set[str] = set()


def upgrade_once(conn: Connection, url: str) -> None:
    """upgrade() the first time this process touches `url`: migrations run automatically
    before a run touches data, and a process's later runs skip the check (and its lock)."""
    if url not in _UPGRADED:
        upgrade(conn)
        _UPGRADED.add(url)
