"""WebSocket protocol v1: every message as a msgspec Struct, one decoder, one encoder. Pure.

Client messages are a tagged union on `type`; anything else (bad JSON, unknown type, wrong
field types) decodes to a `ProtocolError` with a code, and the socket stays open. Deltas
are not encoded here: they are written once, inside the atomic Lua step that made the
change, and forwarded as they are (see seats.lua and channels.py). `docs/protocol.md`
describes every message and close code.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

from seatmap.api import INT64_MAX, check_json
from seatmap.errors import InvalidInput, MalformedJSON

Ref = Annotated[str, msgspec.Meta(max_length=64)]
SeatLabel = Annotated[str, msgspec.Meta(min_length=1, max_length=16)]

# Close codes (besides the standard 1000/1001/1009/1011).
CLOSE_ORIGIN: Final = 4003  # Origin not in the allow-list (sent before the handshake completes: HTTP 403)
CLOSE_NOT_FOUND: Final = 4004  # no such screening
CLOSE_ABUSE: Final = 4008  # kept sending after being told to slow down
CLOSE_TOO_SLOW: Final = 4009  # could not keep up even with snapshots, or stopped reading
CLOSE_TRY_AGAIN: Final = 1013  # Redis or PostgreSQL unreachable at connect: reconnect shortly


# ---- client -> server -------------------------------------------------------------------


class Auth(msgspec.Struct, tag="auth", forbid_unknown_fields=True):
    token: str
    ref: Ref | None = None


class Resume(msgspec.Struct, tag="resume", forbid_unknown_fields=True):
    seq: Annotated[int, msgspec.Meta(ge=0, le=INT64_MAX)]
    ref: Ref | None = None


class GASelection(msgspec.Struct, forbid_unknown_fields=True):
    area: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=1000)]


class BestAvailable(msgspec.Struct, forbid_unknown_fields=True):
    """Let the server choose: the best `count` seats together (docs/seating.md)."""

    count: Annotated[int, msgspec.Meta(ge=1, le=1000)]
    category: str | None = None
    accessible: bool = False
    allow_split: bool = False


class Hold(msgspec.Struct, tag="hold", forbid_unknown_fields=True):
    """Without `token`: a new hold (`seats`, `best_available` or `ga`). With `token`: add these seats."""

    ref: Ref | None = None
    seats: Annotated[list[SeatLabel], msgspec.Meta(max_length=1000)] = []
    ga: GASelection | None = None
    best_available: BestAvailable | None = None
    token: str | None = None


class Release(msgspec.Struct, tag="release", forbid_unknown_fields=True):
    """Without `seats`: give the whole hold back. With `seats`: only those."""

    token: str
    ref: Ref | None = None
    seats: Annotated[list[SeatLabel], msgspec.Meta(max_length=1000)] | None = None


class Extend(msgspec.Struct, tag="extend", forbid_unknown_fields=True):
    token: str
    ref: Ref | None = None


class Ping(msgspec.Struct, tag="ping", forbid_unknown_fields=True):
    ref: Ref | None = None


ClientMessage = Auth | Resume | Hold | Release | Extend | Ping


# ---- server -> client -------------------------------------------------------------------


class Snapshot(msgspec.Struct, tag="snapshot"):
    """The whole map: only non-free seats; GA areas with their remaining capacity."""

    screening: int
    seq: int
    seats: dict[str, str]
    ga: dict[str, int]
    viewers: int
    status: str


class Change(msgspec.Struct, omit_defaults=True):
    """One change inside a delta: a seat's new state, or a GA area's remaining capacity."""

    seat: str | None = None
    state: str | None = None
    area: str | None = None
    remaining: int | None = None


class Delta(msgspec.Struct, tag="delta"):
    seq: int
    ts: float
    changes: list[Change]


class Status(msgspec.Struct, tag="status"):
    seq: int
    status: str


class Presence(msgspec.Struct, tag="presence"):
    viewers: int


class Heartbeat(msgspec.Struct, tag="heartbeat"):
    """Sent when a socket has been quiet for a while; `seq` lets the client check it is current."""

    seq: int


class Batch(msgspec.Struct, tag="batch"):
    """Several of the above in one frame, in order (only to clients that asked with `?batch=1`).

    Never built from Structs: the writer joins texts that are already encoded (batch_text).
    """

    messages: list[Snapshot | Delta | Status | Presence | Heartbeat]


def batch_text(texts: list[str]) -> str:
    return '{"type":"batch","messages":[' + ",".join(texts) + "]}"


class Pong(msgspec.Struct, tag="pong", omit_defaults=True):
    ref: str | None = None


class HoldResult(msgspec.Struct, kw_only=True):
    token: str
    screening_id: int
    seats: list[str]
    ga: GASelection | None
    expires_at: str
    max_expires_at: str


class Result(msgspec.Struct, tag="result", kw_only=True):
    ref: str | None = None
    ok: bool = True
    hold: HoldResult | None = None
    released: bool = False
    # Seats that are the requester's own now (others see them as "held").
    mine: list[str] = []


class Error(msgspec.Struct, tag="error", kw_only=True, omit_defaults=True):
    """A protocol error (bad frame, rate limit, bad `since`) as the socket itself sends it.

    A command that fails with a SeatmapError is rendered by `errors.socket_error` instead,
    with every detail the REST error has (e.g. `seat_taken`'s `taken` and `blocked`).
    """

    code: str
    message: str
    ref: str | None = None
    seats: list[str] | None = None
    seat: str | None = None
    path: str | None = None
    reason: str | None = None
    largest: int | None = None
    remaining: int | None = None
    limit: int | None = None
    retry_after: float | None = None


ServerMessage = Snapshot | Delta | Status | Presence | Heartbeat | Batch | Pong | Result | Error

_decoder: Final = msgspec.json.Decoder(ClientMessage)
encoder: Final = msgspec.json.Encoder()


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path


def decode_client(data: str | bytes) -> ClientMessage:
    try:
        check_json(data)  # the edge rule: depth capped, no NUL in any string (seatmap/api.py)
    except MalformedJSON as exc:
        return _raise("malformed_json", exc.message)
    except InvalidInput as exc:
        return _raise("invalid_message", exc.message, exc.details.get("path"))
    try:
        decoded: ClientMessage = _decoder.decode(data)
        return decoded
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, sep, path = text.rpartition(" - at `")
        if ("Invalid value" in text and "$.type" in text) or "missing required field `type`" in text:
            return _raise("unknown_type", "Unknown or missing message type.", "$.type")
        if sep:
            return _raise("invalid_message", message, path.rstrip("`"))
        return _raise("invalid_message", text)
    except (msgspec.DecodeError, RecursionError) as exc:
        return _raise("malformed_json", f"The message is not valid JSON: {exc}")


def _raise(code: str, message: str, path: str | None = None) -> ClientMessage:
    raise ProtocolError(code, message, path)


def encode(message: ServerMessage) -> str:
    return encoder.encode(message).decode()
