"""The schema from energy_pipelines/sql/: numbered files once each, repeatable files (functions and
views) whenever they change, and an installed database upgraded to exactly what a new one gets."""

from __future__ import annotations

import re
import shutil
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from energy_pipelines.load.database import connect, execute_admin, with_database
from energy_pipelines.load.migrations import (
    has_statements,
    list_migrations,
    list_repeatables,
    sql_dir,
    upgrade,
)
from tests.conftest import query
from tests.helpers import as_user

# The SQL files of the product at commit ee0f54b, as installations migrated by it applied them:
# numbered files only, each function and view restated in the file that changed it.
INSTALLED_SQL = Path(__file__).parent / "data" / "sql_ee0f54b.tar.gz"

# Everything a migrated schema is made of, each row comparable between two databases.
SCHEMA_QUERIES = {
    "functions": """
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid),
               pg_get_userbyid(p.proowner),
               ARRAY(SELECT a.grantee::regrole::text || ' ' || a.privilege_type
                       FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                      ORDER BY 1)
          FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1""",
    "relations": """
        SELECT c.relname::text, c.relkind::text, c.reloptions::text,
               pg_get_userbyid(c.relowner),
               CASE c.relkind WHEN 'v' THEN pg_get_viewdef(c.oid)
                              WHEN 'i' THEN pg_get_indexdef(c.oid) END,
               ARRAY(SELECT a.grantee::regrole::text || ' ' || a.privilege_type
                       FROM aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
                      ORDER BY 1)
          FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace ORDER BY 1""",
    "columns": """
        SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, co.collname::text, pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          LEFT JOIN pg_collation co ON co.oid = a.attcollation
          LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid)
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2""",
    "default privileges": """
        SELECT defaclobjtype::text, defaclacl::text FROM pg_default_acl ORDER BY 1""",
    "ledgers": """
        SELECT 'numbered', version::text, name FROM schema_migrations
        UNION ALL SELECT 'repeatable', name, sha256 || ' after ' || after_version
          FROM schema_repeatables ORDER BY 1, 2""",
    "seeded rows": """
        SELECT 'hot_status_watermark', stream FROM hot_status_watermark
        UNION ALL SELECT 'daily_analytics_watermarks', stream FROM daily_analytics_watermarks
        UNION ALL SELECT 'loader_locks', stream FROM loader_locks ORDER BY 1, 2""",
}


def _schema(url: str, parts: tuple[str, ...] = tuple(SCHEMA_QUERIES)) -> dict[str, list[tuple]]:
    conn = connect(url)
    try:
        return {part: query(conn, SCHEMA_QUERIES[part]) for part in parts}
    finally:
        conn.close()


@pytest.fixture
def new_database(server_url: str) -> Iterator[str]:
    """An empty database: no migration applied."""
    name = f"energy_mig_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    yield with_database(server_url, name)
    execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _migrate(url: str) -> list[str]:
    conn = connect(url)
    try:
        return upgrade(conn)
    finally:
        conn.close()


def _installed_sql(tmp_path: Path, up_to: int) -> Path:
    """The installed product's SQL folder, up to migration `up_to`."""
    with tarfile.open(INSTALLED_SQL) as archive:
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / "sql"
    for path in folder.glob("*.sql"):
        if int(path.name[:3]) > up_to:
            path.unlink()
    return folder


def _migrate_as_installed(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, up_to: int
) -> None:
    monkeypatch.setenv("ENERGY_SQL_DIR", str(_installed_sql(tmp_path, up_to)))
    assert _migrate(url)[-1].startswith(f"{up_to:03d}_")
    monkeypatch.delenv("ENERGY_SQL_DIR")


@pytest.mark.parametrize("installed_up_to", [22, 13, 12, 8])
def test_an_installed_database_upgrades_to_exactly_the_schema_a_new_one_gets(
    database_url: str,
    new_database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    installed_up_to: int,
) -> None:
    # `database_url` is a clone of a database migrated from nothing by this version.
    _migrate_as_installed(new_database, tmp_path, monkeypatch, installed_up_to)
    installed = _schema(new_database, ("functions",))

    applied = _migrate(new_database)

    assert applied == [
        *(m.path.name for m in list_migrations()[installed_up_to + 1 :]),
        *(f"repeatable/{r.name}" for r in list_repeatables()),
    ]
    upgraded, new = _schema(new_database), _schema(database_url)
    for part in SCHEMA_QUERIES:
        assert upgraded[part] == new[part], part
    # The comparison covers what changed: functions were replaced, not left as they were.
    assert installed["functions"] != upgraded["functions"]
    assert _migrate(new_database) == []


def test_each_function_and_view_is_defined_once_in_a_repeatable_file(db) -> None:
    created = re.compile(
        r"^CREATE\s+(?:OR\s+REPLACE\s+)?(FUNCTION|VIEW)\s+(\w+)", re.IGNORECASE | re.MULTILINE
    )
    for migration in list_migrations():
        text = migration.path.read_text(encoding="utf-8")
        assert not created.findall(text), migration.path.name
    defined: dict[tuple[str, str], list[str]] = {}
    for repeatable in list_repeatables():
        assert not re.search(
            r"^\s*(CREATE\s+TABLE|ALTER\s+TABLE|INSERT|UPDATE|DELETE|DROP)\b",
            re.sub(r"\$\$.*?\$\$", "", repeatable.sql, flags=re.DOTALL),
            re.IGNORECASE | re.MULTILINE,
        ), f"{repeatable.name}: a repeatable file holds functions, views and their grants only"
        assert not re.search(
            r"^CREATE\s+(?!OR\s+REPLACE)", repeatable.sql, re.IGNORECASE | re.MULTILINE
        ), f"{repeatable.name}: every CREATE is CREATE OR REPLACE"
        for kind, name in created.findall(repeatable.sql):
            defined.setdefault((kind.upper(), name), []).append(repeatable.name)
    assert {key: files for key, files in defined.items() if len(files) > 1} == {}
    in_database = query(
        db,
        "SELECT 'FUNCTION', proname::text FROM pg_proc"
        " WHERE pronamespace = 'public'::regnamespace"
        " UNION SELECT 'VIEW', relname::text FROM pg_class"
        " WHERE relkind = 'v' AND relnamespace = 'public'::regnamespace",
    )
    assert sorted(in_database) == sorted(defined)


def test_a_changed_repeatable_file_is_applied_again_and_only_it(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(str(sql_dir()), copy)
    monkeypatch.setenv("ENERGY_SQL_DIR", str(copy))
    assert _migrate(database_url) == []

    evidence = copy / "repeatable" / "evidence.sql"
    evidence.write_text(
        evidence.read_text().replace(
            "WHEN paired_dc / paired_ac > 1.0", "WHEN paired_dc / paired_ac > 1.05"
        )
    )
    assert _migrate(database_url) == ["repeatable/evidence.sql"]
    conn = connect(database_url)
    try:
        [(status,)] = query(conn, "SELECT evidence_status(true, 1.03, 1, 60, 1.03, 1, 0.5, 0.85)")
    finally:
        conn.close()
    assert status == "normal"
    assert _migrate(database_url) == []


def test_after_a_numbered_migration_every_repeatable_file_is_applied_again(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A table change views stand in the way of: the migration drops the views, and their
    # repeatable file puts them back, unchanged.
    copy = tmp_path / "sql"
    shutil.copytree(str(sql_dir()), copy)
    (copy / "099_rule_text.sql").write_text(
        "DROP VIEW IF EXISTS v_rejected_rows, v_rejection_counts;\n"
        "ALTER TABLE rejected_rows ALTER COLUMN rule TYPE varchar(2000);\n"
    )
    monkeypatch.setenv("ENERGY_SQL_DIR", str(copy))

    applied = _migrate(database_url)

    assert applied == ["099_rule_text.sql", *(f"repeatable/{r.name}" for r in list_repeatables())]
    conn = connect(database_url)
    try:
        assert query(conn, "SELECT count(*) FROM v_rejected_rows, v_rejection_counts") == [(0,)]
        assert query(
            conn,
            "SELECT has_table_privilege('energy_analyst', 'v_rejected_rows', 'SELECT'),"
            " has_table_privilege('energy_analyst', 'v_rejection_counts', 'SELECT')",
        ) == [(True, True)]
    finally:
        conn.close()
    assert _migrate(database_url) == []


def test_a_repeatable_file_that_fails_is_applied_by_the_next_upgrade(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / "sql"
    shutil.copytree(str(sql_dir()), copy)
    monkeypatch.setenv("ENERGY_SQL_DIR", str(copy))
    views = copy / "repeatable" / "analyst_views.sql"
    good = views.read_text()
    views.write_text(good.replace("FROM rejected_rows;", "FROM no_such_table;"))
    with pytest.raises(Exception, match="no_such_table"):
        _migrate(database_url)
    views.write_text(good + "\n-- reviewed\n")
    assert _migrate(database_url) == ["repeatable/analyst_views.sql"]


def test_a_database_a_newer_version_migrated_keeps_its_functions(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [shipped] = [r.sha256 for r in list_repeatables() if r.name == "evidence.sql"]
    copy = tmp_path / "sql"
    shutil.copytree(str(sql_dir()), copy)
    monkeypatch.setenv("ENERGY_SQL_DIR", str(copy))
    evidence = copy / "repeatable" / "evidence.sql"
    evidence.write_text(evidence.read_text() + "\n-- an older text\n")
    conn = connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'newer')")
        conn.commit()
        assert upgrade(conn) == []
        assert query(conn, "SELECT sha256 FROM schema_repeatables WHERE name = 'evidence.sql'") == [
            (shipped,)
        ]
    finally:
        conn.close()


def test_the_loader_checks_for_pending_migrations_without_any_ddl_right(
    database_url: str,
) -> None:
    loader = connect(as_user(database_url, "energy_loader"))
    try:
        assert upgrade(loader) == []
    finally:
        loader.close()


def test_a_numbered_file_of_comments_only_is_recorded_without_running() -> None:
    noted = [m for m in list_migrations() if not has_statements(m.path.read_text())]
    assert [m.version for m in noted] == [7, 9, 18]
    assert has_statements("-- a note\nSELECT 1;\n")
    assert not has_statements("-- a note\n\n   -- another\n")


def test_new_tables_an_installed_database_left_are_recorded_and_finished_after_upgrade(
    new_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A run of the installed product stopped after loading a new day and a new hour, before it
    # indexed and attached them.
    _migrate_as_installed(new_database, tmp_path, monkeypatch, 22)
    conn = connect(new_database)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT day_table_for_new_rows_of('meter_readings_history', '2026-02-11', true),"
                " hour_table_for_new_rows('vehicle_readings_history', '2026-02-12 10:00+00')"
            )
            day, hour = cur.fetchone()
            cur.execute(f"INSERT INTO {day} VALUES ('m-1', '2026-02-11 23:59+00', 1, 230, 1)")
            cur.execute(f"INSERT INTO {hour} VALUES ('v-1', '2026-02-12 10:30+00', 50, 1, 20, 2)")
        conn.commit()
        assert upgrade(conn)

        assert query(
            conn,
            "SELECT table_name, history::text, kind, partition_of, ts_from::text, ts_to::text"
            " FROM history_new_tables ORDER BY 1",
        ) == [
            (
                "meter_readings_history_p20260211",
                "meter_readings_history",
                "day",
                "meter_readings_history",
                "2026-02-11 00:00:00+00",
                "2026-02-12 00:00:00+00",
            ),
            (
                "vehicle_readings_history_p20260212_h10",
                "vehicle_readings_history",
                "hour",
                "vehicle_readings_history_p20260212",
                "2026-02-12 10:00:00+00",
                "2026-02-12 11:00:00+00",
            ),
        ]
        with conn.cursor() as cur:
            for history in ("meter_readings_history", "vehicle_readings_history"):
                cur.execute("SELECT finish_new_tables($1::regclass)", (history,))
        conn.commit()
        assert query(conn, "SELECT count(*) FROM history_new_tables") == [(0,)]
        assert query(
            conn,
            "SELECT (SELECT count(*) FROM meter_readings_history),"
            " (SELECT count(*) FROM vehicle_readings_history)",
        ) == [(1, 1)]
    finally:
        conn.close()


def test_no_migration_lies_outside_the_package() -> None:
    # A file in a top-level sql/ folder would never be applied: the package ships its own.
    root = Path(__file__).resolve().parent.parent
    assert sorted(p.name for p in root.glob("sql/**/*.sql")) == []
