"""The edge rule on the live socket: ids and `since` are int64 in ASCII digits, JSON depth is
capped, text refuses NUL; each bad handshake or frame gets the documented answer, never a drop."""

from __future__ import annotations

import json

import pytest
import websockets

from seatmap.live.protocol import CLOSE_NOT_FOUND
from seatmap.runtime import Runtime
from tests.support import Server, Viewer, make_screening, quick_users


@pytest.fixture
async def screening(rt: Runtime) -> int:
    return await make_screening(rt, ["SSSS"] * 2)


@pytest.mark.parametrize(
    "screening_id",
    ["9223372036854775808", "9" * 20, "7" * 5000, "0", "abc", "%C2%B2"],
    ids=["2**63", "twenty-9s", "5000-digits", "zero", "letters", "superscript-two"],
)
async def test_screening_id_that_is_no_id_closes_with_4004(server: Server, screening_id: str) -> None:
    """An id no screening can have is an unknown screening: a `not_found` error, then 4004."""
    conn = await websockets.connect(f"{server.ws}/ws/screenings/{screening_id}", max_size=2**20)
    me = Viewer(conn)
    assert (await me.next("error"))["code"] == "not_found"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await me.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == CLOSE_NOT_FOUND


@pytest.mark.parametrize(
    "since", ["%C2%B2", "%D9%A3", "9" * 20, "9223372036854775808", "1" * 5000], ids=str.__len__
)
async def test_since_that_is_not_an_int64_gets_an_error_then_a_snapshot(
    server: Server, screening: int, since: str
) -> None:
    """A `since` in other digits or past int64 gets an `invalid_message` error, then the map."""
    conn = await websockets.connect(f"{server.ws}/ws/screenings/{screening}?since={since}")
    me = Viewer(conn)
    assert (await me.next("error"))["code"] == "invalid_message"
    assert (await me.next("snapshot"))["screening"] == screening
    assert (await me.command(type="ping"))["type"] == "pong"
    await me.close()


@pytest.mark.parametrize(
    ("frame", "code", "path"),
    [
        ("[" * 1000 + "]" * 1000, "malformed_json", None),
        ('{"type":"ping","x":' + "[" * 1000 + "]" * 1000 + "}", "malformed_json", None),
        ('{"type":"ping","ref":' + "[" * 3000, "malformed_json", None),
        ('{"type":"resume","seq":9223372036854775808}', "invalid_message", "$.seq"),
        ('{"type":"hold","seats":["A1","A\\u00002"]}', "invalid_message", "$.seats[1]"),
        ('{"type":"auth","token":"\\u0000"}', "invalid_message", "$.token"),
    ],
    ids=["deep-arrays", "deep-unknown-field", "unclosed", "seq-beyond-int64", "nul-seat", "nul-token"],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_open(
    rt: Runtime, server: Server, screening: int, frame: str, code: str, path: str | None
) -> None:
    """A deeply nested, NUL-carrying or overflowing frame gets an error frame; the socket keeps
    working, nothing is held, and another viewer still gets the next change."""
    (alice,) = await quick_users(rt, 1)
    me = await Viewer.connect(server, screening)
    other = await Viewer.connect(server, screening)
    snap = await me.next("snapshot")
    await other.next("snapshot")
    assert (await me.command(type="auth", token=alice.token))["type"] == "result"
    await me.conn.send(frame)
    error = await me.next("error")
    assert (error["code"], error.get("path")) == (code, path), error
    assert (await me.command(type="ping"))["type"] == "pong"
    held = await me.command(type="hold", ref="h", seats=["B1"])
    assert held["type"] == "result", held
    delta = await other.next("delta")
    assert delta["seq"] == snap["seq"] + 1 and delta["changes"] == [{"seat": "B1", "state": "held"}]
    await me.close()
    await other.close()


async def test_deep_frame_over_the_size_limit_is_still_1009(server: Server, screening: int) -> None:
    """The size limit comes first: a huge nested frame closes with 1009, as any huge frame."""
    me = await Viewer.connect(server, screening)
    await me.next("snapshot")
    await me.conn.send(json.dumps([[[]]] * 10_000))
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await me.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
