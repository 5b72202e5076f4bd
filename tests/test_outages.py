"""Redis or PostgreSQL unreachable: 503 `unavailable`, the connection and the socket survive.

Each test puts its own gate (tests/outages.py) between the server and one backing service and
closes it: connections are refused and cut, as when the server stops, while the machine's
shared servers keep running for everyone else.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import asyncpg
import httpx
import pytest
import redis.exceptions
from websockets.exceptions import ConnectionClosed

from seatmap.errors import RETRYABLE, outage
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.conftest import running, single_redis_only
from tests.outages import gate
from tests.shopping import hold
from tests.support import TIMEOUT_FACTOR, Viewer, make_screening, quick_users


def _local_port(response: httpx.Response) -> int:
    """The client's port of the connection that carried `response`: the same one, or a new one."""
    port: int = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    return port


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    error = response.json()["error"]
    assert error["code"] == "unavailable" and error["retry_after"] == 2, error


async def _until_ok(send: object, within: float = 15.0) -> httpx.Response:
    """The same request again until the service is back (redis-py and asyncpg reconnect lazily)."""
    assert callable(send)
    async with asyncio.timeout(within * TIMEOUT_FACTOR):
        while True:
            response: httpx.Response = await send()
            if response.status_code != 503:
                return response
            await asyncio.sleep(0.1)


BUSY = "another operation ({}) is in progress"


def _caused_by(cause: BaseException) -> Exception:
    try:
        raise RuntimeError("while settling") from cause
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "unavailable"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (redis.exceptions.ConnectionError("Error 111 connecting"), True),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"), True),
        (asyncpg.InterfaceError("cannot call Connection.fetchrow(): connection is closed"), True),
        # A pooled connection still reading the FATAL of a server going down (ERROR_CONSUME).
        (asyncpg.InternalClientError(f"cannot switch to state 12; {BUSY.format(2)}"), True),
        (_caused_by(ConnectionResetError(104, "reset")), True),
        # A Redis Cluster failing over: its primary died, the replica is not promoted yet.
        (redis.exceptions.ClusterDownError("The cluster is down"), True),
        (redis.exceptions.MasterDownError("Link with MASTER is down"), True),
        (redis.exceptions.SlotNotCoveredError('Slot "42" is not covered by the cluster.'), True),
        # A slot mid-migration: redis-py followed TRYAGAIN/ASK until its request TTL ran out.
        (redis.exceptions.ClusterError("TTL exhausted."), True),
        # A script touching two slots is our bug.
        (redis.exceptions.ClusterCrossSlotError("Keys in request don't hash to the same slot"), False),
        # Our bugs stay 500s: a connection used by two tasks, a bad statement, a plain OSError.
        (asyncpg.InterfaceError("cannot perform operation: another operation is in progress"), False),
        (asyncpg.InternalClientError(f"cannot switch to state 12; {BUSY.format(11)}"), False),
        (asyncpg.UndefinedColumnError("column x does not exist"), False),
        (PermissionError(13, "Permission denied"), False),
        (ValueError("no"), False),
    ],
)
def test_what_counts_as_an_outage(exc: BaseException, unavailable: bool) -> None:
    assert (outage(exc) is not None) is unavailable
    if unavailable:  # and the background loops go on after it (the worker died of one once)
        assert isinstance(exc, RETRYABLE) or isinstance(exc.__cause__, RETRYABLE), exc


@single_redis_only  # a TCP gate in front of one Redis
async def test_with_redis_down_requests_answer_503_and_the_same_connection_serves_after(
    settings: Settings, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: holds, the seat map and even a token check answer 503 with Retry-After, not
    500; once it is back, the same kept-alive connection is answered normally."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    buyer, viewer_of_orders = await quick_users(rt, 2)  # tokens never checked: no cache helps
    assert settings.redis_url is not None
    async with gate(settings.redis_url) as redis, running(replace(settings, redis_url=redis.url())) as srv:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=srv.http, limits=limits, timeout=10 * TIMEOUT_FACTOR) as client:
            first = await client.get(f"/api/screenings/{screening}")
            assert first.status_code == 200, first.text
            port = _local_port(first)
            await redis.close()
            with caplog.at_level(logging.WARNING):
                for response in (
                    await client.post(
                        "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=buyer.headers
                    ),
                    await client.get(f"/api/screenings/{screening}"),
                    await client.get("/api/orders", headers=viewer_of_orders.headers),
                ):
                    _assert_unavailable(response)
                    assert _local_port(response) == port, "the 503 reset the kept-alive connection"
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "an outage is not a bug"
            await redis.open()
            held = await _until_ok(
                lambda: client.post(
                    "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=buyer.headers
                )
            )
            assert held.status_code == 201, held.text
            orders = await client.get("/api/orders", headers=viewer_of_orders.headers)
            assert orders.status_code == 200, orders.text
            assert _local_port(orders) == port


async def test_with_postgres_down_an_order_answers_503_and_is_made_once_it_is_back(
    settings: Settings, rt: Runtime
) -> None:
    """PostgreSQL down: creating an order answers 503 with Retry-After; once it is back, the same
    connection creates it."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    (buyer,) = await quick_users(rt, 1)
    assert settings.database_url is not None
    async with gate(settings.database_url) as pg, running(replace(settings, database_url=pg.url())) as srv:
        async with httpx.AsyncClient(base_url=srv.http, timeout=10 * TIMEOUT_FACTOR) as client:
            held = await hold(client, buyer, screening, ["A1"])
            headers = {**buyer.headers, "Idempotency-Key": "outage-order-1"}

            def place() -> object:
                return client.post("/api/orders", json={"hold_token": held["token"]}, headers=headers)

            await pg.close()
            during = await place()  # type: ignore[misc]
            _assert_unavailable(during)
            await pg.open()
            made = await _until_ok(place)
            assert made.status_code == 201, made.text
            assert _local_port(made) == _local_port(during)


@single_redis_only  # a TCP gate in front of one Redis
async def test_a_socket_hold_during_a_redis_outage_answers_unavailable_and_the_socket_stays(
    settings: Settings, rt: Runtime
) -> None:
    """A `hold` over the socket while Redis is down gets an `unavailable` error (with
    `retry_after`) for its ref, not a close; the same socket holds the seat once Redis is back."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    (buyer,) = await quick_users(rt, 1)
    assert settings.redis_url is not None
    async with gate(settings.redis_url) as redis, running(replace(settings, redis_url=redis.url())) as srv:
        viewer = await Viewer.connect(srv, screening)
        try:
            await viewer.next("snapshot")
            assert (await viewer.command(type="auth", token=buyer.token))["type"] == "result"
            await redis.close()
            refused = await viewer.command(type="hold", ref="h1", seats=["A1"], within=10)
            assert refused["type"] == "error", refused
            assert (refused["code"], refused["ref"], refused["retry_after"]) == ("unavailable", "h1", 2)
            await redis.open()
            async with asyncio.timeout(15 * TIMEOUT_FACTOR):
                while True:
                    reply = await viewer.command(type="hold", ref="h2", seats=["A1"], within=10)
                    if reply.get("code") != "unavailable":
                        break
                    await asyncio.sleep(0.2)
            assert reply["type"] == "result" and reply["mine"] == ["A1"], reply
        finally:
            await viewer.close()


@single_redis_only  # a TCP gate in front of one Redis
async def test_a_socket_that_cannot_load_its_map_is_told_to_come_back(
    settings: Settings, rt: Runtime
) -> None:
    """Connecting while Redis is down: an `unavailable` error, then close 1013 (try again later),
    which tells the client to reconnect; never the 1000 that says nothing is wrong."""
    screening = await make_screening(rt, ["S" * 10], strand_rule=False)
    assert settings.redis_url is not None
    async with gate(settings.redis_url) as redis, running(replace(settings, redis_url=redis.url())) as srv:
        await redis.close()
        viewer = await Viewer.connect(srv, screening)
        try:
            frame = await viewer.recv(within=10)
            assert frame["type"] == "error" and frame["code"] == "unavailable", frame
            with pytest.raises(ConnectionClosed) as closed:
                await viewer.recv(within=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        finally:
            await viewer.close()
