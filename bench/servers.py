"""The servers under test as real processes on loopback, and what /proc says they cost.

Every server is started the way production starts it (one uvicorn process, as the Procfile
does, or the bare websockets server), with its output in a log file under the run's temp
directory, and measured from outside: CPU from `/proc/<pid>/stat` (utime + stime), memory
from `/proc/<pid>/status` (VmRSS).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent
_TICKS: Final = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Kind:
    """One server to measure: `seatmap`, `starlette` (bare loop) or `websockets` (bare broadcast)."""

    server: str
    ws: str = ""  # uvicorn's --ws implementation; "" for the websockets server

    @property
    def name(self) -> str:
        return f"{self.server}[{self.ws}]" if self.ws else self.server


@dataclass(frozen=True)
class Backing:
    """Where the servers find Redis and PostgreSQL, and the one screening they serve."""

    database_url: str
    redis_url: str
    prefix: str
    jwt_secret: str
    channel: str


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # Fields 14 and 15 of proc(5), counted after the command name: utime, stime.
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle so far (first line of /proc/stat)."""
    with open("/proc/stat") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks
    return (user + nice + system + irq + softirq + steal) / _TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _uvicorn(app: str, port: int, ws: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app, "--factory", "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning", "--backlog", "4096",
        "--ws", ws, "--ws-max-size", "16384",
    ]  # fmt: skip


def command_for(kind: Kind, port: int, backing: Backing) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if kind.server == "seatmap":
        env |= {
            "DATABASE_URL": backing.database_url,
            "REDIS_URL": backing.redis_url,
            "SEATMAP_REDIS_PREFIX": backing.prefix,
            "SEATMAP_JWT_SECRET": backing.jwt_secret,
            "SEATMAP_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "SEATMAP_LOG_LEVEL": "WARNING",
            # Every simulated client comes from 127.0.0.1: the per-address caps would refuse them.
            "SEATMAP_WS_MAX_PER_ADDRESS": "0",
            "SEATMAP_HOLD_SEATS_PER_ADDRESS": "0",
        }
        return _uvicorn("seatmap.app:app_from_environ", port, kind.ws), env
    if kind.server == "starlette":
        env |= {"BENCH_REDIS_URL": backing.redis_url, "BENCH_CHANNEL": backing.channel}
        return _uvicorn("bench.baselines:starlette_app", port, kind.ws), env
    if kind.server == "websockets":
        command = [sys.executable, "-m", "bench.baselines", "--port", str(port)]
        return [*command, "--redis-url", backing.redis_url, "--channel", backing.channel], env
    raise ValueError(f"unknown server {kind.server!r}")


@dataclass
class Running:
    kind: Kind
    port: int
    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


async def _answers(kind: Kind, port: int) -> bool:
    if kind.server == "seatmap":

        def ready() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                return bool(response.status == 200)

        try:
            return await asyncio.to_thread(ready)
        except OSError:
            return False
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    writer.close()
    return True


@contextlib.asynccontextmanager
async def running(
    kind: Kind, backing: Backing, logs: Path, extra_env: dict[str, str] | None = None
) -> AsyncIterator[Running]:
    port = free_port()
    command, env = command_for(kind, port, backing)
    log = logs / f"{kind.name}-{port}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *command, env=env | (extra_env or {}), cwd=REPO, stdout=out, stderr=out
        )
    server = Running(kind, port, process, log)
    try:
        deadline = time.monotonic() + 60
        while not await _answers(kind, port):
            if process.returncode is not None:
                raise RuntimeError(f"{kind.name} exited with {process.returncode}:\n{server.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind.name} did not answer on port {port} within 60 s")
            await asyncio.sleep(0.1)
        yield server
    finally:
        await stop(process)


async def stop(*processes: asyncio.subprocess.Process) -> None:
    """SIGTERM to all at once, then SIGKILL to any still there after 15 s."""
    for process in processes:
        if process.returncode is None:
            process.terminate()
    for process in processes:
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


def raise_fd_limit() -> int:
    """As many file descriptors as allowed, for this process and the ones it starts (inherited)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
