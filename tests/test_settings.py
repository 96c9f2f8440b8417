"""Settings: each default written once, on its field, beside the variable that overrides it;
default folders in the working folder."""

from __future__ import annotations

import os
from dataclasses import fields, is_dataclass
from pathlib import Path

import pytest

from energy_pipelines.settings import EnvVariable, Settings

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def _variables(config: type = Settings) -> list[tuple[tuple[str, ...], EnvVariable, object]]:
    """(path of field names, variable, default) of every setting read from the environment."""
    found = []
    for setting in fields(config):
        if "env" in setting.metadata:
            found.append(((setting.name,), setting.metadata["env"], setting.default))
        elif is_dataclass(setting.default_factory):
            found += [
                ((setting.name, *path), variable, default)
                for path, variable, default in _variables(setting.default_factory)
            ]
    return found


def _value(settings: object, path: tuple[str, ...]) -> object:
    for name in path:
        settings = getattr(settings, name)
    return settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith("ENERGY_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_without_variables_the_settings_are_the_fields_defaults(clean_env: Path) -> None:
    assert Settings.from_env() == Settings(
        landing_dir=clean_env / "landing", database_url=None, state_dir=clean_env / ".energy"
    )


def test_each_variable_sets_its_field_in_its_unit(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = _variables()
    assert len({variable.name for _, variable, _ in variables}) == len(variables)
    for path, variable, default in variables:
        if variable.choices:
            raw, expected = variable.choices[-1].upper(), variable.choices[-1]
        elif isinstance(default, str):
            raw = expected = "2026-01-01"
        else:
            raw, expected = "120", 120 * variable.unit
        monkeypatch.setenv(variable.name, raw)
        assert _value(Settings.from_env(), path) == expected, variable.name
        monkeypatch.delenv(variable.name)


def test_a_wrong_value_is_named_with_its_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENERGY_BATCH_MAX_MB", "0")
    with pytest.raises(ValueError, match=r"ENERGY_BATCH_MAX_MB='0' must be at least 0\.001"):
        Settings.from_env()
    monkeypatch.setenv("ENERGY_BATCH_MAX_MB", "0.5")
    assert Settings.from_env().batch_limits.max_bytes == 2**19
    monkeypatch.setenv("ENERGY_STREAM_WORKERS", "fibres")
    with pytest.raises(ValueError, match="ENERGY_STREAM_WORKERS='fibres' must be one of"):
        Settings.from_env()


def test_default_folders_follow_the_working_folder_and_variables_move_them(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    assert Settings.from_env().landing_dir == elsewhere / "landing"
    monkeypatch.setenv("ENERGY_LANDING_DIR", str(clean_env / "drop"))
    monkeypatch.setenv("ENERGY_STATE_DIR", str(clean_env / "state"))
    settings = Settings.from_env()
    assert (settings.landing_dir, settings.state_dir) == (clean_env / "drop", clean_env / "state")


def test_every_variable_is_documented() -> None:
    documented = DOCS.read_text(encoding="utf-8")
    assert [v.name for _, v, _ in _variables() if f"`{v.name}`" not in documented] == []
