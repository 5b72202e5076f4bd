"""The chaos scenarios of issue 13, each a function of the servers, a size and a log directory.

The suite (tests/chaos/) runs them at `SHORT` size and asserts that every count is 0;
`python -m bench.chaos` runs them at `LONG` size (300 buyers, 50 viewers, 600 seats, web
processes SIGKILLed four times, PostgreSQL down 10 s, …) and prints the table. Each returns an
`Outcome` (bench/trial.py) and never runs longer than its bounds: every load loop stops at a
deadline, every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import invariants
from bench.cluster import Backing
from bench.crowd import Buyer, SlowSocket, Unanswered, buying_race
from bench.trial import Outcome, Run
from seatmap.accounts.auth import Principal
from seatmap.composition import open_runtime
from seatmap.live.inventory import Keys
from seatmap.settings import Secret, Settings


@dataclass(frozen=True)
class Size:
    rows: tuple[str, ...]  # the hall
    buyers: int
    viewers: int
    race: float  # seconds the buyers race for
    kills: int  # SIGKILLs of a web process
    outage: float  # seconds PostgreSQL stays down
    refunds: int  # paid orders refunded while a worker is killed
    holds: int  # one-seat holds that expire
    hold_screenings: int
    slow: int  # sockets that never read
    traffic: float  # seconds of seat changes beside the slow sockets
    settle: float  # seconds the system gets, after the last fault, to confirm or refund everything


SHORT = Size(("S" * 20,) * 8, buyers=24, viewers=6, race=3.0, kills=1, outage=3.0, refunds=60,
             holds=300, hold_screenings=3, slow=4, traffic=20.0, settle=15.0)  # fmt: skip
LONG = Size(("S" * 30,) * 20, buyers=300, viewers=50, race=25.0, kills=4, outage=10.0, refunds=500,
            holds=2000, hold_screenings=20, slow=20, traffic=30.0, settle=90.0)  # fmt: skip


UNDELIVERED = "SELECT count(*) FROM simulated_webhooks WHERE delivered_at IS NULL"


def _logs(root: Path, name: str) -> Path:
    return root / name.replace(" ", "-").replace(",", "")


async def web_kill(servers: Backing, size: Size, root: Path, kills: int | None = None) -> Outcome:
    """Two web processes and a worker under a buying race; a web process is SIGKILLed (and its
    supervisor starts it again half a second later) `kills` times, alternating between them."""
    kills = size.kills if kills is None else kills
    name = f"web SIGKILL x{kills}"
    # The gateway's webhooks take half a second to arrive (the balancer's latency), as over a
    # real network: a killed process always leaves some decided, not yet delivered, which is
    # the window issue 13 measures (the decider's lease on them).
    rows = list(size.rows)
    async with Run(servers, _logs(root, name), rows=rows, users=size.buyers, latency=0.5) as run:
        assert run.cluster is not None
        await run.add_viewers(size.viewers)
        buyers = run.add_buyers(size.buyers)
        until = time.monotonic() + size.race
        race = asyncio.create_task(buying_race(buyers, run.screenings[0], run.pairs(), until, run.rng))
        last = time.time()
        for k in range(kills):
            await asyncio.sleep(min(1.0, size.race / (kills + 1)))
            with contextlib.suppress(TimeoutError):  # the moment webhooks are on their way
                await run.until(UNDELIVERED, lambda n: n >= 4, 5)
            web = run.cluster.webs[k % len(run.cluster.webs)]
            await web.kill()
            last = time.time()
            await asyncio.sleep(0.5)
            await web.start()
        await race
        outcome = await run.verdict(name, last, size.settle)
        outcome.notes["killed"] = kills
        return outcome


async def redis_kill(servers: Backing, size: Size, root: Path) -> Outcome:
    """A buying race while Redis is SIGKILLed and restarted empty (default configuration)."""
    name = "Redis SIGKILL + empty"
    async with Run(servers, _logs(root, name), rows=list(size.rows), users=size.buyers) as run:
        await run.add_viewers(size.viewers)
        buyers = run.add_buyers(size.buyers)
        until = time.monotonic() + size.race
        race = asyncio.create_task(buying_race(buyers, run.screenings[0], run.pairs(), until, run.rng))
        await asyncio.sleep(min(1.0, size.race / 3))
        await servers.redis.kill()
        await asyncio.sleep(0.5)
        await servers.redis.start()
        restarted = time.time()
        await race
        outcome = await run.verdict(name, restarted, size.settle)
        outcome.notes["keyspace_events"] = await keyspace_events(run)
        return outcome


async def keyspace_events(run: Run) -> str:
    """Redis's notify-keyspace-events once the web processes had time to re-apply it."""
    redis = run.redis()
    try:
        deadline = time.monotonic() + 5
        while True:
            config = str((await redis.config_get("notify-keyspace-events"))["notify-keyspace-events"])
            if ("E" in config and ("x" in config or "A" in config)) or time.monotonic() > deadline:
                return config
            await asyncio.sleep(0.2)
    finally:
        await redis.aclose()


async def refund_then_resell(servers: Backing, size: Size, root: Path) -> Outcome:
    """Issue 13's broken invariant 5: A buys B5,B6 and refunds (no worker yet), B buys them, Redis
    restarts empty, the worker runs A's refund: B's seats must stay sold, on the map and in PG."""
    name = "refund, resell, Redis empty"
    async with Run(servers, _logs(root, name), rows=list(size.rows), users=4, workers=0) as run:
        assert run.cluster is not None
        await run.add_viewers(2)
        a, b, c = run.add_buyers(3)
        screening = run.screenings[0]
        seats = [run.labels[1][4], run.labels[1][5]]  # B5, B6
        first = await a.buy(screening, seats)
        assert first is not None, "A could not buy"
        assert await a.refund(first), "A's refund was not accepted"
        second = await b.buy(screening, seats)
        assert second is not None, "B could not buy the seats A refunded"
        await servers.redis.kill()
        await servers.redis.start()
        worker = run.cluster.add_worker(1)
        await worker.start()
        started = time.time()
        status = "SELECT status FROM orders WHERE id = $1"
        await run.until(status, lambda s: s == "refunded", 30, first)
        await asyncio.sleep(1.0)  # the refund's last step (free the seats) runs after the status
        outcome = await run.verdict(name, started, size.settle)
        c_hold = await c.hold(screening, seats)  # (which also loads the map, were it not)
        redis = run.redis()
        try:
            raw = await redis.hmget(Keys.of(run.prefix, screening).seats, seats)
        finally:
            await redis.aclose()
        outcome.notes["redis_B5_B6"] = ",".join(str(s) for s in raw)
        outcome.notes["C_could_hold"] = c_hold is not None
        # A seat sold in PostgreSQL that the map shows free, or that C could hold, is sold twice.
        outcome.double_sold += sum(1 for s in raw if s != "s") + (2 if c_hold is not None else 0)
        return outcome


async def postgres_restart(servers: Backing, size: Size, root: Path, mode: str) -> Outcome:
    """A buying race with refunds flowing (every third buyer refunds), the worker running, while
    PostgreSQL restarts (`fast`, `immediate`, `fast+immediate`) or stays down `size.outage` s."""
    name = f"PostgreSQL {mode}" + (f" {size.outage:.0f}s" if mode == "outage" else "")
    env = {"SEATMAP_JOB_BACKOFF": "0.2", "SEATMAP_JOB_MAX_BACKOFF": "1"}
    async with Run(servers, _logs(root, name), rows=list(size.rows), users=size.buyers, env=env) as run:
        await run.add_viewers(size.viewers)
        buyers = run.add_buyers(size.buyers)
        until = time.monotonic() + size.race + (size.outage if mode == "outage" else 0)
        race = asyncio.create_task(_buy_and_refund(buyers, run, until))
        await asyncio.sleep(min(1.0, size.race / 3))
        if mode == "outage":
            await servers.postgres.stop("fast")
            await asyncio.sleep(size.outage)
            await servers.postgres.start()
        else:
            for one in mode.split("+"):  # "fast+immediate": one after the other, a second apart
                await servers.postgres.restart(one)
                await asyncio.sleep(1.0)
        back = time.time()
        await race
        outcome = await run.verdict(name, back, size.settle)
        outcome.notes["refunds"] = len(run.tally.refunded)
        return outcome


async def _buy_and_refund(buyers: list[Buyer], run: Run, until: float) -> None:
    remaining = run.pairs()

    async def one(n: int, buyer: Buyer) -> None:
        while remaining and time.monotonic() < until:
            seats = run.rng.choice(remaining)
            try:
                order = await buyer.buy(run.screenings[0], seats, max(1.0, until - time.monotonic()))
                if order is not None and seats in remaining:
                    remaining.remove(seats)
                    if n % 3 == 0:
                        await buyer.refund(order)
            except Unanswered:
                continue

    await asyncio.gather(*(one(n, b) for n, b in enumerate(buyers)))


async def worker_kill(servers: Backing, size: Size, root: Path, workers: int = 1) -> Outcome:
    """`size.refunds` paid orders refunded by their buyers while the gateway fails 30% of refund
    calls; a worker is SIGKILLed mid-way (one of `workers`; alone, its supervisor restarts it)."""
    name = f"worker SIGKILL, {workers} worker(s)"
    env = {
        "SEATMAP_SIMULATED_REFUND_FAILURE_RATE": "0.3", "SEATMAP_SIMULATED_LATENCY": "0.05",
        "SEATMAP_JOB_BACKOFF": "0.2", "SEATMAP_JOB_MAX_BACKOFF": "1",
    }  # fmt: skip
    rows = ["S" * 25] * -(-size.refunds // 25)
    async with Run(
        servers, _logs(root, name), rows=rows, users=size.refunds, workers=workers, env=env
    ) as run:
        assert run.cluster is not None
        orders = await run.paid_orders(run.screenings[0], size.refunds)
        buyers = run.add_buyers(size.refunds)
        await asyncio.gather(*(buyer.refund(order) for buyer, (order, _) in zip(buyers, orders, strict=True)))
        third = len(orders) // 3
        succeeded = "SELECT count(*) FROM refunds WHERE status = 'succeeded'"
        await run.until(succeeded, lambda n: n >= third, 60)
        victim = run.cluster.workers[0]
        await victim.kill()
        killed = time.time()
        if workers == 1:
            await victim.start()
        outcome = await run.verdict(name, killed, size.settle)
        outcome.notes["refunded"] = len(run.tally.refunded)
        return outcome


async def expiry(servers: Backing, size: Size, root: Path) -> Outcome:
    """`size.holds` one-seat holds with a 2 s TTL over `size.hold_screenings` screenings, watched by
    the viewers: restock lag = a viewer's `free` for the seat - the hold's expires_at.

    The holds are made at once through `seatmap.live.holds.Holds` (the code behind POST
    /api/holds), as bench/driver.py does: through REST this process would take seconds to make
    them and be too busy meanwhile to stamp the viewers' frees on time. The restock itself is
    the web processes' own (notifications and sweeper)."""
    name = f"expiry of {size.holds} holds"
    per_screening = -(-size.holds // size.hold_screenings)
    width = len(size.rows[0])
    rows = ["S" * width] * max(len(size.rows), -(-per_screening // width))
    env = {"SEATMAP_HOLD_TTL": "2", "SEATMAP_HOLDS_PER_ACCOUNT": "0"}
    async with Run(
        servers, _logs(root, name), rows=rows, screenings=size.hold_screenings, users=per_screening, env=env
    ) as run:
        async with run.db() as db:  # one-seat holds side by side would strand seats
            await db.execute("UPDATE screenings SET no_single_seats = false")
        viewers = await run.add_viewers(max(size.viewers * 2, size.hold_screenings), run.screenings)
        seats = [label for row in run.labels for label in row]
        settings = Settings(
            database_url=run.database_url, redis_url=servers.redis.url, data_dir=root, dev=True,
            jwt_secret=Secret(run.jwt_secret), redis_prefix=run.prefix, hold_ttl=2, holds_per_account=0,
        )  # fmt: skip
        deadlines: dict[tuple[int, str], float] = {}
        async with open_runtime(settings, "worker") as rt:

            async def hold(user: int, screening: int, seat: str) -> None:
                who = Principal(user_id=user, role="customer", jti="chaos", expires_at=int(time.time()) + 600)
                made = await rt.holds.create(who, screening, [seat])
                deadlines[screening, seat] = datetime.fromisoformat(made.expires_at).timestamp()

            await asyncio.gather(
                *(
                    hold(user, screening, seats[n])
                    for n, user in enumerate(run.user_ids)
                    for screening in run.screenings
                )
            )
        last = max(deadlines.values(), default=time.time())
        await asyncio.sleep(max(0.0, last - time.time()) + 2.0)
        lags: list[float] = []
        for viewer in viewers:
            for (screening, seat), deadline in deadlines.items():
                if screening != viewer.screening:
                    continue
                frees = [t for t in viewer.frees.get(seat, []) if t >= deadline - 2.5]
                lags.append(1000 * (min(frees) - deadline) if frees else float("inf"))
        outcome = await run.verdict(name, time.time(), size.settle)
        outcome.timed = False
        outcome.restock_p99_ms = invariants.percentile(lags, 0.99)
        outcome.notes |= {
            "holds": len(deadlines),
            "p50_ms": round(invariants.percentile(lags, 0.5)),
            "max_ms": round(max(lags, default=0)),
            "never_freed": sum(1 for lag in lags if lag == float("inf")),
        }
        return outcome


async def slow_sockets(servers: Backing, size: Size, root: Path) -> Outcome:
    """Sockets that never read beside normal viewers while seats change: the normal viewers keep
    up, the slow ones are reset or closed, and no web process logs an error."""
    name = f"{size.slow} slow sockets"
    async with Run(servers, _logs(root, name), rows=list(size.rows), users=40, workers=0) as run:
        assert run.cluster is not None
        screening = run.screenings[0]
        slow = [SlowSocket(screening, run.ports[i % len(run.ports)]) for i in range(size.slow)]
        for socket in slow:
            await socket.open()
        await run.add_viewers(size.viewers)
        changers = run.add_buyers(40)
        blocks = [row[i : i + 10] for row in run.labels for i in range(0, len(row) - 9, 10)]
        started = time.monotonic()
        until = started + size.traffic

        async def churn(buyer: Buyer, rng: random.Random) -> None:
            """Hold and release 10 seats, until every slow socket is closed or time is up."""
            while time.monotonic() < until and not all(s.closed_by_server for s in slow):
                try:
                    held = await buyer.hold(screening, rng.choice(blocks))
                    if held is not None:
                        await buyer.release(held["token"])
                except Unanswered:
                    continue

        await asyncio.gather(*(churn(b, random.Random(i)) for i, b in enumerate(changers)))
        detected_s = time.monotonic() - started
        outcome = await run.verdict(name, time.time(), size.settle)
        outcome.timed = False
        for socket in slow:
            socket.resume()
        await asyncio.sleep(1.0)
        undetected = sum(1 for s in slow if not s.closed_by_server and s.snapshots() <= 1)
        for socket in slow:
            await socket.close()
        errors = [line for web in run.cluster.webs for line in web.errors()]
        outcome.notes |= {
            "slow_undetected": undetected,
            "traffic_s": round(detected_s, 1),
            "web_errors": len(errors),
        }
        if errors:
            outcome.notes["first_error"] = errors[0][:160]
        return outcome
