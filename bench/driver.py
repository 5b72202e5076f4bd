"""The driver: holds and releases seats of one screening at a fixed rate, through the real Lua path.

It calls `seatmap.live.holds.Holds` against Redis directly (the code behind POST/DELETE
/api/holds), so the server under test spends its CPU on fan-out only, and every change is
one delta with the next seq. The choice of seats comes from a seeded RNG and every phase
ends by releasing whatever is still held, so each server is fed the same sequence of
deltas, starting from the same (empty) seat map.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from bench.stage import adjacent
from seatmap.accounts.auth import Principal
from seatmap.composition import open_runtime
from seatmap.errors import SeatmapError
from seatmap.live.holds import Holds
from seatmap.settings import Secret, Settings


@dataclass(frozen=True)
class Target:
    database_url: str
    redis_url: str
    prefix: str
    screening: int
    users: list[int]
    rows: list[list[str]]


@dataclass(frozen=True)
class Seq:
    """What is the screening's seq now?"""


@dataclass(frozen=True)
class Drive:
    rate: float  # changes per second
    duration: float  # seconds of random holds and releases; then the remaining holds are released
    seed: int
    live_max: int = 30
    max_seats: int = 4


@dataclass(frozen=True)
class Driven:
    start_seq: int
    end_seq: int
    changes: int
    errors: int
    started: float  # wall clock of the first change
    seconds: float
    worst_lateness: float  # how far behind its schedule the driver ever was, seconds


class Driver:
    def __init__(self, target: Target, holds: Holds) -> None:
        self.target = target
        self.holds = holds

    async def seq(self) -> int:
        keys = self.holds.inventory.keys(self.target.screening)
        return int(await self.holds.inventory.redis.get(keys.seq) or 0)

    async def drive(self, command: Drive) -> Driven:
        rng = random.Random(command.seed)
        idle = list(self.target.users)
        live: dict[int, tuple[str, list[str]]] = {}
        taken: set[str] = set()
        start_seq = await self.seq()
        changes = errors = 0
        worst = 0.0
        started = time.time()
        t0 = time.monotonic()
        stop_holding = t0 + command.duration
        i = 0
        while True:
            due = t0 + i / command.rate
            now = time.monotonic()
            if due > now:
                await asyncio.sleep(due - now)
            else:
                worst = max(worst, now - due)
            i += 1
            holding = time.monotonic() < stop_holding
            if not holding and not live:
                break
            if holding and idle and (not live or (len(live) < command.live_max and rng.random() < 0.5)):
                user = idle[rng.randrange(len(idle))]
                seats = adjacent(rng, self.target.rows, rng.randint(1, command.max_seats))
                while taken.intersection(seats):
                    seats = adjacent(rng, self.target.rows, rng.randint(1, command.max_seats))
                try:
                    hold = await self.holds.create(self._who(user), self.target.screening, seats)
                except SeatmapError:  # e.g. a rule against stranding single seats: no delta
                    errors += 1
                    continue
                idle.remove(user)
                live[user] = (hold.token, seats)
                taken.update(seats)
            else:
                user = rng.choice(sorted(live))
                token, seats = live.pop(user)
                taken.difference_update(seats)
                idle.append(user)
                try:
                    await self.holds.release(self._who(user), token)
                except SeatmapError:
                    errors += 1
                    continue
            changes += 1
        return Driven(start_seq, await self.seq(), changes, errors, started, time.monotonic() - t0, worst)

    @staticmethod
    def _who(user: int) -> Principal:
        return Principal(user_id=user, role="customer", jti="bench", expires_at=int(time.time()) + 3600)


async def _serve(conn: Connection, target: Target) -> None:
    settings = Settings(
        database_url=target.database_url,
        redis_url=target.redis_url,
        data_dir=Path(tempfile.gettempdir()),
        dev=True,
        jwt_secret=Secret("unused by the driver" + "-" * 32),
        redis_prefix=target.prefix,
    )
    async with open_runtime(settings, "worker") as rt:
        driver = Driver(target, rt.holds)
        # Load the screening into Redis now: loading starts its seq at the clock in microseconds,
        # which must happen before the first phase reads where it starts.
        await rt.holds.inventory.snapshot(target.screening)
        while True:
            command = await asyncio.to_thread(conn.recv)
            if not isinstance(command, Seq | Drive):
                return
            try:
                conn.send(await (driver.seq() if isinstance(command, Seq) else driver.drive(command)))
            except Exception:
                conn.send(RuntimeError(f"driver failed on {command!r}:\n{traceback.format_exc()}"))


def main(conn: Connection, target: Target) -> None:
    """The process entry point (multiprocessing, spawn)."""
    asyncio.run(_serve(conn, target))
