"""The package as a user installs it: a wheel built from the sources, installed into a new virtual
environment outside the checkout, runs the demo from an empty working folder. The schema comes
from the wheel's own SQL files, and every folder it makes is in the working folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from energy_pipelines.load.database import connect, execute_admin, with_database
from energy_pipelines.load.migrations import list_migrations, list_repeatables
from tests.conftest import query

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    name = f"energy_wheel_{uuid.uuid4().hex[:12]}"
    execute_admin(server_url, f"CREATE DATABASE {name}")
    yield with_database(server_url, name)
    execute_admin(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _run(command: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, **options)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def _build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` on a copy of what the package is built from, so the build leaves nothing in
    the checkout."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "energy_pipelines",
        source / "energy_pipelines",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)])
    [wheel] = wheels.glob("energy_pipelines-*.whl")
    return wheel


def _new_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new environment holding the wheel; its dependencies come from this test's environment,
    whose site-packages it reads after its own (a path in a .pth file: the editable install of
    the checkout there is a .pth of its own, which Python does not follow from such a path)."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    (Path(purelib.stdout.strip()) / "dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n"
    )
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    _run([*pip, "install", "-q", "--no-deps", "--no-index", str(wheel)])
    return venv


def test_the_wheel_installed_outside_the_checkout_runs_the_demo(
    tmp_path: Path, empty_database: str
) -> None:
    venv = _new_venv(tmp_path, _build_wheel(tmp_path))
    installed = _run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import energy_pipelines; print(energy_pipelines.__file__)",
        ],
        cwd=tmp_path,
    )
    assert Path(installed.stdout.strip()).is_relative_to(venv)

    work = tmp_path / "work"
    work.mkdir()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ENERGY_", "DAGSTER_HOME", "PYTHON"))
    }
    env["DATABASE_URL"] = empty_database
    demo = _run(
        [str(venv / "bin" / "energy-pipelines"), "demo", "--meters", "2", "--minutes", "120"],
        cwd=work,
        env=env,
    )

    assert "loaded" in demo.stdout
    # Its folders are in the working folder: the landing files (archived once loaded) and the
    # Dagster instance the runs are recorded in.
    assert list((work / "landing" / "_archive" / "meter").rglob("*.parquet"))
    assert (work / ".dagster_home").is_dir()
    conn = connect(empty_database)
    try:
        assert query(conn, "SELECT count(*) > 0 FROM meter_readings_history") == [(True,)]
        assert query(conn, "SELECT count(*) > 0 FROM vehicle_readings_history") == [(True,)]
        # The wheel's schema: every numbered and repeatable file it ships was applied.
        assert query(conn, "SELECT count(*) FROM schema_migrations") == [
            (len(list_migrations()) - 1,)
        ]
        assert query(conn, "SELECT count(*) FROM schema_repeatables") == [
            (len(list_repeatables()),)
        ]
    finally:
        conn.close()
