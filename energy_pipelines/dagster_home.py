"""Where the Dagster instance lives that the CLI writes to and the UI shows.

The operator's exported DAGSTER_HOME wins; without it, `.dagster_home/` in the working folder,
like the other default folders (settings.py). `energy-pipelines ui` and every CLI run resolve it
here, so both see the same run and asset history when started in the same folder."""

from __future__ import annotations

import os
from pathlib import Path

from energy_pipelines.settings import DAGSTER_HOME_FOLDER


def default_dagster_home() -> Path:
    return Path.cwd() / DAGSTER_HOME_FOLDER


def dagster_home() -> Path:
    """The instance folder: $DAGSTER_HOME when set, else `.dagster_home/` in the working
    folder. Raises ValueError (bad configuration) when an exported one is unusable."""
    exported = os.environ.get("DAGSTER_HOME")
    if not exported:
        home = default_dagster_home()
        home.mkdir(exist_ok=True)
        return home
    home = Path(exported)
    if not home.is_absolute():
        raise ValueError(f"DAGSTER_HOME={exported} is not an absolute path")
    if not home.is_dir():
        raise ValueError(
            f"DAGSTER_HOME={exported} is not a directory: create it, or unset DAGSTER_HOME "
            f"to use {default_dagster_home()}"
        )
    return home
