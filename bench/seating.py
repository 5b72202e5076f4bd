"""Best-available holds per second beside explicit-seat holds, from the same run.

    python -m bench.seating [--requesters 50] [--seconds 10] [--database-url … --redis-url …]

Each of N requesters (its own user) loops: hold (2-4 seats), then release, on a 600-seat hall,
all at once. "explicit" picks a random block of adjacent seats itself, as a person clicking would;
"best" asks for `best_available` and lets the server choose. Both go through `seatmap.live.holds.Holds`,
the code the REST and WebSocket endpoints call (Lua scripts in Redis, the layout from PostgreSQL),
without HTTP in front, so the ratio shows what choosing seats on the server costs. The
no-stranded-seat rule is on in both. Numbers are only comparable within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.stage import Stage, adjacent, build
from seatmap.accounts.auth import Principal
from seatmap.composition import open_runtime
from seatmap.embedded import Urls, embedded_servers
from seatmap.errors import SeatmapError
from seatmap.live.holds import Holds
from seatmap.live.protocol import BestAvailable
from seatmap.settings import Secret, Settings


@dataclass
class Tally:
    held: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)


async def _requester(
    holds: Holds,
    who: Principal,
    screening: int,
    stage: Stage,
    mode: str,
    until: float,
    seed: int,
    tally: Tally,
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        count = rng.randint(2, 4)
        started = time.perf_counter()
        try:
            if mode == "best":
                hold = await holds.create(who, screening, [], best=BestAvailable(count=count))
            else:
                hold = await holds.create(who, screening, adjacent(rng, stage.rows, count))
        except SeatmapError as exc:
            tally.refused[exc.code] = tally.refused.get(exc.code, 0) + 1
            continue
        tally.latencies.append(time.perf_counter() - started)
        tally.held += 1
        await holds.release(who, hold.token)


async def _phase(
    holds: Holds, stage: Stage, screening: int, mode: str, requesters: int, seconds: float
) -> Tally:
    tally = Tally()
    who = [
        Principal(user_id=uid, role="customer", jti="bench", expires_at=0) for uid in stage.users[:requesters]
    ]
    until = time.monotonic() + seconds
    await asyncio.gather(
        *(_requester(holds, w, screening, stage, mode, until, i, tally) for i, w in enumerate(who))
    )
    return tally


async def run(urls: Urls, requesters: int, seconds: float) -> None:
    stage = await build(urls, hold_screenings=2, users=requesters)
    settings = Settings(
        database_url=stage.database_url,
        redis_url=stage.redis_url,
        data_dir=Path("."),
        dev=True,
        jwt_secret=Secret(stage.jwt_secret),
        redis_prefix=stage.prefix,
    )
    async with open_runtime(settings, "worker") as rt:
        holds = rt.holds
        explicit_screening, best_screening = stage.hold_screenings
        # Warm up: layouts cached, scripts loaded, screenings loaded into Redis.
        await _phase(holds, stage, explicit_screening, "explicit", 2, 0.5)
        await _phase(holds, stage, best_screening, "best", 2, 0.5)
        results = {
            "explicit": await _phase(holds, stage, explicit_screening, "explicit", requesters, seconds),
            "best": await _phase(holds, stage, best_screening, "best", requesters, seconds),
        }
    print(f"\nholds/s with {requesters} concurrent requesters on a 600-seat hall, {seconds:.0f} s each")
    print(f"{'mode':<10}{'holds/s':>10}{'p50 ms':>9}{'p99 ms':>9}  refused")
    for mode, tally in results.items():
        lat = sorted(tally.latencies)
        p50 = statistics.median(lat) * 1000 if lat else 0.0
        p99 = lat[int(len(lat) * 0.99) - 1] * 1000 if lat else 0.0
        print(f"{mode:<10}{tally.held / seconds:>10.0f}{p50:>9.1f}{p99:>9.1f}  {tally.refused or '-'}")
    ratio = results["best"].held / max(results["explicit"].held, 1)
    print(f"best-available / explicit: {ratio:.0%}  (target >= 50%)\n")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seating", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requesters", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.database_url and args.redis_url:
            urls = Urls(args.database_url, args.redis_url)
        else:
            data = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="seatmap-bench-")))
            urls = stack.enter_context(embedded_servers(data, args.database_url, args.redis_url))
        asyncio.run(run(urls, args.requesters, args.seconds))


if __name__ == "__main__":
    main()
