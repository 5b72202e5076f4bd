"""The errors seatmap raises on purpose, and their single mapping to HTTP and WebSocket.

Domain code raises these; it never builds an HTTP response for an error itself. The tree::

    SeatmapError                      500 internal_error
    ├── ConfigError                   (start-up only: the process refuses to start)
    ├── BadRequest                    400 bad_request
    │   ├── MalformedJSON             400 malformed_json
    │   ├── InvalidCode               400 invalid_code      (reason)
    │   └── InvalidSignature          400 invalid_signature (reason)
    ├── Unauthorized                  401 unauthorized
    │   ├── InvalidCredentials        401 invalid_credentials
    │   └── InvalidToken              401 invalid_token
    │       └── AccountGone           401 invalid_token     (the token outlived its account)
    ├── Forbidden                     403 forbidden
    │   ├── OutsideScope              403 forbidden         (cinema_id: not one of the organizer's)
    │   ├── AccountDisabled           403 account_disabled
    │   ├── CrossOrigin               403 cross_origin
    │   └── EmailUnverified           403 email_unverified
    ├── NotFound                      404 not_found
    ├── MethodNotAllowed              405 method_not_allowed
    ├── Conflict                      409 conflict
    │   ├── EmailTaken                409 email_taken
    │   ├── ScreeningOverlap          409 screening_overlap
    │   ├── HasTickets                409 has_tickets
    │   ├── InUse                     409 in_use
    │   ├── NotOnSale                 409 not_on_sale
    │   ├── SeatTaken                 409 seat_taken        (seats, taken, blocked)
    │   ├── HoldLimit                 409 hold_limit        (token, screening_id, seats, expires_at)
    │   ├── HoldExpired               409 hold_expired
    │   ├── OrderExists               409 order_exists      (order_id)
    │   ├── OrderClosed               409 order_closed      (status)
    │   ├── ReferenceUsed             409 reference_used    (order_id)
    │   ├── RefundClosed              409 refund_closed     (deadline)
    │   ├── AlreadyUsed               409 already_used      (checked_in_at, checked_in_by, gate)
    │   ├── WrongScreening            409 wrong_screening   (screening_id)
    │   ├── TicketVoid                409 ticket_void
    │   ├── CheckInClosed             409 check_in_closed   (opens_at, closes_at)
    │   ├── WouldStrandSeat           409 would_strand_seat (seat)
    │   ├── NotEnoughAdjacent         409 not_enough_adjacent (largest)
    │   └── SoldOut                   409 sold_out
    ├── PayloadTooLarge               413 payload_too_large
    ├── UnsupportedMediaType          415 unsupported_media_type
    ├── InvalidInput                  422 invalid_input     (path)
    │   ├── UnknownSeats              422 unknown_seats     (seats)
    │   ├── TooManySeats              422 too_many_seats    (limit)
    │   └── IdempotencyKeyReused      422 idempotency_key_reused
    ├── RateLimited                   429 rate_limited      (retry_after)
    │   ├── AccountHoldLimit          429 account_hold_limit (limit)
    │   ├── AddressHoldLimit          429 address_hold_limit (limit, held)
    │   └── TooManySockets            429 too_many_sockets  (limit)
    └── Unavailable                   503 unavailable       (retry_after; also any outage, see `outage`)

Every class has a stable `code` (clients switch on it) and a docstring that is its default
message. Extra fields (the seats lost, the field path) travel in `details` and are rendered
next to `code` and `message`. Anything else an endpoint raises is a bug: `CatchUnexpected`
logs it and answers 500 `internal_error`, on a connection that stays open, unless it is a
backing service being unreachable (`outage`): that answers 503 `unavailable` with Retry-After.
"""

from __future__ import annotations

import errno
import logging
import re
import socket
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Final

import asyncpg
import msgspec
import redis.exceptions
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("seatmap.errors")


class SeatmapError(Exception):
    """Something went wrong on our side."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class ConfigError(SeatmapError):
    """The configuration is invalid."""

    code = "config_error"


class BadRequest(SeatmapError):
    """The request could not be understood."""

    code = "bad_request"
    status = 400


class MalformedJSON(BadRequest):
    """The body is not valid JSON."""

    code = "malformed_json"


class InvalidCode(BadRequest):
    """The verification code is wrong, expired or already used."""

    code = "invalid_code"


class InvalidSignature(BadRequest):
    """The webhook signature is missing, wrong or too old."""

    code = "invalid_signature"


class Unauthorized(SeatmapError):
    """You need to log in first."""

    code = "unauthorized"
    status = 401


class InvalidCredentials(Unauthorized):
    """Wrong email or password."""

    code = "invalid_credentials"


class InvalidToken(Unauthorized):
    """The token is invalid or has expired."""

    code = "invalid_token"


# Same code as any bad token (the client logs in again, and learns there is no account);
# found where a write names the caller (a foreign key on users), not looked up per request.
class AccountGone(InvalidToken):
    """The account this token was issued to no longer exists; log in again."""


class Forbidden(SeatmapError):
    """You are not allowed to do this."""

    code = "forbidden"
    status = 403


class OutsideScope(Forbidden):
    """This belongs to a cinema you do not manage."""


class AccountDisabled(Forbidden):
    """This account is disabled; ask an administrator to enable it."""

    code = "account_disabled"


class CrossOrigin(Forbidden):
    """A page on another origin may not act with your session; API clients send a Bearer token."""

    code = "cross_origin"


class EmailUnverified(Forbidden):
    """Verify your email first: POST the mailed code to /api/auth/verify (resend: /api/auth/verify/resend)."""

    code = "email_unverified"


class NotFound(SeatmapError):
    """Not found."""

    code = "not_found"
    status = 404


class MethodNotAllowed(SeatmapError):
    """This method is not allowed here."""

    code = "method_not_allowed"
    status = 405


class Conflict(SeatmapError):
    """The request conflicts with the current state."""

    code = "conflict"
    status = 409


class EmailTaken(Conflict):
    """An account with this email already exists."""

    code = "email_taken"


class ScreeningOverlap(Conflict):
    """Another screening in this auditorium overlaps this time."""

    code = "screening_overlap"


class HasTickets(Conflict):
    """Tickets exist for this screening; cancel it instead of deleting it."""

    code = "has_tickets"


class InUse(Conflict):
    """Other records still refer to this one; remove them first."""

    code = "in_use"


class NotOnSale(Conflict):
    """This screening is not on sale."""

    code = "not_on_sale"


# Held or sold by someone else (`taken`) or blocked by the cinema (`blocked`): one code, since
# either way the customer picks other seats; `seats` lists both.
class SeatTaken(Conflict):
    """Some of the seats are no longer available."""

    code = "seat_taken"


class HoldLimit(Conflict):
    """You have reached the limit of held seats for this screening."""

    code = "hold_limit"


# Told only to the hold's owner, up to an hour after the restock; anyone else gets NotFound, as
# for a token that never existed, and so does a released or sold hold.
class HoldExpired(Conflict):
    """The hold has expired; its seats went back on sale."""

    code = "hold_expired"


class WouldStrandSeat(Conflict):
    """This choice would leave a single seat alone; shift it by one seat."""

    code = "would_strand_seat"


class NotEnoughAdjacent(Conflict):
    """Not enough seats together."""

    code = "not_enough_adjacent"


class OrderExists(Conflict):
    """This hold already has an order; pay or cancel that one."""

    code = "order_exists"


class OrderClosed(Conflict):
    """This order is no longer pending."""

    code = "order_closed"


# A till's receipt number names one payment: the same number again is a typo or a second
# sale being passed off on an old receipt, and the clerk needs to see which sale has it.
class ReferenceUsed(Conflict):
    """This payment reference is already recorded for another sale."""

    code = "reference_used"


class RefundClosed(Conflict):
    """Refunds for this screening have closed."""

    code = "refund_closed"


class AlreadyUsed(Conflict):
    """This ticket has already been used."""

    code = "already_used"


class WrongScreening(Conflict):
    """This ticket is for another screening."""

    code = "wrong_screening"


class TicketVoid(Conflict):
    """This ticket is void."""

    code = "ticket_void"


class CheckInClosed(Conflict):
    """Check-in for this screening is not open now."""

    code = "check_in_closed"


class SoldOut(Conflict):
    """Not enough capacity left."""

    code = "sold_out"


class PayloadTooLarge(SeatmapError):
    """The request body is too large."""

    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(SeatmapError):
    """The body must be JSON (Content-Type: application/json)."""

    code = "unsupported_media_type"
    status = 415


class InvalidInput(SeatmapError):
    """The input is invalid."""

    code = "invalid_input"
    status = 422

    @classmethod
    def from_validation(cls, exc: msgspec.ValidationError) -> InvalidInput:
        """msgspec says `Expected `int`, got `str` - at `$.seats[0]``; split off the path."""
        text = str(exc)
        message, sep, path = text.rpartition(" - at `")
        if not sep:
            message, path = text, "$"
        path = path.rstrip("`")
        missing = re.search(r"missing required field `([^`]+)`", message)
        if missing:
            # Point at the field that is missing, not at the object that lacks it.
            path = f"{path}.{missing[1]}"
        return cls(message, path=path)


class UnknownSeats(InvalidInput):
    """Some seats do not exist in this auditorium."""

    code = "unknown_seats"


class TooManySeats(InvalidInput):
    """Too many seats in one hold."""

    code = "too_many_seats"


class IdempotencyKeyReused(InvalidInput):
    """This Idempotency-Key was already used with a different request."""

    code = "idempotency_key_reused"


class RateLimited(SeatmapError):
    """Too many requests; try again later."""

    code = "rate_limited"
    status = 429


class AccountHoldLimit(RateLimited):
    """You hold seats on too many screenings at once; buy or release one of those holds first."""

    code = "account_hold_limit"


class AddressHoldLimit(RateLimited):
    """Too many seats of this screening are held from your address; try again once some are released."""

    code = "address_hold_limit"


class TooManySockets(RateLimited):
    """Too many live seat maps are open from your address; close some first."""

    code = "too_many_sockets"


class Unavailable(SeatmapError):
    """A backing service is unavailable."""

    code = "unavailable"
    status = 503


# Seconds a client is told to wait (Retry-After) when PostgreSQL or Redis cannot be reached:
# a restart takes a few; clients back off themselves past that.
OUTAGE_RETRY_AFTER: Final = 2

# What PostgreSQL and Redis raise when they cannot be reached, are restarting or are shutting
# down, as opposed to refusing a statement: trying the same request again later can succeed.
# TimeoutError covers a pool's acquire timeout and a connect that hangs; ConnectionError a
# refused or reset connection (asyncpg raises ConnectionRefusedError itself); other OSErrors only
# by their errno (`_OUTAGE_ERRNOS`), since a bug can raise one too.
_OUTAGES: Final = (
    redis.exceptions.ConnectionError,  # BusyLoadingError (a restarted Redis loading its data) too
    redis.exceptions.TimeoutError,
    redis.exceptions.TryAgainError,
    # A Redis Cluster between a primary's death and its replica's promotion (or a slot moving):
    # CLUSTERDOWN / MASTERDOWN, a slot no node serves yet, no node reachable at all.
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
    asyncpg.PostgresConnectionError,  # ConnectionDoesNotExistError: the server closed it under us
    asyncpg.CannotConnectNowError,  # the database system is starting up / shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.ConnectionFailureError,
    TimeoutError,
    ConnectionError,
    socket.gaierror,  # the server's name does not resolve (DNS restarting)
)
# What a background loop's round may raise from PostgreSQL or Redis and go on after, logged: the
# servers' own errors, and asyncpg's client-side errors of a connection the server dropped while
# in use (`InterfaceError` "connection is closed", `InternalClientError`), which are no
# `PostgresError`: a loop that caught only those died when PostgreSQL restarted (chaos test).
RETRYABLE: Final = (
    TimeoutError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    redis.exceptions.RedisError,
    redis.exceptions.RedisClusterException,  # SlotNotCoveredError (a failover) is no RedisError
)
# Unreachable, or a unix socket whose server is gone (ENOENT: its file was removed on stop).
_OUTAGE_ERRNOS: Final = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.ENOENT})


def outage(exc: BaseException) -> Unavailable | None:
    """`exc` as a 503 if it (or what caused it) says a backing service is unreachable; else None.

    asyncpg's `InterfaceError` counts only for a closed connection ("connection is closed"):
    otherwise it is a misuse, our bug, and stays a 500. Its `InternalClientError` counts only
    in state 2 (ERROR_CONSUME): a pooled connection still reading the FATAL a shutting-down
    server sent it unasked, when the next statement starts (asyncpg#1069, sqlalchemy#13241;
    seen in tests/chaos/test_postgres.py).
    """
    seen: BaseException | None = exc
    for _ in range(8):  # `raise … from` chains are short; never loop on a cycle
        if seen is None:
            return None
        if (
            isinstance(seen, _OUTAGES)
            or (isinstance(seen, OSError) and seen.errno in _OUTAGE_ERRNOS)
            or (isinstance(seen, asyncpg.InterfaceError) and "connection is closed" in str(seen))
            or (isinstance(seen, asyncpg.InternalClientError) and "another operation (2)" in str(seen))
            # redis-py gave up following a cluster's redirections: a slot mid-migration answers
            # TRYAGAIN to a script whose keys are split between the two nodes for a moment.
            or (isinstance(seen, redis.exceptions.ClusterError) and "TTL exhausted" in str(seen))
        ):
            redis_errors = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
            service = "Redis" if isinstance(seen, redis_errors) else "the database"
            return Unavailable(
                f"The service is briefly unavailable ({service} cannot be reached); try again shortly.",
                retry_after=OUTAGE_RETRY_AFTER,
            )
        seen = seen.__cause__ or seen.__context__
    return None


_encoder = msgspec.json.Encoder()


def error_response(exc: SeatmapError, headers: Mapping[str, str] | None = None) -> Response:
    headers = dict(headers or {})
    if isinstance(exc, RateLimited | Unavailable) and "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    body = _encoder.encode({"error": exc.to_dict()})
    return Response(body, status_code=exc.status, headers=headers, media_type="application/json")


def socket_error(exc: SeatmapError, ref: str | None) -> str:
    """The same error as a WebSocket `error` frame: every detail REST renders, next to `ref`."""
    frame: dict[str, Any] = {"type": "error", "code": exc.code, "message": exc.message}
    if ref is not None:
        frame["ref"] = ref
    frame.update(exc.details)
    return _encoder.encode(frame).decode()


async def http_handler(request: Request, exc: Exception) -> Response:
    """The one place a `SeatmapError` becomes an HTTP response."""
    assert isinstance(exc, SeatmapError)
    if exc.status >= 500:
        log.error("request failed: %s", exc.message, exc_info=exc)
    return error_response(exc)


async def unexpected_handler(request: Request, exc: Exception) -> Response:
    """Anything we did not raise on purpose: log it whole, tell the client little.

    An outage is not a bug: one line (no traceback, every request fails alike), and 503."""
    unavailable = outage(exc)
    if unavailable is not None:
        log.warning("%s %s: %s: %r", request.method, request.url.path, unavailable.message, exc)
        return error_response(unavailable)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(SeatmapError())


class CatchUnexpected:
    """Pure ASGI middleware: an unexpected error answers 500 JSON and ends there.

    Starlette's ServerErrorMiddleware answers with `unexpected_handler` too, but then re-raises
    (so that servers may log it), and uvicorn closes a connection whose app raised: the client
    of a kept-alive connection saw it reset. Inside that middleware, this one answers and does
    not re-raise, so uvicorn keeps the connection. If the response had already started, nothing
    can be answered any more: the error goes on up and the connection is dropped.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            response = await unexpected_handler(Request(scope), exc)
            await response(scope, receive, send)


_STARLETTE_CODES: dict[int, type[SeatmapError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidInput,
    429: RateLimited,
    503: Unavailable,
}


async def starlette_http_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) in our JSON shape."""
    from starlette.exceptions import HTTPException

    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette's `Allow` names the methods of the route that answered (for a page, the
        # static files' GET, HEAD); one path may be several routes: name every one's methods.
        # Mounts rewrote the scope's root_path on the way in; match from the app's own root.
        root = request.scope.get("app_root_path", request.scope.get("root_path", ""))
        allowed = _methods_for({**request.scope, "root_path": root}, getattr(request.app, "routes", []))
        if allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
    cls = _STARLETTE_CODES.get(exc.status_code)
    if cls is None or not request.url.path.startswith("/api"):
        return Response(exc.detail, status_code=exc.status_code, headers=headers)
    return error_response(cls(), headers)


def _methods_for(scope: Scope, routes: Sequence[BaseRoute]) -> set[str]:
    """Every method some route serves at this scope's path."""
    probe: Scope = {**scope, "method": "OPTIONS"}
    methods: set[str] = set()
    for route in routes:
        match, child = route.matches(probe)
        if match == Match.NONE:
            continue
        if isinstance(route, Mount):
            methods |= _methods_for({**probe, **child}, route.routes)
        elif isinstance(route, Route):
            methods |= route.methods or set()
    return methods
