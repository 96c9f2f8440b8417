"""The spooling ingestion gateway: the original HTTP API, landing its records as Parquet files."""

from __future__ import annotations

from energy_pipelines.gateway.config import GatewayConfig


def serve(host: str, port: int, config: GatewayConfig | None = None) -> int:
    """Run the gateway with uvicorn until SIGINT/SIGTERM; a clean stop rolls the whole spool."""
    import uvicorn

    from energy_pipelines.gateway.app import create_app

    config = config or GatewayConfig.from_env()
    print(
        f"gateway on http://{host}:{port} (docs at /docs): spool {config.spool_dir}, "
        f"landing {config.landing_dir}, roll every {config.roll_seconds:g} s "
        f"or {config.roll_records} records",
        flush=True,
    )
    uvicorn.run(
        create_app(config),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        # One process on purpose: the spool's group commit and roll live in it.
        workers=None,
    )
    return 0


__all__ = ["GatewayConfig", "serve"]
