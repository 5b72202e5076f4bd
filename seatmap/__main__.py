"""The `seatmap` command: serve | migrate | demo | createuser | worker."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from types import FrameType

from seatmap.embedded import embedded_servers
from seatmap.errors import ConfigError, SeatmapError
from seatmap.logs import configure
from seatmap.settings import Settings, variables

log = logging.getLogger("seatmap")


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM becomes SystemExit, so `finally` blocks run and embedded servers are stopped.
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _servers(settings: Settings) -> Iterator[Settings]:
    """Settings with both URLs filled in, starting embedded servers for the missing ones."""
    with embedded_servers(settings.data_dir, settings.database_url, settings.redis_url) as urls:
        yield replace(settings, database_url=urls.database_url, redis_url=urls.redis_url)


async def _prepare(settings: Settings, *, load_demo: bool) -> list[tuple[str, str, str]]:
    """Migrate, then load demo data into an empty database when asked; returns demo logins."""
    from seatmap import demo
    from seatmap.db import create_pool, migrate

    assert settings.database_url is not None
    pool = await create_pool(settings.database_url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        if load_demo:
            await demo.load(pool)
            await demo.hold_some(settings)  # live holds, made again on every start
            return list(demo.ACCOUNTS)
        return []
    finally:
        await pool.close()


def served_url(host: str, port: int) -> str:
    """The address `seatmap serve --host HOST --port PORT` is reached at from this machine."""
    if host in ("127.0.0.1", "0.0.0.0", "::", "::1", "localhost", ""):
        host = "localhost"
    elif ":" in host:
        host = f"[{host}]"  # an IPv6 address
    return f"http://{host}:{port}"


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    started = time.monotonic()
    with _servers(settings) as ready:
        assert ready.database_url is not None and ready.redis_url is not None
        accounts = asyncio.run(_prepare(ready, load_demo=ready.dev and not args.no_demo))
        # Web processes (one here, or --workers spawned ones) build their settings from the
        # environment, so they must see the embedded servers' URLs and dev mode.
        os.environ["DATABASE_URL"] = ready.database_url
        os.environ["REDIS_URL"] = ready.redis_url
        if ready.dev:
            os.environ["SEATMAP_DEV"] = "1"
        os.environ["SEATMAP_DATA_DIR"] = str(ready.data_dir)
        address = served_url(args.host, args.port)
        if ready.dev and ready.public_url is None:
            # Dev mode's public URL is the address served: payment pages and webhooks come back
            # here, and pages from here may change things with the session cookie (origins.py).
            os.environ["SEATMAP_PUBLIC_URL"] = address
        ready_in = time.monotonic() - started
        print(f"\n  seatmap is starting on {address}  (ready in {ready_in:.1f}s)")
        if accounts:
            print("  demo accounts:")
            for role, email, password in accounts:
                print(f"    {role:<9} {email:<28} {password}")
        print("  press Ctrl-C to stop\n", flush=True)
        # uvicorn handles Ctrl-C itself (graceful shutdown), then re-raises the signal once it is
        # done; answering that with KeyboardInterrupt inside its event loop only prints a
        # traceback. Remember it instead, and stop the embedded servers on the way out.
        interrupted: list[int] = []
        signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
        uvicorn.run(
            "seatmap.app:app_from_environ",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            proxy_headers=True,
            forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
            ws_max_size=ready.ws_max_message,
            # Measured (bench/README.md): the sans-I/O implementation needs less CPU and memory
            # per viewer; per-message deflate would double the memory per socket and compress
            # every delta once per socket, for deltas of a few hundred bytes.
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    # A Ctrl-C is how a developer stops the server: once it has shut down gracefully that is
    # success, not an error for `make run` to report ("make: *** Error 130").
    if interrupted:
        log.info("stopped by Ctrl-C")
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from seatmap.db import create_pool, migrate

    async def run(url: str) -> list[int]:
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                return await migrate(conn)
        finally:
            await pool.close()

    with _servers(settings) as ready:
        assert ready.database_url is not None
        applied = asyncio.run(run(ready.database_url))
    print(f"applied {len(applied)} migration(s)" + (f": {', '.join(map(str, applied))}" if applied else ""))
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    with _servers(settings) as ready:
        accounts = asyncio.run(_prepare(ready, load_demo=True))
    print("demo data loaded; accounts:")
    for role, email, password in accounts:
        print(f"  {role:<9} {email:<28} {password}")
    return 0


def cmd_createuser(args: argparse.Namespace, settings: Settings) -> int:
    from seatmap.accounts import scope, users
    from seatmap.db import create_pool, migrate

    cinemas: list[int] = args.cinema or []
    if cinemas and args.role != "organizer":
        raise ConfigError("--cinema is for --role organizer (the cinemas it manages)")
    password = args.password
    if password is None:
        if not sys.stdin.isatty():
            raise ConfigError("--password is required when stdin is not a terminal")
        password = getpass.getpass("password: ")

    async def run(url: str) -> int:
        pool = await create_pool(url, min_size=1, max_size=1)
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
                async with conn.transaction():  # an organizer without its cinemas is not made
                    user_id = await users.create_user(
                        conn,
                        email=args.email,
                        password=password,
                        name=args.name or "",
                        role=args.role,
                        verified=True,
                    )
                    if cinemas:
                        missing = await scope.missing_cinemas(conn, cinemas)
                        if missing:
                            raise ConfigError(f"no such cinema: {', '.join(map(str, missing))}")
                        await scope.set_cinemas(conn, user_id, cinemas)
                    return user_id
        finally:
            await pool.close()

    with _servers(settings) as ready:
        assert ready.database_url is not None
        user_id = asyncio.run(run(ready.database_url))
    print(f"created {args.role} {args.email} (id {user_id})")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from seatmap import worker

    with _servers(settings) as ready:
        asyncio.run(worker.run(ready))
    return 0


def environment_help() -> str:
    """Every setting, from its one declaration, so `--help` cannot drift from what is read."""
    lines = ["environment (read once at start; docs/operations.md has the details):"]
    for variable in variables():
        lines.append(f"  {variable.env}")
        lines.extend(
            textwrap.wrap(variable.help, width=76, initial_indent="      ", subsequent_indent="      ")
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seatmap", description="Real-time seat maps for cinemas and events."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the web server (embedded PostgreSQL/Redis when URLs are unset)",
        description=textwrap.fill(
            "Serve the web UI, the REST API and the live seat map. With DATABASE_URL or REDIS_URL"
            " unset, starts embedded PostgreSQL/Redis under SEATMAP_DATA_DIR, turns on dev mode"
            " and loads the demo data into an empty database. Ctrl-C stops it gracefully.",
            width=80,
        ),
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument(
        "--host",
        default=os.environ.get("HOST", "127.0.0.1"),
        help="address to bind (default: $HOST or 127.0.0.1; 0.0.0.0 to serve other machines)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", "8000")),
        help="TCP port to listen on (default: $PORT or 8000)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="web processes sharing one Redis and PostgreSQL (default: 1)",
    )
    serve.add_argument(
        "--no-demo", action="store_true", help="do not load demo data into an empty database (dev mode)"
    )
    serve.set_defaults(func=cmd_serve)
    sub.add_parser("migrate", help="apply the SQL migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("demo", help="load the demo data (idempotent)").set_defaults(func=cmd_demo)
    create = sub.add_parser("createuser", help="create an account (how the first admin is made)")
    create.add_argument("--role", choices=["admin", "organizer", "staff", "customer"], required=True)
    create.add_argument(
        "--cinema", type=int, action="append", metavar="ID",
        help="a cinema an organizer manages (repeat for more; assignable later in the console)",
    )  # fmt: skip
    create.add_argument("--email", required=True)
    create.add_argument("--password", help="prompted for when omitted")
    create.add_argument("--name", default="")
    create.set_defaults(func=cmd_createuser)
    sub.add_parser(
        "worker",
        help="run background jobs",
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).set_defaults(func=cmd_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        settings = Settings.from_environ(os.environ)
        configure(settings.log_level, settings.log_json)
        result: int = args.func(args, settings)
        return result
    except SeatmapError as exc:
        print(f"seatmap: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
