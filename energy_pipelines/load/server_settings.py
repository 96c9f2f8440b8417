"""PostgreSQL settings for bulk ingest, sized from the machine by fixed rules.

The rules reproduce what `energy-pipelines bench` measured best on the reference machine (2
cores, 24 GiB): 2 GB of shared buffers, 1 GB to sort a key, 64 MB per sort, no parallel key
builds. Why each: shared buffers hold a day of the seed's fleet (1.1 GB of rows and 0.56 GB of
keys) until its keys are built and it is reconciled; few checkpoints during a load (each one
makes the next change of every page write a full image to the WAL); a key sorted in memory.
One key build per stream runs beside the other stream's, so parallel build workers only help
once there are cores beyond those two. Durability settings stay at their safe defaults.

The embedded server writes these into an included file: the operator's own `ALTER SYSTEM`
(postgresql.auto.conf, read after it) always wins. For an external server,
`energy-pipelines db settings` prints them for the machine it runs on, or for another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from energy_pipelines.settings import usable_cores

_MB = 2**20
_GB = 2**30


@dataclass(frozen=True)
class Machine:
    memory_bytes: int
    cores: int


def this_machine() -> Machine:
    """Memory (a container's limit when it has one) and the cores this process may use."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = Path("/sys/fs/cgroup/memory.max")
    try:
        text = limit.read_text().strip()
        if text.isdigit():
            memory = min(memory, int(text))
    except OSError:
        pass
    return Machine(memory, usable_cores())


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def _size(value: int) -> str:
    """PostgreSQL's unit syntax, in whole MB or GB."""
    return f"{value // _GB}GB" if value % _GB == 0 else f"{value // _MB}MB"


def _round_mb(value: int) -> int:
    return max(_MB, value // _MB * _MB)


def ingest_settings(machine: Machine) -> dict[str, str]:
    """The settings for `machine`, by the rules in this module's docstring."""
    memory, cores = machine.memory_bytes, machine.cores
    shared = _clamp(_round_mb(memory // 12), 128 * _MB, 16 * _GB)
    maintenance = _clamp(_round_mb(memory // 24), 64 * _MB, 2 * _GB)
    sort = _clamp(_round_mb(memory // 384), 4 * _MB, 256 * _MB)
    # Two streams build their keys side by side; workers beyond them help from 4 cores on.
    build_workers = 0 if cores < 4 else min(8, (cores - 2) // 2)
    return {
        "shared_buffers": _size(shared),
        "max_wal_size": "16GB" if memory >= 8 * _GB else "4GB",
        "checkpoint_timeout": "30min",
        "wal_buffers": "64MB" if memory >= 4 * _GB else "16MB",
        "maintenance_work_mem": _size(maintenance),
        "max_parallel_maintenance_workers": str(build_workers),
        "work_mem": _size(sort),
        "effective_cache_size": _size(_round_mb(memory * 3 // 4)),
        "max_worker_processes": str(max(8, cores + 4)),
        "max_parallel_workers": str(max(8, cores)),
    }


# The machine the defaults of docker-compose.yml are written for.
REFERENCE_MACHINE = Machine(24 * _GB, 2)


def as_alter_system(settings: dict[str, str]) -> str:
    lines = [f"ALTER SYSTEM SET {name} = '{value}';" for name, value in settings.items()]
    return "\n".join([*lines, "-- then restart PostgreSQL (shared_buffers needs a restart)"])


def as_compose_env(settings: dict[str, str]) -> str:
    """Lines for the .env file docker-compose.yml reads (ENERGY_PG_<NAME>=value)."""
    return "\n".join(f"ENERGY_PG_{name.upper()}={value}" for name, value in settings.items())
