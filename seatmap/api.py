"""The conventions of our JSON API: msgspec-validated bodies, JSON responses, cursors.

Every endpoint reads its body with `read_body(request, Struct)`, so bad input always ends up
as the same 4xx JSON error before any state is touched, and answers with `respond(...)`,
which encodes with msgspec (no second serialiser, no dict copies of the structs).

The edge rule, so that nothing a client sends reaches PostgreSQL in a shape it refuses (a 500):

- every integer is an int64: ids in bodies are `Id`, other counts `Int64` or tighter; path ids
  go through our `int` convertor (registered here, before any route is built), which matches
  only ASCII digits up to 2**63-1, so a larger id matches no route and is a 404;
- every integer read from text (query, cursor, header) goes through `ascii_int`: ASCII digits
  only, bounded in length (Python's `int()` also reads `٣`, and `str.isdigit()` says yes to `²`,
  which `int()` then refuses);
- no text holds a NUL (PostgreSQL refuses it): `decode` refuses it in any JSON string, naming
  the field, and `QueryGuard` in any query parameter, naming it; both 422 `invalid_input`;
- JSON nests at most `MAX_DEPTH` deep (msgspec recurses, and skipping an unknown field of
  1,000 nested arrays overflows the stack): deeper is 400 `malformed_json`, before decoding.
"""

from __future__ import annotations

import array
import base64
import binascii
import itertools
import re
from collections.abc import Callable
from typing import Annotated, Any, Final, TypeVar
from urllib.parse import parse_qsl

import msgspec
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from seatmap.errors import (
    InvalidInput,
    MalformedJSON,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    error_response,
)

T = TypeVar("T")
E = TypeVar("E", bound=Callable[..., Any])  # an endpoint, kept typed through @documented

MAX_BODY: Final = 1024 * 1024
INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)
MAX_DEPTH: Final = 32  # our deepest body (a layout's GA areas) nests 4 deep

Id = Annotated[int, msgspec.Meta(ge=1, le=INT64_MAX)]  # every id read from a JSON body
Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]  # any other bigint column


def ascii_int(text: str, *, maximum: int = INT64_MAX) -> int | None:
    """The integer `text` writes in 1 to 19 ASCII digits, if it is at most `maximum`; else None.

    The one parser for integers read from text (query parameters, cursors, headers): no sign,
    no spaces, no underscores, no other script's digits, never more than an int64's 19 digits.
    """
    if not 0 < len(text) <= 19 or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= maximum else None


def _at_most(limit: int) -> str:
    """A regex of the ASCII numbers from 0 to `limit`, leading zeros allowed, e.g. for 259:
    `0*(?:[0-9]{1,2}|[0-1][0-9]{2}|2[0-4][0-9]|25[0-9])`."""
    digits = str(limit)
    options = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    for i, d in enumerate(digits):
        rest = len(digits) - i - 1
        if i == len(digits) - 1:
            options.append(f"{digits[:i]}[0-{d}]")
        elif d != "0":
            options.append(f"{digits[:i]}[0-{int(d) - 1}][0-9]{{{rest}}}")
    return f"0*(?:{'|'.join(options)})"


class Int64Convertor(IntegerConvertor):
    """`{id:int}` in every route: ASCII digits up to 2**63-1, so a larger id (twenty 9s, 5,000
    digits) matches no route and is a 404, never an int() of 5,000 digits or a bigint overflow
    in PostgreSQL. A subclass of Starlette's, so /openapi.json still calls it an integer."""

    regex = _at_most(INT64_MAX)

    def convert(self, value: str) -> int:
        return int(value.lstrip("0") or "0")


# Registered over Starlette's own `int` once, on import: every route module imports this one
# before it builds its routes (tests/test_edge.py checks that every route has it).
register_url_convertor("int", Int64Convertor())
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    try:
        return _decoders[type_]
    except KeyError:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
        return dec


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode and validate, turning msgspec's errors into ours (400 syntax, 422 shape).

    Also the edge rule's JSON half: nesting deeper than `MAX_DEPTH` is 400 `malformed_json`
    and a NUL in any string 422 `invalid_input` naming the field (`check_json`).
    """
    check_json(data)
    try:
        return decoder(type_).decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise MalformedJSON(f"The body is not valid JSON: {exc}") from None


# A JSON string, escapes included; what is left after removing them holds only structure.
_JSON_STRING: Final = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")
_STEP: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1, +1, -1, -1 as signed bytes


def check_json(data: bytes | str) -> None:
    """Refuse JSON nested deeper than `MAX_DEPTH` (400) or with a NUL in a string (422).

    Both checks are a scan or two at C speed for the common body (a few brackets, no
    `\\u0000`), so decoding stays as fast as msgspec; only a suspect body pays for more.
    """
    raw = data.encode() if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _too_deep(raw):
        raise MalformedJSON(f"The JSON nests deeper than {MAX_DEPTH} levels.")
    if b"\\u0000" in raw:
        path = _nul_path(raw)
        if path is not None:
            raise InvalidInput("Text must not contain NUL (\\u0000).", path=path)


def _too_deep(raw: bytes) -> bool:
    """Is any bracket nested deeper than `MAX_DEPTH`? Strings are dropped first (their brackets
    are text), then each opening bracket counts +1 and each closing one -1: the deepest nesting
    is the largest running sum, summed in C (about 30 ms for a 1 MB body of nothing but brackets;
    a body with at most `MAX_DEPTH` brackets never gets here)."""
    steps = array.array("b")
    steps.frombytes(_JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS).translate(_STEP))
    return max(itertools.accumulate(steps), default=0) > MAX_DEPTH


def _nul_path(raw: bytes) -> str | None:
    """Where the first NUL is (`$.holder_names[1]`), or None if `\\u0000` was not one (an
    escaped backslash before `u0000`), or if the JSON is malformed (msgspec will say so)."""
    try:
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    stack: list[tuple[str, Any]] = [("$", doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\0" in value:
                return path
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                if "\0" in key:
                    return path
                stack.append((f"{path}.{key}", item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in reversed(list(enumerate(value))))
    return None


async def read_body(request: Request, type_: type[T]) -> T:
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.split(";")[0].strip().endswith(("/json", "+json")):
        raise UnsupportedMediaType()
    length = request.headers.get("content-length")
    if length is not None:
        declared = ascii_int(length)  # 0 is a length like any other: an empty body, refused below
        if declared is None or declared > MAX_BODY:
            raise PayloadTooLarge()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge()
    if not body:
        raise MalformedJSON("The request needs a JSON body.")
    return decode(body, type_)


def respond(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(content), status_code=status_code, headers=headers, media_type="application/json"
    )


def encode(content: Any) -> bytes:
    return _encoder.encode(content)


class Page(msgspec.Struct, kw_only=True):
    """Keyset pagination: `next_cursor` is opaque; pass it back as `?cursor=` for the next page."""

    items: list[Any]
    next_cursor: str | None = None


def encode_cursor(*parts: str | int) -> str:
    raw = "|".join(str(p) for p in parts).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, count: int) -> list[str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("The cursor is not valid.", path="$.cursor") from None
    parts = raw.split("|")
    if len(parts) != count:
        raise InvalidInput("The cursor is not valid.", path="$.cursor")
    return parts


def cursor_id(request: Request) -> int:
    """The id after which a list ordered by id continues (`?cursor=`), 0 for the first page."""
    cursor = request.query_params.get("cursor")
    if not cursor:
        return 0
    (raw,) = decode_cursor(cursor, 1)
    value = ascii_int(raw)
    if value is None:
        raise InvalidInput("The cursor is not valid.", path="$.cursor")
    return value


def query_int(request: Request, name: str, default: int, *, minimum: int = 0, maximum: int = 1000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    value = ascii_int(raw, maximum=maximum)
    if value is None or value < minimum:
        raise InvalidInput(
            f"Query parameter {name!r} must be an integer from {minimum} to {maximum}.", path=f"$.{name}"
        )
    return value


def path_int(conn: HTTPConnection, name: str) -> int:
    """Path ids are `{id:int}` in the routes (int64 by `Int64Convertor`); 0 is no id either."""
    value = conn.path_params[name]
    assert isinstance(value, int)
    if value < 1:
        raise NotFound()
    return value


class QueryGuard:
    """Pure ASGI middleware, the edge rule for query strings: a NUL in any parameter (PostgreSQL
    refuses NUL in text) is 422 `invalid_input` naming it, whatever the endpoint reads."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        if scope["type"] == "http" and (b"%00" in query or b"\0" in query):
            for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if "\0" in name or "\0" in value:
                    problem = InvalidInput(
                        f"Query parameter {name!r} must not contain NUL (%00).", path=f"$.{name}"
                    )
                    await error_response(problem)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class Param(msgspec.Struct, frozen=True, kw_only=True):
    """A query parameter or request header as /openapi.json shows it: its JSON Schema, bounds
    included, so a client (or a fuzzer) learns what the parser accepts."""

    name: str
    schema: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "string"})
    required: bool = False


def int_param(name: str, minimum: int, maximum: int) -> Param:
    """An integer query parameter read with `query_int(request, name, …, minimum, maximum)`."""
    return Param(name=name, schema={"type": "integer", "minimum": minimum, "maximum": maximum})


def enum_param(name: str, values: tuple[str, ...]) -> Param:
    return Param(name=name, schema={"type": "string", "enum": list(values)})


class Doc(msgspec.Struct, frozen=True, kw_only=True):
    """What /openapi.json says of one endpoint; attached by `@documented`.

    `query`: names (`"q"`, `"at:date"`), `Param`s, or a Struct the query is converted to.
    `responses`: status → the Struct of the JSON body, None (no body, or our JSON error), or a
    media type string for a body that is not JSON (an HTML page, an SVG).
    """

    summary: str
    body: Any = None
    body_required: bool = True
    responses: dict[int, Any] = msgspec.field(default_factory=dict)
    query: Any = ()
    headers: tuple[Param, ...] = ()
    auth: str | None = None  # None: anyone; else the least role needed
    tags: tuple[str, ...] = ()
    # "cinema": an organizer passes (whatever `auth` says) only for its own cinemas' data
    # (accounts/scope.py); None: the role alone decides.
    scope: str | None = None


def documented(
    summary: str,
    *,
    body: Any = None,
    body_required: bool = True,
    responses: dict[int, Any] | None = None,
    query: Any = (),
    headers: tuple[Param, ...] = (),
    auth: str | None = None,
    tags: tuple[str, ...] = (),
    scope: str | None = None,
) -> Callable[[E], E]:
    """Attach the endpoint's request and response types, so the spec is made from the same
    msgspec Structs that validate and encode the traffic, never written by hand."""

    def mark(endpoint: E) -> E:
        endpoint.__openapi__ = Doc(  # type: ignore[attr-defined]
            summary=summary, body=body, body_required=body_required, responses=responses or {},
            query=query, headers=headers, auth=auth, tags=tags, scope=scope,
        )  # fmt: skip
        return endpoint

    return mark
