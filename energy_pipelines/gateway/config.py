"""Gateway configuration, read from the environment once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from energy_pipelines.settings import Settings, float_env

DEFAULT_ROLL_SECONDS = 5.0
DEFAULT_ROLL_RECORDS = 100_000
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Spool folder under the landing root: `_` keeps discovery (which walks <landing>/<stream>) away.
DEFAULT_SPOOL_FOLDER = "_gateway_spool"
# The summary read path: PostgreSQL connections the gateway holds at most (requests beyond them
# wait for one), how long a request waits, how long one statement may run, and how often a
# transient database error is tried again before the answer is 503.
DEFAULT_DB_POOL_SIZE = 4
DEFAULT_DB_ACQUIRE_TIMEOUT_SECONDS = 30.0
DEFAULT_DB_STATEMENT_TIMEOUT_SECONDS = 5.0
DEFAULT_DB_RETRIES = 3
# Connections: an idle keep-alive connection is closed after KEEP_ALIVE seconds (uvicorn's
# timeout_keep_alive); a request's head, and then its body, must each arrive within READ
# seconds, or the connection is closed (a client that opens connections and sends nothing, or
# a byte at a time, would otherwise hold them forever).
DEFAULT_KEEP_ALIVE_SECONDS = 5.0
DEFAULT_READ_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    settings: Settings
    spool_dir: Path
    roll_seconds: float = DEFAULT_ROLL_SECONDS
    roll_records: int = DEFAULT_ROLL_RECORDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # Required as `Authorization: Bearer <token>` on POST when set.
    token: str | None = None
    db_pool_size: int = DEFAULT_DB_POOL_SIZE
    db_acquire_timeout: float = DEFAULT_DB_ACQUIRE_TIMEOUT_SECONDS
    db_statement_timeout: float = DEFAULT_DB_STATEMENT_TIMEOUT_SECONDS
    db_retries: int = DEFAULT_DB_RETRIES
    keep_alive_seconds: float = DEFAULT_KEEP_ALIVE_SECONDS
    read_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
    # Refuse (422) a body with a value that breaks a rule of the file contract, instead of
    # leaving the rules to the pipeline (which quarantines such rows).
    check_values: bool = False

    @property
    def landing_dir(self) -> Path:
        return self.settings.landing_dir

    @classmethod
    def from_env(cls, settings: Settings | None = None) -> GatewayConfig:
        settings = settings or Settings.from_env()
        spool = os.environ.get("ENERGY_GATEWAY_SPOOL_DIR") or None
        return cls(
            settings=settings,
            spool_dir=Path(spool) if spool else settings.landing_dir / DEFAULT_SPOOL_FOLDER,
            roll_seconds=float_env("ENERGY_GATEWAY_ROLL_SECONDS", DEFAULT_ROLL_SECONDS, 0.01),
            roll_records=int(float_env("ENERGY_GATEWAY_ROLL_RECORDS", DEFAULT_ROLL_RECORDS, 1)),
            max_body_bytes=int(
                float_env("ENERGY_GATEWAY_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, 1)
            ),
            token=os.environ.get("ENERGY_GATEWAY_TOKEN") or None,
            db_pool_size=int(float_env("ENERGY_GATEWAY_DB_POOL_SIZE", DEFAULT_DB_POOL_SIZE, 1)),
            db_acquire_timeout=float_env(
                "ENERGY_GATEWAY_DB_ACQUIRE_TIMEOUT_SECONDS",
                DEFAULT_DB_ACQUIRE_TIMEOUT_SECONDS,
                0.001,
            ),
            db_statement_timeout=float_env(
                "ENERGY_GATEWAY_DB_STATEMENT_TIMEOUT_SECONDS",
                DEFAULT_DB_STATEMENT_TIMEOUT_SECONDS,
                0.001,
            ),
            db_retries=int(float_env("ENERGY_GATEWAY_DB_RETRIES", DEFAULT_DB_RETRIES, 0)),
            keep_alive_seconds=float_env(
                "ENERGY_GATEWAY_KEEP_ALIVE_SECONDS", DEFAULT_KEEP_ALIVE_SECONDS, 0.001
            ),
            read_timeout_seconds=float_env(
                "ENERGY_GATEWAY_READ_TIMEOUT_SECONDS", DEFAULT_READ_TIMEOUT_SECONDS, 0.001
            ),
            check_values=flag_env("ENERGY_GATEWAY_CHECK_VALUES"),
        )


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def flag_env(name: str) -> bool:
    """A yes/no setting (unset: no), with a message naming the variable when it is neither."""
    raw = (os.environ.get(name) or "").strip().lower()
    if raw not in _TRUE + _FALSE:
        raise ValueError(f"{name}={raw!r} must be one of: {', '.join(_TRUE + _FALSE[1:])}")
    return raw in _TRUE
