"""Issue 13's chaos runs at full size, with the invariants counted and a table printed.

    .venv/bin/python -m bench.chaos                      # every scenario, LONG size (~6 min)
    .venv/bin/python -m bench.chaos --only web redis     # some of them
    .venv/bin/python -m bench.chaos --short              # the suite's sizes (tests/chaos/)

Two web processes (`seatmap serve`), one or two workers (`seatmap worker`), and the run's own
PostgreSQL (pgserver's binaries, `pg_ctl`) and Redis (`redis-server`), all on 127.0.0.1 and
stopped by PID; 300 buyers over REST, 50 viewers over WebSocket (`?since=` on reconnect), 600
seats. Broken on purpose: a web process SIGKILLed once and four times; Redis SIGKILLed and
restarted empty (and the refund-then-resell sequence across it); PostgreSQL restarted fast,
immediate, and down 10 s with the worker running; a worker SIGKILLed mid-refund with the
gateway failing 30% of refund calls (alone, and beside a second worker); 2,000 holds expiring;
slow sockets that never read beside normal viewers. See bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Final

from bench import scenarios
from bench.cluster import Backing, own_servers
from bench.scenarios import Size
from bench.servers import raise_fd_limit
from bench.trial import Outcome

Scenario = Callable[[Backing, Size, Path], Awaitable[Outcome]]

SCENARIOS: Final[dict[str, list[Scenario]]] = {
    "web": [partial(scenarios.web_kill, kills=1), partial(scenarios.web_kill, kills=4)],
    "redis": [scenarios.redis_kill, scenarios.refund_then_resell],
    "postgres": [
        partial(scenarios.postgres_restart, mode="fast"),
        partial(scenarios.postgres_restart, mode="immediate"),
        partial(scenarios.postgres_restart, mode="outage"),
    ],
    "worker": [partial(scenarios.worker_kill, workers=1), partial(scenarios.worker_kill, workers=2)],
    "expiry": [scenarios.expiry],
    "slow": [scenarios.slow_sockets],
}

COLUMNS: Final = (
    ("scenario", 30), ("double-sold", 11), ("paid w/o tickets", 16), ("payments w/o order-or-refund", 28),
    ("refunds≠1 per refunded payment", 30), ("diverged viewers", 16), ("seq gaps/dups", 13),
    ("5xx≠503", 7), ("restock lag p99", 15), ("crash-to-confirmation s", 23),
)  # fmt: skip


def _number(value: float | None, unit: str = "") -> str:
    if value is None:
        return "never"
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "missed"
    return f"{value:.0f}{unit}" if unit else f"{value:.1f}"


def table(outcomes: list[Outcome]) -> str:
    """The chaos table (Markdown), one row per scenario, and each row's notes below it."""
    lines = [
        "| " + " | ".join(name for name, _ in COLUMNS) + " |",
        "|" + "|".join("-" * (width + 2) for _, width in COLUMNS) + "|",
    ]
    for o in outcomes:
        cells = [
            o.scenario, o.double_sold, o.paid_without_tickets, o.payments_adrift, o.refunds_not_once,
            o.diverged_viewers, o.seq_faults, o.server_errors,
            "-" if o.restock_p99_ms is None else _number(o.restock_p99_ms, " ms"),
            _number(o.recovery_s) if o.timed else "-",
        ]  # fmt: skip
        lines.append(
            "| " + " | ".join(f"{c!s:<{w}}" for c, (_, w) in zip(cells, COLUMNS, strict=True)) + " |"
        )
    lines.append("")
    for o in outcomes:
        notes = ", ".join(f"{k}={v}" for k, v in o.notes.items())
        lines.append(f"- {o.scenario}: {notes}")
    return "\n".join(lines)


async def run(names: list[str], size: Size, keep: Path | None) -> list[Outcome]:
    outcomes: list[Outcome] = []
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
        root = keep or Path(tmp)
        async with own_servers(Path(tmp) / "servers") as servers:
            for name in names:
                for scenario in SCENARIOS[name]:
                    started = time.monotonic()
                    try:
                        outcome = await asyncio.wait_for(scenario(servers, size, root), 600)
                    except Exception as exc:
                        outcome = Outcome(
                            getattr(scenario, "__name__", name), notes={"failed": repr(exc)[:200]}
                        )
                        if isinstance(scenario, partial):
                            outcome.scenario = f"{scenario.func.__name__} {scenario.keywords}"
                        outcome.scenario = "FAILED " + outcome.scenario
                    outcome.notes["run_s"] = round(time.monotonic() - started, 1)
                    print(f"  {outcome.scenario}: {outcome.violations()} {outcome.notes}", file=sys.stderr)
                    outcomes.append(outcome)
    return outcomes


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    p.add_argument("--short", action="store_true", help="the suite's sizes instead of the full ones")
    p.add_argument("--logs", type=Path, help="keep every process's log under this directory")
    args = p.parse_args(argv)
    raise_fd_limit()
    size = scenarios.SHORT if args.short else scenarios.LONG
    outcomes = asyncio.run(run(args.only, size, args.logs))
    print(table(outcomes))


if __name__ == "__main__":
    main()
