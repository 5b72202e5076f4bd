"""`python -m bench.live`: the live seat map benchmark of issue 3, run by hand. See bench/README.md.

One run, in order, each server alone on the machine with the same load:

1. viewers: for each server (seatmap and the bare Starlette loop under each uvicorn `--ws`
   implementation, then the bare websockets server): start it, measure its RSS empty and
   with N idle viewers, then let the driver change seats at a fixed rate while the viewers
   count, order-check and time every delta; CPU is read from /proc around that phase;
2. holds: 100 logged-in sockets hold and release as fast as they are answered; double holds
   are looked for three ways (see bench/holders.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench import driver, holders, loadgen, report, servers, stage
from bench.servers import Kind
from seatmap.embedded import embedded_servers

_ctx = multiprocessing.get_context("spawn")


class Workers:
    """Processes answering commands over pipes, one command each at a time."""

    def __init__(self) -> None:
        self.conns: list[Connection] = []
        self.processes: list[Any] = []

    def start(self, target: Any, *args: Any) -> None:
        parent, child = _ctx.Pipe()
        process = _ctx.Process(target=target, args=(child, *args), daemon=True)
        process.start()
        self.conns.append(parent)
        self.processes.append(process)

    async def ask(self, commands: Sequence[object]) -> list[Any]:
        """One command per worker, answered concurrently."""
        for conn, command in zip(self.conns, commands, strict=True):
            conn.send(command)
        replies = await asyncio.gather(*(asyncio.to_thread(conn.recv) for conn in self.conns))
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return list(replies)

    async def tell_all(self, command: object) -> list[Any]:
        return await self.ask([command] * len(self.conns))

    def cpu_seconds(self) -> float:
        return sum(servers.cpu_seconds(p.pid) for p in self.processes)

    def split(self, total: int) -> list[int]:
        n = len(self.conns)
        return [total // n + (1 if i < total % n else 0) for i in range(n)]

    def stop(self, command: object) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError, BrokenPipeError):
                conn.send(command)
        for process in self.processes:
            process.join(timeout=15)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


@dataclass
class Run:
    args: argparse.Namespace
    stage: stage.Stage
    gens: Workers
    driver: Workers
    logs: Path

    async def connect(self, server: servers.Running, count: int) -> list[loadgen.Connected]:
        # The baselines ignore ?batch=1; seatmap then packs what queued up for a socket in one frame.
        path = f"/ws/screenings/{self.stage.screening}" + ("" if self.args.no_batch else "?batch=1")
        commands = [
            loadgen.Connect("127.0.0.1", server.port, path, n, self.args.client, self.args.deflate)
            for n in self.gens.split(count)
        ]
        connected: list[loadgen.Connected] = await self.gens.ask(commands)
        return connected

    async def watch(self, kind: Kind) -> report.Watched:
        args = self.args
        async with servers.running(kind, self.stage.backing(), self.logs) as server:
            # Warm up the code paths (imports, caches, the channel) before the empty RSS.
            await self.connect(server, 10)
            await self.gens.tell_all(loadgen.Disconnect())
            await asyncio.sleep(1.5)
            rss_empty = server.rss_kb()
            began = time.monotonic()
            connected = await self.connect(server, args.viewers)
            connect_seconds = time.monotonic() - began
            await asyncio.sleep(2.0 + args.viewers / 2000)
            rss_viewers = server.rss_kb()
            (seq,) = await self.driver.ask([driver.Seq()])
            await self.gens.tell_all(loadgen.Start(seq))
            cpu_before, gens_before = server.cpu_seconds(), self.gens.cpu_seconds()
            machine_before, window_began = servers.machine_busy_seconds(), time.monotonic()
            with self.profiling(f"{kind.name}-{args.viewers}", kind, server):
                (driven,) = await self.driver.ask(
                    [driver.Drive(rate=args.rate, duration=args.duration, seed=args.seed)]
                )
                counts: list[loadgen.Counts] = await self.gens.tell_all(
                    loadgen.Finish(driven.end_seq, args.drain)
                )
            cpu = server.cpu_seconds() - cpu_before
            gens_cpu = self.gens.cpu_seconds() - gens_before
            machine = servers.machine_busy_seconds() - machine_before
            window = time.monotonic() - window_began
            await self.gens.tell_all(loadgen.Disconnect())
        measured = _watched(kind, args.viewers, connected, connect_seconds, driven, counts, cpu)
        measured.cpu_share = cpu / window
        measured.loadgen_cpu_share = gens_cpu / window
        measured.other_cpu_share = (machine - gens_cpu - cpu) / window
        measured.rss_empty_kb, measured.rss_viewers_kb = rss_empty, rss_viewers
        if measured.connected:
            measured.kb_per_viewer = (rss_viewers - rss_empty) / measured.connected
        return measured

    @contextlib.contextmanager
    def profiling(self, name: str, kind: Kind, server: servers.Running) -> Any:
        """py-spy on the server during the measured phase, with --profile DIR (it costs CPU too)."""
        if not self.args.profile or kind.server != "seatmap" or shutil.which("py-spy") is None:
            yield
            return
        out = Path(self.args.profile) / f"{name}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        command = ["py-spy", "record", "--pid", str(server.pid), "--rate", "200", "--format", "raw"]
        command += ["--output", str(out), "--nonblocking"]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            yield
        finally:
            spy.send_signal(2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(timeout=20)

    async def hold(self) -> report.Held:
        args = self.args
        kind = Kind("seatmap", args.ws[0])
        # The per-socket command limit (10/s by default) would cap 100 clients at 500 holds/s.
        env = {"SEATMAP_WS_COMMANDS_PER_SECOND": "100000", "SEATMAP_WS_COMMAND_BURST": "100000"}
        screenings = self.stage.hold_screenings
        tokens = self.stage.tokens[-args.holders :]
        assignments = [(screenings[i % len(screenings)], token) for i, token in enumerate(tokens)]
        async with servers.running(kind, self.stage.backing(), self.logs, env) as server:
            shares = self.gens.split(len(assignments))
            chunks, at = [], 0
            for share in shares:
                mine = assignments[at : at + share]
                chunks.append(holders.Join("127.0.0.1", server.port, mine, batch=not args.no_batch))
                at += share
            await self.gens.ask(chunks)
            start_at = time.time() + 1.0
            command = holders.Run(self.stage.rows, args.hold_seats, start_at, args.hold_duration, args.seed)
            cpu_before = server.cpu_seconds()
            with self.profiling(f"holds-{len(screenings)}", kind, server):
                counts: list[holders.HoldCounts] = await self.gens.tell_all(command)
            cpu = server.cpu_seconds() - cpu_before
            final = {s: await stage.seats_held(self.stage, s) for s in screenings}
            await self.gens.tell_all(holders.Leave())
        return _held(kind, args, len(screenings), counts, cpu, final)


def _watched(
    kind: Kind,
    viewers: int,
    connected: list[loadgen.Connected],
    connect_seconds: float,
    driven: driver.Driven,
    counts: list[loadgen.Counts],
    cpu: float,
) -> report.Watched:
    histogram: dict[int, int] = defaultdict(int)
    close_codes: dict[int, int] = defaultdict(int)
    for c in counts:
        for bucket, n in c.histogram.items():
            histogram[bucket] += n
        for code, n in c.close_codes.items():
            close_codes[code] += n
    opened = sum(c.opened for c in connected)
    delivered = sum(c.delivered for c in counts)
    last = max((c.last_receipt for c in counts), default=0.0)
    seconds = max(last - driven.started, 1e-9)
    changes = driven.end_seq - driven.start_seq
    return report.Watched(
        name=kind.name,
        server=kind.server,
        ws=kind.ws,
        viewers=viewers,
        connected=opened,
        connect_failed=sum(c.failed for c in connected),
        connect_seconds=connect_seconds,
        changes=changes,
        expected=changes * opened,
        delivered=delivered,
        lost=sum(c.lost for c in counts),
        out_of_order=sum(c.out_of_order for c in counts),
        resyncs=sum(c.resyncs for c in counts),
        closed=sum(c.closed for c in counts),
        drain_timed_out=any(c.timed_out for c in counts),
        seconds=seconds,
        msgs_per_s=delivered / seconds,
        offered_per_s=changes * opened / driven.seconds,
        p50_ms=report.percentile(histogram, 0.50),
        p99_ms=report.percentile(histogram, 0.99),
        max_ms=report.percentile(histogram, 1.0),
        cpu_seconds=cpu,
        cpu_share=math.nan,
        cpu_us_per_msg=cpu / delivered * 1e6 if delivered else float("nan"),
        driver_lateness_ms=driven.worst_lateness * 1000,
        close_codes=dict(close_codes),
    )


def overlapping(intervals: list[tuple[int, tuple[str, ...], float, float]]) -> int:
    """Pairs of certainly-live holds of one seat whose intervals overlap (each one is a double hold)."""
    by_seat: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
    for screening, seats, start, end in intervals:
        for seat in seats:
            by_seat[(screening, seat)].append((start, end))
    found = 0
    for spans in by_seat.values():
        spans.sort()
        latest = float("-inf")
        for start, end in spans:
            if start < latest:
                found += 1
            latest = max(latest, end)
    return found


def _held(
    kind: Kind,
    args: argparse.Namespace,
    screenings: int,
    counts: list[holders.HoldCounts],
    cpu: float,
    final: dict[int, dict[str, str]],
) -> report.Held:
    errors: dict[str, int] = defaultdict(int)
    close_codes: dict[int, int] = defaultdict(int)
    for c in counts:
        for code, n in c.errors.items():
            errors[code] += n
        for close, n in c.close_codes.items():
            close_codes[close] += n
    ok = sum(c.ok for c in counts)
    seconds = max(c.ended for c in counts) - min(c.started for c in counts)
    believed = {(s, seat): f"h:{token}" for c in counts for s, token, seats in c.live for seat in seats}
    in_redis = {(s, seat): v for s, seats in final.items() for seat, v in seats.items() if v.startswith("h:")}
    mismatches = len(set(believed.items()) ^ set(in_redis.items()))
    trips = [t * 1000 for c in counts for t in c.round_trips]
    return report.Held(
        server=kind.name,
        holders=sum(c.holders for c in counts),
        screenings=screenings,
        max_seats=args.hold_seats,
        seconds=seconds,
        ok=ok,
        taken=sum(c.taken for c in counts),
        released=sum(c.released for c in counts),
        errors=dict(errors),
        holds_per_s=ok / seconds,
        round_trip_p50_ms=report.quantile(trips, 0.50),
        round_trip_p99_ms=report.quantile(trips, 0.99),
        cpu_seconds=cpu,
        cpu_us_per_hold=cpu / ok * 1e6 if ok else float("nan"),
        overlaps=overlapping([i for c in counts for i in c.intervals]),
        replay_deltas=sum(c.replayed.deltas for c in counts),
        replay_doubles=sum(c.replayed.doubles for c in counts),
        replay_bad_frees=sum(c.replayed.bad_frees for c in counts),
        replay_gaps=sum(c.replayed.gaps for c in counts),
        live_at_end=sum(len(c.live) for c in counts),
        final_mismatches=mismatches,
        close_codes=dict(close_codes),
    )


@contextlib.asynccontextmanager
async def _run(args: argparse.Namespace) -> AsyncIterator[Run]:
    with contextlib.ExitStack() as stack:
        data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seatmap-bench-")))
        urls = stack.enter_context(embedded_servers(data_dir, args.database_url, args.redis_url))
        built = await stage.build(urls, hold_screenings=args.hold_screenings, users=64 + args.holders)
        gens, drive = Workers(), Workers()
        try:
            for _ in range(args.procs):
                gens.start(loadgen.main)
            target = driver.Target(
                built.database_url,
                built.redis_url,
                built.prefix,
                built.screening,
                built.users[:64],
                built.rows,
            )
            drive.start(driver.main, target)
            logs = data_dir / "logs"
            logs.mkdir()
            yield Run(args, built, gens, drive, logs)
        finally:
            gens.stop(loadgen.Stop())
            drive.stop(None)
            await stage.tear_down(built)


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items() if k != "json"}}
    async with _run(args) as run:
        if args.viewers > 0:
            rounds: list[list[report.Watched]] = []
            plan = [Kind(server, ws) for ws in args.ws for server in ("seatmap", "starlette")]
            plan = [k for k in plan if k.server in args.servers]
            if "websockets" in args.servers:
                plan.append(Kind("websockets"))
            # Rounds interleave the servers, so that load from elsewhere on the machine falls
            # on all of them alike.
            for number in range(1, args.rounds + 1):
                rounds.append([])
                for kind in plan:
                    print(f"  round {number}: measuring {kind.name} ...", file=sys.stderr, flush=True)
                    rounds[-1].append(await run.watch(kind))
            watched = [report.median_of([r[i] for r in rounds]) for i in range(len(plan))]
            shown = rounds if args.rounds > 1 else None
            print(report.table(watched, results["settings"], shown), flush=True)
            results["viewers"] = [asdict(w) for w in watched]
            results["rounds"] = [[asdict(w) for w in r] for r in rounds]
        if args.holders > 0 and args.hold_duration > 0:
            print("  measuring holds ...", file=sys.stderr, flush=True)
            held = await run.hold()
            print("\n" + report.holds_table(held), flush=True)
            results["holds"] = asdict(held)
    return results


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.live", description=__doc__.split("\n")[0])
    p.add_argument("--viewers", type=int, default=1000, help="N viewer sockets per server (0: skip)")
    p.add_argument("--rate", type=float, default=50.0, help="seat changes per second")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of changes per server")
    p.add_argument("--rounds", type=int, default=1, help="measure every server this many times, interleaved")
    p.add_argument("--drain", type=float, default=20.0, help="max seconds to wait for the last delta")
    p.add_argument("--procs", type=int, default=2, help="load-generator processes")
    p.add_argument("--client", choices=("raw", "websockets"), default="raw", help="viewer client")
    p.add_argument("--deflate", action="store_true", help="viewers offer permessage-deflate, as browsers do")
    p.add_argument(
        "--ws",
        type=lambda s: s.split(","),
        default=["websockets-sansio", "websockets"],
        help="uvicorn --ws implementations to compare (comma separated)",
    )
    p.add_argument(
        "--servers",
        type=lambda s: s.split(","),
        default=["seatmap", "starlette", "websockets"],
        help="servers to measure (comma separated)",
    )
    p.add_argument("--holders", type=int, default=100, help="holding clients (0: skip the holds phase)")
    p.add_argument("--hold-screenings", type=int, default=1, help="screenings the holders spread over")
    p.add_argument("--hold-seats", type=int, default=2, help="at most this many seats per hold")
    p.add_argument("--hold-duration", type=float, default=15.0)
    p.add_argument("--no-batch", action="store_true", help="no ?batch=1: one message per frame")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--database-url", help="PostgreSQL to create the bench database in (default: embedded)")
    p.add_argument("--redis-url", help="Redis to use (default: embedded)")
    p.add_argument("--json", type=Path, help="also write the results here (bench/out/ is gitignored)")
    p.add_argument("--profile", help="write py-spy raw stacks of the seatmap server to this directory")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    limit = servers.raise_fd_limit()
    needed = args.viewers + args.holders + 200
    if limit < needed:
        sys.exit(f"the open-file limit is {limit}; {needed} sockets need more (ulimit -Hn)")
    results = asyncio.run(bench(args))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
