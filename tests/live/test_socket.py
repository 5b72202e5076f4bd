"""The live seat map over WebSocket: snapshot, deltas, commands, resume, presence, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
import websockets
from prometheus_client import REGISTRY

from seatmap.accounts.auth import Principal
from seatmap.live.protocol import CLOSE_ABUSE, CLOSE_NOT_FOUND
from seatmap.runtime import Runtime
from tests.support import TIMEOUT_FACTOR, Server, Viewer, make_screening, quick_users


@pytest.fixture
async def screening(rt: Runtime) -> int:
    return await make_screening(rt, ["SSSSSSSSSS"] * 8, ga=[("Floor", 50)])


async def hold(client: httpx.AsyncClient, headers: dict[str, str], screening: int, *seats: str) -> str:
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": list(seats)}, headers=headers
    )
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


async def test_join_gets_snapshot_then_ordered_deltas(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """A viewer sees the current map on joining, then each change with the next seq."""
    alice, bob = await quick_users(rt, 2)
    await hold(client, alice.headers, screening, "A1")
    viewer = await Viewer.connect(server, screening)
    snap = await viewer.next("snapshot")
    assert snap["seats"] == {"A1": "held"}
    assert snap["ga"] == {"Floor": 50}
    assert snap["status"] == "scheduled" and snap["screening"] == screening
    assert snap["viewers"] == 1  # counts itself, before the first presence round
    await hold(client, bob.headers, screening, "B1", "B2")
    delta = await viewer.next("delta")
    assert delta["seq"] == snap["seq"] + 1
    assert sorted(c["seat"] for c in delta["changes"]) == ["B1", "B2"]
    assert {c["state"] for c in delta["changes"]} == {"held"}
    assert delta["ts"] > 1.7e12
    await viewer.close()


async def test_hold_and_release_over_the_socket(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """After `auth`, a socket holds and releases seats; results echo the ref; another viewer sees it."""
    (alice,) = await quick_users(rt, 1)
    other = await Viewer.connect(server, screening)
    await other.next("snapshot")
    me = await Viewer.connect(server, screening)
    await me.next("snapshot")
    refused = await me.command(type="hold", ref="r0", seats=["C1"])
    assert (refused["type"], refused["code"], refused["ref"]) == ("error", "unauthorized", "r0")
    assert (await me.command(type="auth", token=alice.token))["type"] == "result"
    result = await me.command(type="hold", ref="r1", seats=["C1", "C2"])
    assert result["ref"] == "r1" and result["ok"] is True
    assert sorted(result["mine"]) == ["C1", "C2"]
    token = result["hold"]["token"]
    seen = await other.next("delta")
    assert {c["seat"]: c["state"] for c in seen["changes"]} == {"C1": "held", "C2": "held"}
    added = await me.command(type="hold", ref="r2", seats=["C3"], token=token)
    assert sorted(added["mine"]) == ["C1", "C2", "C3"]
    released = await me.command(type="release", ref="r3", token=token, seats=["C1"])
    assert sorted(released["mine"]) == ["C2", "C3"]
    gone = await me.command(type="release", ref="r4", token=token)
    assert gone["released"] is True
    states: dict[str, str] = {}
    for _ in range(3):
        for change in (await other.next("delta"))["changes"]:
            states[change["seat"]] = change["state"]
    assert states == {"C1": "free", "C2": "free", "C3": "free"}
    await me.close()
    await other.close()


async def test_socket_hold_loses_race_with_named_seats(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """A socket hold on a taken seat gets an error naming that seat; the socket stays usable."""
    alice, bob = await quick_users(rt, 2)
    await hold(client, alice.headers, screening, "D4")
    me = await Viewer.connect(server, screening)
    await me.next("snapshot")
    await me.command(type="auth", token=bob.token)
    error = await me.command(type="hold", ref="x", seats=["D3", "D4"])
    assert (error["code"], error["seats"], error["ref"]) == ("seat_taken", ["D4"], "x")
    assert (await me.command(type="ping", ref="p"))["type"] == "pong"
    await me.close()


async def test_socket_error_carries_every_detail_the_rest_error_has(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """A seat lost over the socket says which were taken and which blocked, exactly as REST does."""
    alice, bob = await quick_users(rt, 2)
    await hold(client, alice.headers, screening, "E4")
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["E3", "E4"]}, headers=bob.headers
    )
    assert r.status_code == 409
    rest = r.json()["error"]
    assert (rest["taken"], rest["blocked"]) == (["E4"], [])
    me = await Viewer.connect(server, screening)
    await me.next("snapshot")
    await me.command(type="auth", token=bob.token)
    error = await me.command(type="hold", ref="y", seats=["E3", "E4"])
    assert error == {"type": "error", "ref": "y", **rest}
    await me.close()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "malformed_json"),
        ('{"type":"dance"}', "unknown_type"),
        ('{"seats":["A1"]}', "unknown_type"),
        ('{"type":"hold","seats":"A1"}', "invalid_message"),
        ('{"type":"resume","seq":-1}', "invalid_message"),
        ('{"type":"hold","seats":["A1"],"extra":1}', "invalid_message"),
        ("[1,2,3]", "invalid_message"),
    ],
)
async def test_invalid_messages_get_errors_and_socket_stays_open(
    rt: Runtime, server: Server, screening: int, frame: str, code: str
) -> None:
    """Garbage gets a documented error message; the socket keeps working and nothing changes."""
    (alice,) = await quick_users(rt, 1)
    me = await Viewer.connect(server, screening)
    snap = await me.next("snapshot")
    await me.command(type="auth", token=alice.token)
    await me.conn.send(frame)
    error = await me.next("error")
    assert error["code"] == code, error
    assert (await me.command(type="ping"))["type"] == "pong"
    fresh = await Viewer.connect(server, screening)
    assert (await fresh.next("snapshot"))["seq"] == snap["seq"]
    await me.close()
    await fresh.close()


async def test_binary_frames_and_huge_holds_are_refused(rt: Runtime, server: Server, screening: int) -> None:
    """Binary frames and a 1,000-seat hold get errors, and nothing is held."""
    (alice,) = await quick_users(rt, 1)
    me = await Viewer.connect(server, screening)
    snap = await me.next("snapshot")
    await me.command(type="auth", token=alice.token)
    await me.conn.send(b'{"type":"ping"}')
    assert (await me.next("error"))["code"] == "text_only"
    error = await me.command(type="hold", seats=[f"A{i}" for i in range(1000)])
    assert error["code"] == "too_many_seats"
    error = await me.command(type="hold", seats=["Q99"])
    assert (error["code"], error["seats"]) == ("unknown_seats", ["Q99"])
    fresh = await Viewer.connect(server, screening)
    assert (await fresh.next("snapshot"))["seats"] == snap["seats"] == {}
    await me.close()
    await fresh.close()


async def test_oversized_frame_closes_with_1009(server: Server, screening: int) -> None:
    """A frame over the size limit closes the socket with 1009 (message too big)."""
    me = await Viewer.connect(server, screening)
    await me.next("snapshot")
    await me.conn.send(json.dumps({"type": "ping", "ref": "x" * 20_000}))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await me.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_flooding_is_rate_limited_then_closed(server: Server, screening: int) -> None:
    """Too many commands get `rate_limited` errors; a client that keeps flooding is closed with 4008."""
    me = await Viewer.connect(server, screening)
    await me.next("snapshot")
    for _ in range(200):
        await me.send(type="ping")
    codes: list[str] = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            message = await me.recv()
            if message["type"] == "error":
                codes.append(message["code"])
    assert "rate_limited" in codes
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_ABUSE


async def test_foreign_origin_is_refused(server: Server, screening: int) -> None:
    """A page on another site cannot open the socket (handshake refused with 403)."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        await Viewer.connect(server, screening, origin=websockets.Origin("https://evil.example"))
    assert refused.value.response.status_code == 403
    same = await Viewer.connect(server, screening, origin=websockets.Origin(server.http))
    await same.next("snapshot")
    await same.close()


async def test_unknown_screening_closes_with_4004(server: Server) -> None:
    """Watching a screening that does not exist says so and closes with 4004."""
    me = await Viewer.connect(server, 987654)
    assert (await me.next("error"))["code"] == "not_found"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await me.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_NOT_FOUND


async def test_resume_replays_exactly_the_missed_changes(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """A viewer away for 50 changes gets exactly those 50, in order, on resume."""
    users = await quick_users(rt, 25)
    viewer = await Viewer.connect(server, screening)
    last = (await viewer.next("snapshot"))["seq"]
    await viewer.close()
    tokens = []
    for i, user in enumerate(users):
        tokens.append(await hold(client, user.headers, screening, f"{'ABCDEFGH'[i % 8]}{i // 8 + 1}"))
    for user, token in zip(users, tokens, strict=True):
        assert (await client.delete(f"/api/holds/{token}", headers=user.headers)).status_code == 204
    back = await Viewer.connect(server, screening, since=last)
    replayed = [await back.next("delta") for _ in range(50)]
    assert [d["seq"] for d in replayed] == list(range(last + 1, last + 51))
    assert [c["state"] for d in replayed for c in d["changes"]] == ["held"] * 25 + ["free"] * 25
    with pytest.raises(TimeoutError):
        await back.next("delta", within=0.3)
    # Mid-connection `resume` from an older point replays again, without duplicates after it.
    await back.send(type="resume", seq=last + 45)
    again = [await back.next("delta") for _ in range(5)]
    assert [d["seq"] for d in again] == list(range(last + 46, last + 51))
    await back.close()


async def test_resume_from_beyond_the_log_gets_a_snapshot(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """A `since` the recovery log no longer reaches (or never had) yields a fresh snapshot."""
    (alice,) = await quick_users(rt, 1)
    await hold(client, alice.headers, screening, "H1")
    before = REGISTRY.get_sample_value("seatmap_resyncs_total", {"reason": "resume"}) or 0
    old = await Viewer.connect(server, screening, since=1)
    snap = await old.next("snapshot")
    assert snap["seats"] == {"H1": "held"}
    future = await Viewer.connect(server, screening, since=snap["seq"] + 1000)
    assert (await future.next("snapshot"))["seq"] == snap["seq"]
    assert REGISTRY.get_sample_value("seatmap_resyncs_total", {"reason": "resume"}) == before + 2
    await old.close()
    await future.close()


async def test_presence_counts_viewers(server: Server, screening: int) -> None:
    """Viewers are told how many people are watching, at most once a second (and so is /metrics)."""
    await _settled("seatmap_sockets_open")
    before = REGISTRY.get_sample_value("seatmap_sockets_open") or 0
    first = await Viewer.connect(server, screening)
    await first.next("snapshot")
    second = await Viewer.connect(server, screening)
    await second.next("snapshot")
    assert REGISTRY.get_sample_value("seatmap_sockets_open") == before + 2
    async with asyncio.timeout(5):
        while True:
            message = await first.recv(within=3)
            if message["type"] == "presence" and message["viewers"] == 2:
                break
    await second.close()
    async with asyncio.timeout(5):
        while True:
            message = await first.recv(within=3)
            if message["type"] == "presence" and message["viewers"] == 1:
                break
    presences = [m for m in first.messages if m["type"] == "presence"]
    assert len(presences) <= 4
    assert REGISTRY.get_sample_value("seatmap_sockets_open") == before + 1
    await first.close()


async def _settled(name: str) -> None:
    """Until a gauge stops moving: sockets of earlier tests may still be closing."""
    last = REGISTRY.get_sample_value(name)
    for _ in range(20):
        await asyncio.sleep(0.05)
        now = REGISTRY.get_sample_value(name)
        if now == last:
            return
        last = now


async def test_cookie_session_can_hold(rt: Runtime, server: Server, screening: int) -> None:
    """A browser with the session cookie can hold without an `auth` message."""
    (alice,) = await quick_users(rt, 1)
    me = await Viewer.connect(server, screening, additional_headers={"Cookie": f"sm_access={alice.token}"})
    await me.next("snapshot")
    result = await me.command(type="hold", ref="c", seats=["A5"])
    assert result["type"] == "result" and result["mine"] == ["A5"]
    await me.close()


async def test_screening_state_is_rebuilt_after_redis_loses_it(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """After Redis forgets a screening, blocked seats come back from PostgreSQL and seqs move forward."""
    viewer = await Viewer.connect(server, screening)
    before = (await viewer.next("snapshot"))["seq"]
    await viewer.close()
    async with rt.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO seat_blocks (screening_id, seat_label, reason) VALUES ($1, 'E5', 'broken')",
            screening,
        )
    keys = [k async for k in rt.redis.scan_iter(match=f"{rt.settings.redis_prefix}:*")]
    await rt.redis.delete(*keys)
    again = await Viewer.connect(server, screening, since=before)
    snap = await again.next("snapshot")
    assert snap["seats"] == {"E5": "blocked"}
    assert snap["seq"] > before
    (alice,) = await quick_users(rt, 1)
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["E5"]}, headers=alice.headers
    )
    assert (r.status_code, r.json()["error"]["seats"]) == (409, ["E5"])
    await again.close()


async def test_screening_detail_shows_live_seats_and_status_changes_reach_viewers(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """The REST detail carries the live map; an admin unpublishing it tells viewers and stops holds."""
    from tests.support import logged_in

    (alice,) = await quick_users(rt, 1)
    await hold(client, alice.headers, screening, "G1", "G2")
    detail = (await client.get(f"/api/screenings/{screening}")).json()
    assert detail["seats"] == {"G1": "held", "G2": "held"}
    assert [(a["name"], a["remaining"]) for a in detail["ga"]] == [("Floor", 50)]
    viewer = await Viewer.connect(server, screening, since=detail["seq"])
    admin = await logged_in(rt, client, "admin")
    client.cookies.clear()
    r = await client.patch(
        f"/api/admin/screenings/{screening}", json={"status": "draft"}, headers=admin.headers
    )
    assert r.status_code == 200, r.text
    status = await viewer.next("status")
    assert status["status"] == "draft" and status["seq"] == detail["seq"] + 1
    (bob,) = await quick_users(rt, 1)
    r = await client.post(
        "/api/holds", json={"screening_id": screening, "seats": ["H1"]}, headers=bob.headers
    )
    assert (r.status_code, r.json()["error"]["reason"]) == (409, "draft")
    await viewer.close()


async def test_a_batching_client_gets_the_same_messages_in_fewer_frames(
    rt: Runtime, server: Server, client: httpx.AsyncClient, screening: int
) -> None:
    """With `?batch=1`, what queues up for a socket arrives packed; nothing is lost, reordered or doubled.

    The 80 changes are made at once (their scripts go to Redis in one pipeline and are
    published back to back), so they queue behind each other on every socket: the plain
    viewer gets one frame per delta, the batching one far fewer frames with the same deltas.
    """
    users = await quick_users(rt, 40)
    assert server.runtime is not None
    holds = server.runtime.holds
    plain = await Viewer.connect(server, screening)
    packed = await Viewer.connect(server, screening, batch=True)
    start = (await plain.next("snapshot"))["seq"]
    assert (await packed.next("snapshot"))["seq"] == start
    who = [Principal(user_id=u.id, role="customer", jti="x", expires_at=0) for u in users]
    # Pairs from the aisle (A1-A2, A3-A4, …): in any order, no seat is left alone between holds.
    pairs = [[f"{'ABCDEFGH'[i // 5]}{2 * (i % 5) + n}" for n in (1, 2)] for i in range(40)]
    made = await asyncio.gather(*(holds.create(p, screening, s) for p, s in zip(who, pairs, strict=True)))
    await asyncio.gather(*(holds.release(p, h.token) for p, h in zip(who, made, strict=True)))
    expected = list(range(start + 1, start + 81))
    got = {}
    for name, viewer in (("plain", plain), ("packed", packed)):
        got[name] = [await viewer.next("delta", within=5) for _ in expected]
        assert [d["seq"] for d in got[name]] == expected
        with pytest.raises(TimeoutError):
            await viewer.next("delta", within=0.3)
    assert got["plain"] == got["packed"]
    assert plain.batches == 0
    assert packed.batches >= 1 and packed.frames < plain.frames
    # Resuming from before all of it: the 80 missed deltas come back packed, in order.
    await packed.close()
    back = await Viewer.connect(server, screening, since=start, batch=True)
    assert [(await back.next("delta"))["seq"] for _ in expected] == expected
    assert back.frames == 1
    await back.close()
    # One missed delta comes as itself, not as a batch of one.
    await holds.create(who[0], screening, ["H9", "H10"])
    one = await Viewer.connect(server, screening, since=expected[-1], batch=True)
    assert (await one.next("delta"))["seq"] == expected[-1] + 1
    assert (one.frames, one.batches) == (1, 0)
    await one.close()
    await plain.close()


async def test_a_sustained_flood_below_the_burst_threshold_is_closed(server: Server, screening: int) -> None:
    """Pings at 400/s (a token refills every 100 ms, so a few get through) still end in 4008.

    The strikes used to reset whenever one command was allowed: 2,788 pings got 2,689
    `rate_limited` replies and the socket stayed open. Now refusals only decay at the allowed rate.
    """
    me = await Viewer.connect(server, screening)
    await me.next("snapshot")
    codes: list[str] = []

    async def flood() -> None:
        for _ in range(1600):  # at most 4 s
            await me.send(type="ping")
            await asyncio.sleep(1 / 400)

    async def listen() -> None:
        while True:
            message = await me.recv(within=5)
            if message["type"] == "error":
                codes.append(message["code"])

    sender = asyncio.create_task(flood())
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await listen()
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
        await sender
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_ABUSE
    assert 0 < codes.count("rate_limited") < 200


async def test_repeated_resumes_from_far_back_get_snapshots_not_replays(
    rt: Runtime, server: Server, screening: int
) -> None:
    """Resuming from 590 changes back 10 times a second: one replay, then snapshots (a budget).

    Every resume used to replay all 590 deltas (one frame each): ten sockets doing this got
    271,410 frames for a few hundred bytes sent. The first resume is served exactly; the ones
    that repeat within the budget's refill get one snapshot frame each.
    """
    viewer = await Viewer.connect(server, screening)
    start = (await viewer.next("snapshot"))["seq"]
    for _ in range(295):
        await rt.holds.inventory.block(screening, ["A1"])
        await rt.holds.inventory.unblock(screening, ["A1"])
    last = start + 590
    async with asyncio.timeout(10 * TIMEOUT_FACTOR):
        while not viewer.deltas() or viewer.deltas()[-1]["seq"] < last:
            await viewer.recv()
    frames_before = viewer.frames
    for _ in range(10):
        await viewer.send(type="resume", seq=start)
        await asyncio.sleep(0.1)
    await viewer.send(type="ping", ref="end")
    async with asyncio.timeout(10 * TIMEOUT_FACTOR):
        while (await viewer.recv())["type"] != "pong":
            pass
    frames = viewer.frames - frames_before
    replayed = [m for m in viewer.messages if m["type"] == "delta" and m["seq"] <= last]
    snapshots = [m for m in viewer.messages if m["type"] == "snapshot"]
    assert len(replayed) == 590 * 2  # live, then the first resume exactly
    assert len(snapshots) >= 1 + 8 and all(s["seq"] == last for s in snapshots[1:])
    assert frames < 590 + 20, frames
    await viewer.close()
