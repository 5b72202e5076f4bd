"""The live feed's rules, as tables of events and the decisions they lead to: no Redis, no socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from seatmap.live.feed import (
    BATCH_MAX,
    FROM_STREAM,
    MAX_RESYNCS,
    REPLAY_BURST,
    REPLAY_RATE,
    RESUME,
    RESYNC,
    Feed,
    Fetch,
    Replay,
    ResumeFrom,
    TooSlow,
    Watcher,
)

SCREENING = 7


def delta(seq: int, state: str = "held") -> str:
    """A delta as the Lua script publishes it: seat A<seq> changes."""
    return json.dumps(
        {"type": "delta", "seq": seq, "ts": 1000.0 * seq, "changes": [{"seat": f"A{seq}", "state": state}]},
        separators=(",", ":"),
    )


Event = Callable[[Feed], None]


def snap(seq: int) -> Event:
    return lambda feed: feed.receive_snapshot(seq, {}, {"Floor": 10}, "on_sale")


def msg(seq: int, state: str = "held") -> Event:
    return lambda feed: feed.receive_message(delta(seq, state))


def status(seq: int, value: str) -> Event:
    return lambda feed: feed.receive_message(json.dumps({"type": "status", "seq": seq, "status": value}))


def entries(first: int = 0, last: int = -1) -> Event:
    return lambda feed: feed.receive_entries([(s, delta(s)) for s in range(first, last + 1)])


def seq_is(seq: int | None) -> Event:
    return lambda feed: feed.receive_seq(seq)


def reconnect() -> Event:
    return lambda feed: feed.receive_reconnect()


def fail() -> Event:
    return lambda feed: feed.receive_fetch_failure()


@dataclass
class Trace:
    """What the I/O layers were asked to do, and what one watcher's backlog holds."""

    backlog: list[int | str] = field(default_factory=list)
    fetches: list[tuple[int | None, str]] = field(default_factory=list)
    resyncs: dict[str, int] = field(default_factory=dict)
    seq: int = 0


def run(*events: Event) -> Trace:
    feed = Feed(SCREENING, ring=4)
    watcher = Watcher(maxsize=8)
    feed.watchers.add(watcher)
    trace = Trace()
    for event in events:
        event(feed)
        fetch = feed.fetch_to_do()
        if fetch is not None:
            trace.fetches.append((fetch.after, fetch.reason))
    feed.flush()
    trace.backlog = ["resync" if item == RESYNC else item[0] for item in watcher.pending]
    trace.resyncs = feed.resyncs_to_count()
    trace.seq = feed.seq
    return trace


ORDERING = [
    pytest.param([snap(5), msg(6), msg(7)], [6, 7], [], {}, 7, id="in order: applied as they come"),
    pytest.param(
        [snap(5), msg(5), msg(4), msg(6), msg(6)], [6], [], {}, 6, id="duplicates and old seqs dropped"
    ),
    pytest.param([msg(6), msg(7), snap(6)], [7], [], {}, 7, id="before the first snapshot: wait, then apply"),
    pytest.param(
        [snap(5), msg(8), msg(9), entries(6, 8)],
        [6, 7, 8, 9],
        [(5, "gap")],
        {},
        9,
        id="gap: filled from the stream, then what waited",
    ),
    pytest.param(
        [snap(5), msg(8), entries(7, 8), snap(8), msg(9)],
        ["resync", 9],
        [(5, "gap"), (None, "gap")],
        {"gap": 1},
        9,
        id="gap the stream no longer covers: a snapshot for everyone",
    ),
    pytest.param(
        [snap(5), msg(8), msg(10), entries(6, 8), entries(9, 10)],
        [6, 7, 8, 9, 10],
        [(5, "gap"), (8, "gap")],
        {},
        10,
        id="one read at a time: a second gap waits for the first fill",
    ),
    pytest.param(
        [snap(5), reconnect(), entries()], [], [(5, "reconnect")], {}, 5, id="reconnect, nothing missed"
    ),
    pytest.param(
        [snap(5), reconnect(), entries(6, 7)],
        [6, 7],
        [(5, "reconnect")],
        {},
        7,
        id="reconnect: what was missed comes from the stream",
    ),
    pytest.param(
        [snap(5), reconnect(), entries(7, 8), snap(8)],
        ["resync"],
        [(5, "reconnect"), (None, "reconnect")],
        {"reconnect": 1},
        8,
        id="reconnect after the stream was trimmed: snapshot",
    ),
    pytest.param([snap(5), seq_is(5)], [], [], {}, 5, id="seq check, up to date: nothing to do"),
    pytest.param(
        [snap(5), seq_is(7), entries(6, 7)],
        [6, 7],
        [(5, "behind")],
        {},
        7,
        id="seq check finds a gap no later delta revealed",
    ),
    pytest.param(
        [snap(5), seq_is(None), entries(), snap(1)],
        ["resync"],
        [(5, "lost"), (None, "lost")],
        {"lost": 1},
        1,
        id="Redis lost the screening: reload, everyone resyncs",
    ),
    pytest.param(
        [snap(5), msg(6), msg(7), lambda feed: feed.flush(), lambda feed: feed.receive_seq(6, 7), snap(6)],
        ["resync"],
        [(None, "rewound")],
        {"rewound": 1},
        6,
        id="seq went back (a failover lost writes): snapshot, everyone resyncs",
    ),
    pytest.param(
        [snap(5), lambda feed: feed.receive_seq(5, 5), msg(6), msg(7), lambda feed: feed.receive_seq(5, 5)],
        [6, 7],
        [],
        {},
        7,
        id="a seq read sent before deltas arrived is late, not a rewind",
    ),
    pytest.param(
        [snap(5), msg(7), fail(), seq_is(7), entries(6, 7)],
        [6, 7],
        [(5, "gap"), (5, "behind")],
        {},
        7,
        id="a failed read is asked again by the next check",
    ),
    pytest.param(
        [snap(5), status(6, "closed"), msg(7)],
        [6, 7],
        [],
        {},
        7,
        id="status changes share the seq order",
    ),
]


@pytest.mark.parametrize(("events", "backlog", "fetches", "resyncs", "seq"), ORDERING)
def test_feed_orders_deltas_and_repairs_gaps(
    events: list[Event], backlog: list[int | str], fetches: list[tuple[int | None, str]],
    resyncs: dict[str, int], seq: int,
) -> None:  # fmt: skip
    """Every viewer sees each change once, in seq order, or a snapshot when a change can't be had."""
    trace = run(*events)
    assert (trace.backlog, trace.fetches, trace.resyncs, trace.seq) == (backlog, fetches, resyncs, seq)


def test_feed_keeps_the_map_current() -> None:
    """A snapshot taken after deltas shows them: held seats, freed seats, the status."""
    feed = Feed(SCREENING)
    for event in (snap(0), msg(1), msg(2), msg(3, "free"), status(4, "closed")):
        event(feed)
    feed.receive_message(delta(3, "free").replace('"A3"', '"A1"').replace('"seq":3', '"seq":5'))
    seq, text = feed.snapshot_text()
    assert (seq, json.loads(text)["seats"], json.loads(text)["status"]) == (5, {"A2": "held"}, "closed")


def test_flush_hands_over_commit_times_once() -> None:
    """The fan-out lag is measured once per delta, from its commit time."""
    feed = Feed(SCREENING)
    for event in (snap(0), msg(1), status(2, "closed"), msg(3)):
        event(feed)
    assert feed.flush_due()
    assert feed.flush() == [1000.0, 3000.0]
    assert feed.flush() == [] and not feed.flush_due()


# ---- a watcher: what one socket is sent --------------------------------------------------------


def frames(feed: Feed, watcher: Watcher) -> list[str]:
    """Drain the watcher as a socket's writer would, naming each frame by its type and seqs."""
    out: list[str] = []
    while watcher.pending:
        frame = watcher.frame_to_send(feed)
        if frame is None:
            continue
        if isinstance(frame, TooSlow):
            out.append("close too slow")
            break
        if isinstance(frame, ResumeFrom):
            out.append(f"resume {frame.since}")
            continue
        out.append(describe(frame))
    return out


def describe(text: str) -> str:
    message: dict[str, Any] = json.loads(text)
    if message["type"] == "batch":
        return "batch " + ",".join(describe(json.dumps(m)) for m in message["messages"])
    return f"{message['type']} {message.get('seq', message.get('viewers'))}"


def fed(seq: int, *, maxsize: int = 8, batching: bool = False) -> tuple[Feed, Watcher]:
    feed = Feed(SCREENING)
    feed.receive_snapshot(seq, {}, {}, "on_sale")
    watcher = Watcher(maxsize, batching=batching)
    feed.watchers.add(watcher)
    watcher.started(seq, 0.0)
    return feed, watcher


def offer(watcher: Watcher, *items: int | str) -> None:
    for item in items:
        if item == "|":
            pass  # the writer drains here (see the test)
        elif item == "resync":
            watcher.reset()
        elif isinstance(item, str):
            watcher.resume(int(item.split()[1]))
        else:
            watcher.offer(item, delta(item))


WRITER = [
    pytest.param(5, False, [4, 5, 6, 7], ["delta 6", "delta 7"], id="what the socket has seen is skipped"),
    pytest.param(
        5, True, [6, 7, 8], ["batch delta 6,delta 7,delta 8"], id="batching: what queued shares a frame"
    ),
    pytest.param(5, True, [6], ["delta 6"], id="batching: no batch of one"),
    pytest.param(
        5,
        True,
        [6, "resume 3", 7, 8],
        ["delta 6", "resume 3", "batch delta 7,delta 8"],
        id="a resume is not batched over: it keeps its place",
    ),
    pytest.param(
        5,
        True,
        [6, 7, "resync", 8],
        ["batch snapshot 5,delta 8"],
        id="reset: a snapshot replaces the backlog",
    ),
    pytest.param(
        5,
        False,
        ["resync", "|"] * (MAX_RESYNCS + 1),
        ["snapshot 5"] * MAX_RESYNCS + ["close too slow"],
        id="too many snapshots in a row: too slow, closed",
    ),
    pytest.param(
        5,
        False,
        [*["resync", "|"] * MAX_RESYNCS, 6, "|", "resync"],
        [*["snapshot 5"] * MAX_RESYNCS, "delta 6", "snapshot 5"],
        id="a delta after the snapshots: it keeps up, the count restarts",
    ),
]


@pytest.mark.parametrize(("seen", "batching", "backlog", "sent"), WRITER)
def test_watcher_decides_what_the_socket_is_sent(
    seen: int, batching: bool, backlog: list[int | str], sent: list[str]
) -> None:
    """A socket gets each change once, batched when it asked, a snapshot when it fell behind."""
    feed, watcher = fed(seen, batching=batching, maxsize=100)
    out: list[str] = []
    chunk: list[int | str] = []
    for item in [*backlog, "|"]:
        if item == "|":  # the writer takes what is queued so far
            offer(watcher, *chunk)
            out += frames(feed, watcher)
            chunk = []
        else:
            chunk.append(item)
    assert out == sent


def test_a_full_backlog_becomes_one_resync() -> None:
    """A socket that falls behind holds at most its queue size, then just 'send a snapshot'."""
    feed, watcher = fed(0, maxsize=4)
    for seq in range(1, 100):
        feed.receive_message(delta(seq))
        feed.flush()
        assert len(watcher.pending) <= 4
    items = list(watcher.pending)
    assert RESYNC in items
    assert items[-1][0] == 99  # the newest delta follows the resync marker
    assert feed.resyncs_to_count() == {"too_slow": watcher.resyncs} and watcher.resyncs > 1
    assert frames(feed, watcher)[0] == "snapshot 99"


def test_presence_and_heartbeats_never_overtake_deltas() -> None:
    """Presence goes out on a change only, and a heartbeat after the deltas whose seq it carries."""
    feed, watcher = fed(5)
    busy = Watcher(8, now=10.0)
    feed.watchers.add(busy)
    msg(6)(feed)
    feed.receive_viewers(3)
    feed.receive_viewers(3)
    msg(7)(feed)
    feed.heartbeat(quiet_since=5.0)
    assert frames(feed, watcher) == ["delta 6", "presence 3", "delta 7", "heartbeat 7"]
    assert frames(feed, busy) == ["delta 6", "presence 3", "delta 7"]


def test_a_watcher_wakes_its_writer() -> None:
    """The writer is woken by anything that reaches the backlog, and only while it waits."""
    feed, watcher = fed(0)
    woken: list[int] = []
    watcher.wake = lambda: woken.append(len(watcher.pending))
    msg(1)(feed)
    feed.flush()
    watcher.reset()
    watcher.resume(0)
    assert woken == [1, 1, 2]
    assert list(watcher.pending)[-1] == (RESUME, "0")


# ---- resume: replay or snapshot --------------------------------------------------------------


def fed_ring(first: int, last: int) -> Feed:
    feed = Feed(SCREENING, ring=4)
    feed.receive_snapshot(first - 1, {}, {}, "on_sale")
    for seq in range(first, last + 1):
        msg(seq)(feed)
    return feed


RESUMES = [
    pytest.param(10, Replay([], 10), id="up to date: nothing to replay"),
    pytest.param(8, Replay([delta(9), delta(10)], 10), id="recent: replayed from memory"),
    pytest.param(6, Replay([delta(s) for s in range(7, 11)], 10), id="exactly what memory holds"),
    pytest.param(5, FROM_STREAM, id="older than memory: read the stream"),
    pytest.param(11, None, id="a seq from the future (a Redis restart): snapshot"),
]


@pytest.mark.parametrize(("since", "plan"), RESUMES)
def test_resume_replays_or_asks_for_a_snapshot(since: int, plan: Replay | str | None) -> None:
    """A client coming back gets exactly what it missed when that can be had, else a snapshot."""
    assert fed_ring(1, 10).resume(since) == plan


STREAMS = [
    pytest.param(5, [(6, "d6"), (7, "d7")], Replay(["d6", "d7"], 7), id="the stream reaches back"),
    pytest.param(5, [(7, "d7")], None, id="trimmed: snapshot"),
    pytest.param(5, [], None, id="empty: snapshot"),
]


@pytest.mark.parametrize(("since", "stream", "plan"), STREAMS)
def test_resume_from_the_stream(since: int, stream: list[tuple[int, str]], plan: Replay | None) -> None:
    """Only a stream that starts right after `since` can replace a snapshot."""
    assert Feed.resume_from_stream(since, stream) == plan


@pytest.mark.parametrize(
    ("n", "batching", "shape"),
    [(3, False, [1, 1, 1]), (1, True, [1]), (3, True, [3]), (BATCH_MAX + 2, True, [BATCH_MAX, 2])],
)
def test_replay_frames(n: int, batching: bool, shape: list[int]) -> None:
    """A replay goes one delta per frame, or in batches of at most BATCH_MAX (never a batch of one)."""
    out = Replay([delta(s) for s in range(1, n + 1)], n).frames(batching)
    sizes = [len(json.loads(f)["messages"]) if '"batch"' in f[:20] else 1 for f in out]
    assert sizes == shape
    assert all(('"batch"' in f[:20]) == (size > 1) for f, size in zip(out, sizes, strict=True))


# (deltas asked for, seconds since the previous ask): allowed? Starting from a full budget.
REPLAY_BUDGETS = [
    pytest.param([(REPLAY_BURST, 0.0)], [True], id="a reconnect from the whole log"),
    pytest.param([(REPLAY_BURST + 1, 0.0)], [False], id="more than the burst: snapshot"),
    pytest.param([(590, 0.0), (590, 0.1), (590, 0.1)], [True, False, False], id="repeats: snapshots"),
    pytest.param([(590, 0.0), (0, 0.1), (0, 0.1)], [True, True, True], id="nothing to replay: always"),
    pytest.param(
        [(590, 0.0), (590, (590 - (REPLAY_BURST - 590)) / REPLAY_RATE + 0.01)],
        [True, True],
        id="refilled at the rate",
    ),
    pytest.param([(600, 0.0), (600, 0.1), (500, 0.0)], [True, False, False], id="a refusal spends nothing"),
    pytest.param([(600, 0.0), (600, 0.1), (420, 0.0)], [True, False, True], id="... so less still fits"),
]


@pytest.mark.parametrize(("asks", "allowed"), REPLAY_BUDGETS)
def test_replays_draw_on_a_budget_per_socket(asks: list[tuple[int, float]], allowed: list[bool]) -> None:
    """Resuming from far back again and again gets snapshots once the socket's replay budget is spent."""
    watcher, now, got = Watcher(8), 0.0, []
    for count, after in asks:
        now += after
        got.append(watcher.may_replay(count, now))
    assert got == allowed


def test_fetch_is_handed_out_once() -> None:
    """The I/O layer starts one read per need, however many events reveal it."""
    feed = Feed(SCREENING)
    feed.receive_snapshot(5, {}, {}, "on_sale")
    msg(8)(feed)
    assert feed.fetch_to_do() == Fetch(5, "gap")
    msg(9)(feed)
    feed.receive_seq(12)
    assert feed.fetch_to_do() is None
