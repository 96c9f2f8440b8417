"""The one Dagster resource: where the landing files and the database are."""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import dagster as dg

from energy_pipelines.load.database import Connection, connect, resolve_database_url
from energy_pipelines.load.migrations import upgrade_once
from energy_pipelines.settings import Settings

# Every asset that writes to PostgreSQL shares this pool; dagster.yaml caps concurrent runs in it.
POSTGRES_WRITES_POOL = "postgres_writes"


class EnergyStorage(dg.ConfigurableResource):
    """Landing root and PostgreSQL. The database URL (which may hold a password) comes from the
    DATABASE_URL environment variable, never from run config, so the UI never shows it."""

    landing_dir: str | None = None
    settle_seconds: float | None = None

    def settings(self) -> Settings:
        settings = Settings.from_env().with_landing_dir(self.landing_dir)
        if self.settle_seconds is not None:
            settings = replace(settings, settle_seconds=self.settle_seconds)
        return settings

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        url = resolve_database_url(self.settings())
        with connect(url) as conn:
            upgrade_once(conn, url)
            yield conn
