"""The conventions of our JSON API: msgspec-validated bodies, JSON responses, cursors.

Every endpoint reads its body with `read_body(request, Struct)`, so bad input always ends up
as the same 4xx JSON error before any state is touched, and answers with `respond(...)`,
which encodes with msgspec (no second serialiser, no dict copies of the structs).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any, Final, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from seatmap.errors import InvalidInput, MalformedJSON, PayloadTooLarge, UnsupportedMediaType

T = TypeVar("T")
E = TypeVar("E", bound=Callable[..., Any])  # an endpoint, kept typed through @documented

MAX_BODY: Final = 1024 * 1024
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def decoder(type_: type[T]) -> msgspec.json.Decoder[T]:
    try:
        return _decoders[type_]
    except KeyError:
        dec = _decoders[type_] = msgspec.json.Decoder(type_)
        return dec


def decode(data: bytes | str, type_: type[T]) -> T:
    """Decode and validate, turning msgspec's errors into ours (400 syntax, 422 shape)."""
    try:
        return decoder(type_).decode(data)
    except msgspec.ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    except msgspec.DecodeError as exc:
        raise MalformedJSON(f"The body is not valid JSON: {exc}") from None


async def read_body(request: Request, type_: type[T]) -> T:
    content_type = request.headers.get("content-type", "")
    if content_type and not content_type.split(";")[0].strip().endswith(("/json", "+json")):
        raise UnsupportedMediaType()
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY:
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
    if not raw.isdigit():
        raise InvalidInput("The cursor is not valid.", path="$.cursor")
    return int(raw)


def query_int(request: Request, name: str, default: int, *, minimum: int = 0, maximum: int = 1000) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"Query parameter {name!r} must be an integer.", path=f"$.{name}") from None
    if not minimum <= value <= maximum:
        raise InvalidInput(
            f"Query parameter {name!r} must be between {minimum} and {maximum}.", path=f"$.{name}"
        )
    return value


def path_int(request: Request, name: str) -> int:
    """Path ids are `{id:int}` in the routes; this only narrows the type for mypy."""
    value = request.path_params[name]
    assert isinstance(value, int)
    return value


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
) -> Callable[[E], E]:
    """Attach the endpoint's request and response types, so the spec is made from the same
    msgspec Structs that validate and encode the traffic, never written by hand."""

    def mark(endpoint: E) -> E:
        endpoint.__openapi__ = Doc(  # type: ignore[attr-defined]
            summary=summary, body=body, body_required=body_required, responses=responses or {},
            query=query, headers=headers, auth=auth, tags=tags,
        )  # fmt: skip
        return endpoint

    return mark
