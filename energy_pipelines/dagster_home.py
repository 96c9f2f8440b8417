"""Where the Dagster instance lives that the CLI writes to and the UI shows.

The operator's exported DAGSTER_HOME wins; without it, the project's `.dagster_home/` beside
the package (never a path made from the working folder). `energy-pipelines ui` and every CLI
run resolve it here, so both see the same run and asset history."""

from __future__ import annotations

import os
from pathlib import Path

from energy_pipelines.settings import PROJECT_ROOT

DEFAULT_DAGSTER_HOME = PROJECT_ROOT / ".dagster_home"


def dagster_home() -> Path:
    """The instance folder: $DAGSTER_HOME when set, else the project's `.dagster_home/`.
    Raises ValueError (bad configuration) when an exported one is unusable."""
    exported = os.environ.get("DAGSTER_HOME")
    if not exported:
        DEFAULT_DAGSTER_HOME.mkdir(exist_ok=True)
        return DEFAULT_DAGSTER_HOME
    home = Path(exported)
    if not home.is_absolute():
        raise ValueError(f"DAGSTER_HOME={exported} is not an absolute path")
    if not home.is_dir():
        raise ValueError(
            f"DAGSTER_HOME={exported} is not a directory: create it, or unset DAGSTER_HOME "
            f"to use the project's {DEFAULT_DAGSTER_HOME}"
        )
    return home
