"""Crash points for fault-injection tests. Inert unless ENERGY_CRASH_AT names the point."""

from __future__ import annotations

import os
import signal

CRASH_ENV = "ENERGY_CRASH_AT"


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL (no cleanup, like a power cut) when a test asks for it."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
