"""Throughput of the ingestion gateway on loopback, with the spool fsyncing every request.

Starts `energy-pipelines gateway` in a subprocess on 127.0.0.1 (a throw-away landing folder),
then, for a fixed duration each, sends single-record POSTs and batches of 1,000 readings over
several concurrent keep-alive connections (httpx), in one or more client processes. Prints one
JSON line: accepted records/s and requests/s per phase, latency percentiles, and a check that the
landed Parquet files hold exactly the accepted records.

    .venv/bin/python benchmarks/gateway_bench.py [--seconds 10] [--clients httpx,raw]

`raw` is a minimal keep-alive socket client next to httpx: on a 2-core machine httpx spends
more CPU per request than the gateway, so it shows what the gateway itself sustains.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def meter_record(meter: int, minute: int) -> dict[str, Any]:
    ts = datetime(2026, 2, 11, tzinfo=UTC) + timedelta(minutes=minute)
    return {
        "meterId": f"bench-m-{meter}",
        "kwhConsumedAc": round(0.1 + (minute % 7) / 10, 3),
        "voltage": 230.0,
        "timestamp": ts.isoformat().replace("+00:00", "Z"),
    }


def make_bodies(worker: int, batch: int, count: int) -> list[bytes]:
    base = worker * 1_000_000
    return [
        json.dumps(
            meter_record(base + i, 0)
            if batch == 1
            else [meter_record(base + i, m) for m in range(batch)]
        ).encode()
        for i in range(count)
    ]


def _httpx_loop(url: str, bodies: list[bytes], offset: int, step: int, deadline: float) -> dict:
    accepted = requests = failures = 0
    latencies: list[float] = []
    headers = {"content-type": "application/json"}
    with httpx.Client(timeout=30.0) as client:  # one keep-alive connection per thread
        i = offset
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = client.post(url, content=bodies[i % len(bodies)], headers=headers)
            latencies.append(time.perf_counter() - started)
            i += step
            requests += 1
            if response.status_code == 202:
                accepted += response.json()["accepted"]
            else:
                failures += 1
    return {"accepted": accepted, "requests": requests, "failures": failures, "lat": latencies}


def _raw_loop(url: str, bodies: list[bytes], offset: int, step: int, deadline: float) -> dict:
    """A minimal keep-alive HTTP/1.1 client: shows what the server sustains when the client
    costs next to no CPU (httpx spends more CPU per request than the gateway does)."""
    parts = urlsplit(url)
    accepted = requests = failures = 0
    latencies: list[float] = []
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        i = offset
        while time.perf_counter() < deadline:
            body = bodies[i % len(bodies)]
            i += step
            started = time.perf_counter()
            sock.sendall(
                f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            status = int(reader.readline().split()[1])
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            payload = reader.read(length)
            latencies.append(time.perf_counter() - started)
            requests += 1
            if status == 202:
                accepted += json.loads(payload)["accepted"]
            else:
                failures += 1
    return {"accepted": accepted, "requests": requests, "failures": failures, "lat": latencies}


_start: Any = None  # a Barrier shared with the parent: every client starts measuring at once


def _init_worker(barrier: Any) -> None:
    global _start
    _start = barrier


def _client_process(args: tuple[str, str, int, int, int, float]) -> dict:
    client, url, worker, batch, threads, seconds = args
    bodies = make_bodies(worker, batch, 200 if batch == 1 else 20)
    loop = _httpx_loop if client == "httpx" else _raw_loop
    _start.wait()  # imports and body building stay out of every measured window
    started = time.perf_counter()
    deadline = started + seconds
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(lambda k: loop(url, bodies, k, threads, deadline), range(threads)))
    return {
        "elapsed": time.perf_counter() - started,
        **{k: sum(r[k] for r in results) for k in ("accepted", "requests", "failures")},
        "latencies": [x for r in results for x in r["lat"]],
    }


def run_phase(
    client: str, url: str, batch: int, processes: int, threads: int, seconds: float, pid: int
) -> dict:
    jobs = [(client, url, w + 1 + batch, batch, threads, seconds) for w in range(processes)]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes + 1)
    with context.Pool(processes, initializer=_init_worker, initargs=(barrier,)) as pool:
        pending = pool.map_async(_client_process, jobs)
        barrier.wait(timeout=120)
        cpu_before = process_cpu_seconds(pid)
        results = pending.get(timeout=seconds + 120)
        cpu = process_cpu_seconds(pid) - cpu_before
    elapsed = max(r["elapsed"] for r in results)
    latencies = sorted(x for r in results for x in r["latencies"])

    def pct(p: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000, 2)

    accepted = sum(r["accepted"] for r in results)
    requests = sum(r["requests"] for r in results)
    return {
        "client": client,
        "batch_size": batch,
        "connections": processes * threads,
        "seconds": round(elapsed, 2),
        "accepted_records": accepted,
        "failed_requests": sum(r["failures"] for r in results),
        "records_per_s": round(accepted / elapsed),
        "requests_per_s": round(requests / elapsed),
        "latency_ms_p50": pct(0.50),
        "latency_ms_p99": pct(0.99),
        "gateway_cpu_cores": round(cpu / elapsed, 2),
    }


def wait_until_up(base: str, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(base + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the gateway did not come up")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process (Linux /proc), to tell server cost from client cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--clients", default="httpx,raw", help="httpx, raw or both")
    parser.add_argument("--processes", type=int, default=8, help="client processes (singles)")
    parser.add_argument("--threads", type=int, default=1, help="connections per process")
    parser.add_argument("--batch-processes", type=int, default=2)
    parser.add_argument("--batch-threads", type=int, default=1)
    args = parser.parse_args()
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]

    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        landing = Path(tmp) / "landing"
        port = free_port()
        env = {
            **os.environ,
            "ENERGY_LANDING_DIR": str(landing),
            "ENERGY_STATE_DIR": str(Path(tmp) / "state"),
        }
        env.pop("ENERGY_GATEWAY_TOKEN", None)
        gateway = subprocess.Popen(
            [sys.executable, "-m", "energy_pipelines.cli", "gateway", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        base = f"http://{HOST}:{port}"
        phases: list[dict] = []
        try:
            wait_until_up(base, gateway)
            url = base + "/v1/ingestion/meter"
            for client in clients:
                for batch, processes, threads in (
                    (1, args.processes, args.threads),
                    (1000, args.batch_processes, args.batch_threads),
                ):
                    phases.append(
                        run_phase(client, url, batch, processes, threads, args.seconds, gateway.pid)
                    )
        finally:
            # A clean stop rolls the whole spool into landing files.
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=120)
        import pyarrow.parquet as pq  # here only: client processes need not import it

        landed = sum(
            pq.read_metadata(path).num_rows for path in (landing / "meter").rglob("*.parquet")
        )
        accepted = sum(p["accepted_records"] for p in phases)
        print(
            json.dumps(
                {
                    "cpus": os.cpu_count(),
                    "phases": phases,
                    "landed_rows": landed,
                    "landed_equals_accepted": landed == accepted,
                }
            )
        )
        return 0 if landed == accepted else 1


if __name__ == "__main__":
    sys.exit(main())
