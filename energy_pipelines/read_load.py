"""A lean closed-loop HTTP/1.1 load of GET requests, the gateway process it drives and where
their CPU goes (for the read benchmark and its test).

Each connection is kept alive and sends its next request as soon as the answer is in (closed
loop), so the offered load follows the server. All connections are coroutines of one event loop
in one thread: the client must cost little, because on a small machine it shares the cores with
the gateway and PostgreSQL. Answers are parsed only for the sample kept for checking.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from energy_pipelines.bench import machine_counters, machine_during
from energy_pipelines.gateway.reads import APPLICATION_NAME
from energy_pipelines.load.database import Connection

HOST = "127.0.0.1"

# Per request, after the phase's end: an answer slower than this counts as an error.
_LATE_SECONDS = 60.0


@dataclass
class PhaseResult:
    connections: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # of 200 answers and errors alike
    statuses: Counter[str] = field(default_factory=Counter)  # "200", "503", "connection", ...
    # vehicle id -> every distinct 200 body it got, for up to `sample` vehicles
    answers: dict[str, set[bytes]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> dict[str, int]:
        return {status: n for status, n in sorted(self.statuses.items()) if status != "200"}

    def percentile_ms(self, share: float) -> float | None:
        if not self.latencies:
            return None
        return round(nearest_rank(sorted(self.latencies), share) * 1000, 2)

    def report(self) -> dict[str, object]:
        return {
            "connections": self.connections,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
            "latency_ms_p50": self.percentile_ms(0.50),
            "latency_ms_p95": self.percentile_ms(0.95),
            "latency_ms_p99": self.percentile_ms(0.99),
            "errors": self.errors,
        }


def summary_path(vehicle_id: str, as_of: str) -> bytes:
    return f"/v1/analytics/performance/{quote(vehicle_id, safe='')}?asOf={quote(as_of)}".encode()


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _connection(
    host: str,
    port: int,
    requests: list[tuple[str, bytes]],
    deadline: float,
    result: PhaseResult,
    sample: int,
) -> None:
    rng = random.Random()
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    try:
        while time.perf_counter() < deadline:
            vehicle, request = rng.choice(requests)
            started = time.perf_counter()
            try:
                stream = stream or await asyncio.open_connection(host, port)
                status, body = await _exchange(*stream, request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                result.statuses["connection"] += 1
                result.latencies.append(time.perf_counter() - started)
                if stream is not None:
                    stream[1].close()
                stream = None
                continue
            result.latencies.append(time.perf_counter() - started)
            result.statuses[str(status)] += 1
            if status == 200 and (vehicle in result.answers or len(result.answers) < sample):
                result.answers.setdefault(vehicle, set()).add(body)
    finally:
        if stream is not None:
            stream[1].close()


async def _phase(
    base: tuple[str, int], paths: dict[str, bytes], connections: int, seconds: float, sample: int
) -> PhaseResult:
    host, port = base
    header = f" HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: application/json\r\n\r\n".encode()
    requests = [(vehicle, b"GET " + path + header) for vehicle, path in paths.items()]
    result = PhaseResult(connections)
    started = time.perf_counter()
    deadline = started + seconds
    tasks = [
        asyncio.create_task(_connection(host, port, requests, deadline, result, sample))
        for _ in range(connections)
    ]
    _, late = await asyncio.wait(tasks, timeout=seconds + _LATE_SECONDS)
    for task in late:
        task.cancel()
        result.statuses["late"] += 1
    result.seconds = time.perf_counter() - started
    return result


def drive(
    base: tuple[str, int],
    vehicles: list[str],
    as_of: str,
    connections: int,
    seconds: float,
    sample: int = 0,
) -> PhaseResult:
    """`connections` keep-alive connections asking for random vehicles for `seconds`; keeps
    every distinct 200 answer of the first `sample` vehicles answered."""
    paths = {vehicle: summary_path(vehicle, as_of) for vehicle in vehicles}
    return asyncio.run(_phase(base, paths, connections, seconds, sample))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def running_gateway(
    database_url: str, work: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], tuple[str, int]]]:
    """`energy-pipelines gateway` on a free loopback port, up once /health answers; SIGTERM
    (its clean stop) when the block ends."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, **(extra_env or {})}
    command = [sys.executable, "-m", "energy_pipelines.cli", "gateway", "--host", HOST]
    command += ["--port", str(port), "--landing", str(work / "gateway-landing")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    try:
        _wait_for_health(process, port)
        yield process, (HOST, port)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_health(process: subprocess.Popen[bytes], port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            client = http.client.HTTPConnection(HOST, port, timeout=2)
            client.request("GET", "/health")
            if client.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway did not answer /health")


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process of this machine so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_snapshot(conn: Connection, gateway_pid: int) -> dict[str, Any]:
    """CPU seconds so far of the gateway, its PostgreSQL backends (a server on this machine),
    this process (the client) and the whole machine."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1", (APPLICATION_NAME,)
        )
        pids = [int(row[0]) for row in cur.fetchall()]
    conn.rollback()  # the next snapshot reads a fresh pg_stat_activity
    backends = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # not this machine's process, or gone
            backends[pid] = process_cpu_seconds(pid)
    client = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "gateway": process_cpu_seconds(gateway_pid),
        "backends": backends,
        "client": client.ru_utime + client.ru_stime,
        "machine": machine_counters(),
    }


def cpu_spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Where a phase's CPU went; `machine` counts everything, other work on it included."""
    backends = sum(t - before["backends"].get(pid, 0.0) for pid, t in after["backends"].items())
    machine = machine_during(before["machine"], after["machine"])
    return {
        "gateway": round(after["gateway"] - before["gateway"], 1),
        "postgres_backends": round(backends, 1),
        "client": round(after["client"] - before["client"], 1),
        "machine": None
        if machine is None
        else round(machine["user_seconds"] + machine["system_seconds"], 1),
    }


def nearest_rank(ordered: list[float], share: float) -> float:
    """The value at `share` (0..1) of sorted values, by nearest rank (the benches' p50/p95/p99)."""
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
