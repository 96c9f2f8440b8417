"""The spooling ingestion gateway: the original HTTP API, landing its records as Parquet files."""

from __future__ import annotations

import ipaddress
import socket
import sys

from energy_pipelines.gateway.config import GatewayConfig


def serve(
    host: str,
    port: int,
    config: GatewayConfig | None = None,
    allow_unauthenticated_remote: bool = False,
) -> int:
    """Run the gateway with uvicorn until SIGINT/SIGTERM; a clean stop rolls the whole spool.
    Refuses (exit code 2) to listen beyond loopback without ENERGY_GATEWAY_TOKEN unless
    `allow_unauthenticated_remote`, and then warns on every start."""
    import uvicorn

    from energy_pipelines.gateway.app import create_app
    from energy_pipelines.gateway.protocol import protocol_with_head_deadline

    config = config or GatewayConfig.from_env()
    if not is_loopback(host) and not config.token:
        if not allow_unauthenticated_remote:
            print(
                f"energy-pipelines gateway: refusing to listen on {host}, beyond this machine, "
                "without a token: anyone who reaches the port could post readings. Set "
                "ENERGY_GATEWAY_TOKEN (clients then send Authorization: Bearer <token>), or "
                "listen on 127.0.0.1 behind a proxy that authenticates, or pass "
                "--allow-unauthenticated-remote to accept unauthenticated posts from the network.",
                file=sys.stderr,
            )
            return 2
        print(_OPEN_WARNING.format(host=host, port=port), file=sys.stderr, flush=True)
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
        timeout_keep_alive=config.keep_alive_seconds,  # type: ignore[arg-type]
        http=protocol_with_head_deadline(config.read_timeout_seconds),
    )
    return 0


_OPEN_WARNING = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
WARNING: the gateway listens on {host}:{port} WITHOUT AUTHENTICATION
(--allow-unauthenticated-remote). Anyone who can reach this port can post readings that
will be loaded into history. Set ENERGY_GATEWAY_TOKEN, or keep it on 127.0.0.1 behind an
authenticating proxy.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""


def is_loopback(host: str) -> bool:
    """True when every address `host` names is this machine's loopback (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (OSError, UnicodeError):
        return False
    try:
        return bool(addresses) and all(
            ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses
        )
    except ValueError:
        return False


__all__ = ["GatewayConfig", "is_loopback", "serve"]
