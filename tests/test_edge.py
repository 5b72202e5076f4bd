"""The edge rule, over HTTP: integers are int64 in ASCII digits, text refuses NUL, JSON depth is
capped, and an unexpected error answers 500 JSON on a connection that stays usable.

Each row is one reproduction from the hardening issue: today's answer was a 500 (or a dropped
connection); the row says what the user gets instead.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec.inspect as mi
import pytest
from starlette.convertors import IntegerConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from seatmap.api import INT64_MAX, INT64_MIN, Int64Convertor, ascii_int
from seatmap.app import create_app
from seatmap.live.protocol import ClientMessage
from seatmap.runtime import Runtime
from seatmap.sales.gateway import SIGNATURE_HEADER
from seatmap.settings import Settings
from tests.conftest import running, shared_per_module
from tests.support import TIMEOUT_FACTOR, User, make_screening, quick_users

Json = dict[str, Any]
BEYOND = "9223372036854775808"  # 2**63: one past the largest bigint
TWENTY_NINES = "9" * 20
HUGE = "7" * 5000  # also past Python's 4,300-digit int() limit


def cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# Every row is a request the edge refuses, so the rows share one server (conftest.py).
settings, rt, server, client = shared_per_module()


@pytest.fixture(scope="module")
async def users(rt: Runtime) -> dict[str, User]:
    return {role: (await quick_users(rt, 1, role))[0] for role in ("customer", "staff", "admin")}


async def call(
    client: httpx.AsyncClient, users: dict[str, User], as_: str | None, method: str, path: str, **kw: Any
) -> httpx.Response:
    headers = users[as_].headers if as_ else {}
    return await client.request(method, path, headers={**headers, **kw.pop("headers", {})}, **kw)


def error(response: httpx.Response) -> Json:
    assert response.headers["content-type"] == "application/json", response.text
    found: Json = response.json()["error"]
    return found


# ---- integers beyond int64, and digits that are not ASCII --------------------------------------

PATH_IDS: list[tuple[str | None, str, str]] = [
    (None, "GET", f"/api/cinemas/{TWENTY_NINES}"),
    (None, "GET", f"/api/cinemas/{HUGE}"),
    (None, "GET", f"/api/cinemas/{BEYOND}/auditoriums"),
    (None, "GET", f"/api/auditoriums/{BEYOND}"),
    (None, "GET", f"/api/screenings/{BEYOND}"),
    (None, "GET", f"/api/screenings/{HUGE}"),
    (None, "GET", f"/api/screenings/{BEYOND}/suggestion?count=2"),
    (None, "GET", f"/api/movies/{TWENTY_NINES}"),
    ("customer", "GET", f"/api/orders/{TWENTY_NINES}"),
    ("customer", "POST", f"/api/orders/{TWENTY_NINES}/cancel"),
    ("customer", "POST", f"/api/orders/{TWENTY_NINES}/refund"),
    ("customer", "POST", f"/api/orders/{BEYOND}/payments"),
    ("admin", "DELETE", f"/api/admin/cinemas/{BEYOND}"),
    ("admin", "PATCH", f"/api/admin/movies/{BEYOND}"),
    ("admin", "POST", f"/api/admin/screenings/{BEYOND}/cancel"),
    ("admin", "GET", f"/api/admin/screenings/{BEYOND}/blocks"),
    ("admin", "POST", f"/api/admin/refunds/{HUGE}/retry"),
]


@pytest.mark.parametrize(("as_", "method", "path"), PATH_IDS)
async def test_path_ids_beyond_int64_are_not_found(
    client: httpx.AsyncClient, users: dict[str, User], as_: str | None, method: str, path: str
) -> None:
    """An id no bigint can hold names nothing: 404 `not_found`, as for any unknown id."""
    response = await call(
        client, users, as_, method, path, json={"title": "x"} if method == "PATCH" else None
    )
    assert response.status_code == 404, response.text
    assert error(response)["code"] == "not_found"


async def test_largest_id_is_still_an_id(client: httpx.AsyncClient) -> None:
    """2**63-1 is a valid id (nothing has it yet): the endpoint itself says 404."""
    response = await client.get("/api/cinemas/9223372036854775807")
    assert response.status_code == 404
    assert error(response)["code"] == "not_found"


QUERY_INTS: list[tuple[str | None, str, str]] = [
    (None, f"/api/cinemas?cursor={cursor(TWENTY_NINES)}", "$.cursor"),
    (None, "/api/cinemas?cursor=wrI=", "$.cursor"),  # "²": str.isdigit() says yes, int() says no
    (None, f"/api/movies?cursor={cursor('٣')}", "$.cursor"),  # an Arabic-Indic three
    (None, f"/api/screenings?cursor={cursor('1|' + TWENTY_NINES)}", "$.cursor"),
    (None, f"/api/screenings?cursor={cursor('²|1')}", "$.cursor"),
    (None, f"/api/screenings?cinema={TWENTY_NINES}", "$.cinema"),
    (None, "/api/cinemas?limit=%D9%A3", "$.limit"),  # int("٣") is 3
    (None, f"/api/cinemas?limit={HUGE}", "$.limit"),
    ("customer", f"/api/orders?cursor={cursor(TWENTY_NINES)}", "$.cursor"),
    ("customer", "/api/orders?cursor=wrI=", "$.cursor"),
    ("customer", f"/api/notifications?cursor={cursor(TWENTY_NINES)}", "$.cursor"),
    ("admin", f"/api/admin/users?cursor={cursor(TWENTY_NINES)}", "$.cursor"),
    ("admin", "/api/admin/users?cursor=wrI=", "$.cursor"),
    ("admin", f"/api/admin/refunds?cursor={cursor(TWENTY_NINES)}", "$.cursor"),
]


@pytest.mark.parametrize(("as_", "path", "field"), QUERY_INTS)
async def test_query_integers_are_int64_in_ascii_digits(
    client: httpx.AsyncClient, users: dict[str, User], as_: str | None, path: str, field: str
) -> None:
    """A cursor or number past int64, or written in other digits, is 422 naming the parameter."""
    response = await call(client, users, as_, "GET", path)
    assert response.status_code == 422, response.text
    assert (error(response)["code"], error(response)["path"]) == ("invalid_input", field)


@pytest.fixture(scope="module")
async def screening(rt: Runtime) -> int:
    return await make_screening(rt, ["SSSS"] * 2)


BODY_INTS: list[tuple[str, str, Json, str]] = [
    ("customer", "/api/holds", {"screening_id": int(BEYOND), "seats": ["A1"]}, "$.screening_id"),
    ("customer", "/api/holds", {"screening_id": int(TWENTY_NINES), "seats": ["A1"]}, "$.screening_id"),
    (
        "admin",
        "/api/admin/screenings",
        {
            "auditorium_id": int(BEYOND),
            "movie_id": 1,
            "starts_at": "2030-01-10T19:00:00+07:00",
            "prices": {"standard": 1},
        },
        "$.auditorium_id",
    ),
    (
        "admin",
        "/api/admin/screenings",
        {"auditorium_id": 1, "movie_id": int(BEYOND), "starts_at": "2030-01-10T19:00:00+07:00", "prices": {}},
        "$.movie_id",
    ),
    ("admin", "/api/admin/screenings/1", {"movie_id": int(BEYOND)}, "$.movie_id"),
    (
        "staff",
        "/api/boxoffice/sales",
        {"screening_id": int(BEYOND), "payment_method": "cash"},
        "$.screening_id",
    ),
    ("staff", "/api/tickets/ABCDEFGHIJKLMNOPQ/check-in", {"screening_id": int(BEYOND)}, "$.screening_id"),
]


@pytest.mark.parametrize(("as_", "path", "body", "field"), BODY_INTS)
async def test_body_ids_beyond_int64_are_invalid_input(
    client: httpx.AsyncClient, users: dict[str, User], as_: str, path: str, body: Json, field: str
) -> None:
    """An id past int64 in a JSON body is 422 `invalid_input` naming the field."""
    method = "PATCH" if path == "/api/admin/screenings/1" else "POST"
    response = await call(client, users, as_, method, path, json=body)
    assert response.status_code == 422, response.text
    assert (error(response)["code"], error(response)["path"]) == ("invalid_input", field)


@pytest.mark.parametrize(
    "header",
    [b"t=\xb2,v1=00", b"t=" + b"1" * 5000 + b",v1=00", b"t=\xd9\xa3,v1=00", b"t=-5,v1=00"],
    ids=["superscript-two", "5000-digits", "arabic-indic-three", "negative"],
)
async def test_webhook_timestamp_that_is_not_ascii_digits_is_a_bad_signature(
    client: httpx.AsyncClient, header: bytes
) -> None:
    """An unsigned caller sending a strange `t=` gets 400 `invalid_signature` (malformed), not a 500."""
    response = await client.post(
        "/api/payments/webhooks/simulated",
        content=b'{"id":"evt_1"}',
        headers={SIGNATURE_HEADER.encode(): header, b"content-type": b"application/json"},
    )
    assert response.status_code == 400, response.text
    assert (error(response)["code"], error(response)["reason"]) == ("invalid_signature", "malformed")


# ---- NUL in text ----------------------------------------------------------------------------

NUL_QUERIES: list[tuple[str | None, str, str]] = [
    (None, "/api/cinemas?city=a%00b", "$.city"),
    (None, "/api/screenings?city=a%00b", "$.city"),
    (None, "/api/movies?q=a%00b", "$.q"),
    (None, "/api/screenings/1/suggestion?count=1&category=a%00", "$.category"),
    ("admin", "/api/admin/users?role=%00", "$.role"),
    ("admin", "/api/admin/refunds?status=x%00", "$.status"),
]


@pytest.mark.parametrize(("as_", "path", "field"), NUL_QUERIES)
async def test_nul_in_a_query_parameter_is_invalid_input(
    client: httpx.AsyncClient, users: dict[str, User], as_: str | None, path: str, field: str
) -> None:
    """A NUL in any query parameter is 422 `invalid_input` naming it (PostgreSQL refuses NUL)."""
    response = await call(client, users, as_, "GET", path)
    assert response.status_code == 422, response.text
    assert (error(response)["code"], error(response)["path"]) == ("invalid_input", field)


NUL_BODIES: list[tuple[str | None, str, Json, str]] = [
    (None, "/api/auth/register", {"email": "a\0b@example.com", "password": "x" * 12, "name": "A"}, "$.email"),
    (None, "/api/auth/register", {"email": "nul@example.com", "password": "x" * 12, "name": "A\0"}, "$.name"),
    (None, "/api/auth/login", {"email": "a\0b@example.com", "password": "x" * 12}, "$.email"),
    (None, "/api/auth/verify", {"email": "a\0b@example.com", "code": "123456"}, "$.email"),
    (None, "/api/auth/verify/resend", {"email": "a\0b@example.com"}, "$.email"),
    (
        "customer",
        "/api/orders",
        {"hold_token": "1.abcdefghijklmnopq", "holder_names": ["A", "B\0"]},
        "$.holder_names[1]",
    ),
    ("admin", "/api/admin/cinemas", {"name": "X", "city": "\0", "timezone": "Asia/Jakarta"}, "$.city"),
    ("admin", "/api/admin/movies", {"title": "Film\0", "duration_minutes": 90}, "$.title"),
]


@pytest.mark.parametrize(("as_", "path", "body", "field"), NUL_BODIES)
async def test_nul_in_a_json_string_is_invalid_input(
    client: httpx.AsyncClient, users: dict[str, User], as_: str | None, path: str, body: Json, field: str
) -> None:
    """A NUL (`\\u0000`) in any string of a JSON body is 422 `invalid_input` naming the field."""
    response = await call(client, users, as_, "POST", path, json=body, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 422, response.text
    assert (error(response)["code"], error(response)["path"]) == ("invalid_input", field)


async def test_nul_in_box_office_holder_names_is_invalid_input(
    client: httpx.AsyncClient, users: dict[str, User], screening: int
) -> None:
    """A till sale naming a holder with a NUL is 422 naming the name; nothing is sold."""
    body = {"screening_id": screening, "payment_method": "cash", "seats": ["A1"], "holder_names": ["\0"]}
    response = await call(client, users, "staff", "POST", "/api/boxoffice/sales", json=body)
    assert response.status_code == 422, response.text
    assert (error(response)["code"], error(response)["path"]) == ("invalid_input", "$.holder_names[0]")
    assert (await client.get(f"/api/screenings/{screening}")).json()["seats"] == {}


async def test_an_escaped_backslash_before_u0000_is_just_text(
    client: httpx.AsyncClient, users: dict[str, User]
) -> None:
    """`\\\\u0000` in JSON is a backslash and `u0000`, not a NUL: the movie is created with it."""
    body = b'{"title": "A \\\\u0000 B", "duration_minutes": 90}'
    response = await call(
        client, users, "admin", "POST", "/api/admin/movies", content=body,
        headers={"content-type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "A \\u0000 B"


# ---- deep JSON ------------------------------------------------------------------------------

DEEP: list[tuple[str, bytes]] = [
    ("arrays", b"[" * 1000 + b"]" * 1000),
    ("unknown-field", b'{"email":"a@b.c","password":"x","x":' + b"[" * 1000 + b"]" * 1000 + b"}"),
    ("objects", b'{"x":' + b'{"a":' * 1000 + b"1" + b"}" * 1001),
    ("unclosed", b'{"x":' + b"[" * 2000),
]


@pytest.mark.parametrize("body", [b for _, b in DEEP], ids=[n for n, _ in DEEP])
async def test_deeply_nested_json_is_malformed(client: httpx.AsyncClient, body: bytes) -> None:
    """A 2 KB login body of 1,000 nested arrays is 400 `malformed_json`, with no login needed."""
    response = await client.post(
        "/api/auth/login", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert error(response)["code"] == "malformed_json"


async def test_brackets_inside_strings_are_not_nesting(
    client: httpx.AsyncClient, users: dict[str, User]
) -> None:
    """A title made of 2,000 brackets is text, not depth: the movie is created."""
    title = "[{" * 100
    response = await call(
        client, users, "admin", "POST", "/api/admin/movies", json={"title": title, "duration_minutes": 90}
    )
    assert response.status_code == 201, response.text
    assert response.json()["title"] == title


# ---- the 500 path ---------------------------------------------------------------------------


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: (status, body); raises if it was dropped."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    assert "close" not in fields.get("connection", "").lower()
    return status, await reader.readexactly(int(fields["content-length"]))


async def test_unexpected_error_answers_500_json_and_keeps_the_connection(
    settings: Settings, rt: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug answers 500 `internal_error` as JSON, logged once, and the next request on the same
    kept-alive connection is served."""

    async def boom(request: Request) -> Response:
        raise RuntimeError("a bug")

    app = create_app(settings)
    app.router.routes.insert(0, Route("/api/boom", boom))
    async with running(app) as server:
        host, port = server.http.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            async with asyncio.timeout(5 * TIMEOUT_FACTOR):
                with caplog.at_level(logging.ERROR):
                    status, body = await _exchange(reader, writer, "/api/boom")
                assert (status, body) == (
                    500,
                    b'{"error":{"code":"internal_error","message":"Something went wrong on our side."}}',
                )
                status, _ = await _exchange(reader, writer, "/healthz")
                assert status == 200
        finally:
            writer.close()
    logged = [r for r in caplog.records if r.exc_info and "a bug" in str(r.exc_info[1])]
    assert len(logged) == 1, [r.getMessage() for r in logged]


# ---- the rule holds for every route and every body ------------------------------------------


def _walk(info: mi.Type, path: str, seen: set[type]) -> Iterator[tuple[str, mi.Type]]:
    """Every int and str type reachable from `info`, with where it is."""
    if isinstance(info, mi.IntType | mi.StrType):
        yield path, info
    elif isinstance(info, mi.StructType):
        if info.cls not in seen:
            seen.add(info.cls)
            for field in info.fields:
                yield from _walk(field.type, f"{info.cls.__qualname__}.{field.name}", seen)
    elif isinstance(info, mi.UnionType):
        for member in info.types:
            yield from _walk(member, path, seen)
    elif isinstance(info, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        yield from _walk(info.item_type, f"{path}[]", seen)
    elif isinstance(info, mi.DictType):
        yield from _walk(info.key_type, f"{path}{{key}}", seen)
        yield from _walk(info.value_type, f"{path}{{value}}", seen)
    elif isinstance(info, mi.TupleType):
        for member in info.item_types:
            yield from _walk(member, f"{path}()", seen)


def _routes(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        yield route
        if isinstance(route, Mount):
            yield from _routes(route.routes)


# Prices are checked against MAX_PRICE by the endpoint (to name `$.prices.<category>`).
UNBOUNDED_BY_DESIGN = {"ScreeningIn.prices{value}", "ScreeningPatch.prices{value}"}


def _int64(info: mi.IntType) -> bool:
    high = info.le if info.le is not None else None if info.lt is None else info.lt - 1
    low = info.ge if info.ge is not None else None if info.gt is None else info.gt + 1
    return high is not None and low is not None and INT64_MIN <= low and high <= INT64_MAX


def test_every_body_integer_is_int64(settings: Settings) -> None:
    """Every integer a request body or socket message may carry is bounded to int64, so none can
    overflow a bigint in PostgreSQL (a 500) whatever route a colleague adds."""
    bodies: list[Any] = [ClientMessage]
    for route in _routes(create_app(settings).routes):
        doc = getattr(getattr(route, "endpoint", None), "__openapi__", None)
        if doc is not None and doc.body is not None:
            bodies.append(doc.body)
    assert len(bodies) > 20
    seen: set[type] = set()
    unbounded = [
        path
        for body in bodies
        for path, info in _walk(mi.type_info(body), "$", seen)
        if isinstance(info, mi.IntType) and path not in UNBOUNDED_BY_DESIGN and not _int64(info)
    ]
    assert unbounded == []


def test_every_int_path_parameter_is_bounded(settings: Settings) -> None:
    """Every `{…:int}` of every route is our int64 convertor: none is Starlette's unbounded one."""
    convertors = [
        conv
        for route in _routes(create_app(settings).routes)
        for conv in getattr(route, "param_convertors", {}).values()
        if isinstance(conv, IntegerConvertor)
    ]
    assert len(convertors) > 20
    assert all(isinstance(conv, Int64Convertor) for conv in convertors)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0), ("42", 42), ("007", 7), (str(INT64_MAX), INT64_MAX), (BEYOND, None),
        (TWENTY_NINES, None), (HUGE, None), ("", None), ("²", None), ("٣", None), ("-1", None),
        ("+1", None), (" 1", None), ("1_000", None), ("1.0", None),
    ],
)  # fmt: skip
def test_ascii_int_reads_ascii_digits_only(text: str, value: int | None) -> None:
    """The one parser of integers in text: ASCII digits up to int64, nothing else."""
    assert ascii_int(text) == value
    assert (re.fullmatch(Int64Convertor.regex, text) is not None) == (value is not None)


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({"content-length": "0"}, 400, "malformed_json"),  # an empty body, not a too large one
    ],
)
async def test_a_declared_body_length_is_read_as_what_it_says(
    client: httpx.AsyncClient, headers: dict[str, str], status: int, code: str
) -> None:
    """Content-Length 0 is an empty body (400, it needs JSON); only a length over the limit is 413."""
    request = client.build_request("POST", "/api/auth/login", headers={"content-type": "application/json"})
    request.headers.update(headers)
    response = await client.send(request)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
