"""What the routes share, held by the app and handed to them as dependencies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from energy_pipelines.contract import STREAMS
from energy_pipelines.gateway.config import GatewayConfig
from energy_pipelines.gateway.models import ValueCheck
from energy_pipelines.gateway.reads import SummaryReader
from energy_pipelines.gateway.spool import Spool


@dataclass
class Gateway:
    config: GatewayConfig
    spool: Spool
    reader: SummaryReader
    # Per stream, when ENERGY_GATEWAY_CHECK_VALUES asks the gateway to check values.
    value_checks: dict[str, ValueCheck] = field(default_factory=dict)

    @classmethod
    def create(cls, config: GatewayConfig) -> Gateway:
        limits = config.settings.limits
        checks = (
            {name: ValueCheck(s, limits) for name, s in STREAMS.items()}
            if config.check_values
            else {}
        )
        return cls(config, Spool(config), SummaryReader(config), checks)


async def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(gateway_of)]
