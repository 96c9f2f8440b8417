"""Fault-injection points for tests. Inert unless ENERGY_CRASH_AT or ENERGY_PAUSE_AT names one."""

from __future__ import annotations

import os
import signal
import time

CRASH_ENV = "ENERGY_CRASH_AT"
PAUSE_ENV = "ENERGY_PAUSE_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process (no cleanup, like a power cut), or pause it so a test can break
    something underneath it (ENERGY_PAUSE_SECONDS, default 30)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(PAUSE_ENV) == name:
        time.sleep(float(os.environ.get("ENERGY_PAUSE_SECONDS", "30")))
