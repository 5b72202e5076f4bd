"""Where a request may come from: origins compared, the trusted ones, and the cross-origin guard.

A browser sends our session cookies with every request to us, whichever page made it. A page on
another site can auto-submit `<form method=post enctype=text/plain action=…/cancel>` (a "simple"
request: no CORS preflight), and a page on another port of the same host is the same *site*, so
even SameSite=Lax cookies go along. Such a request looks exactly like the user's own, except for
the `Origin` header the browser adds (and `Sec-Fetch-Site`), which a page cannot forge.

So every state-changing request that authenticates by cookie must come from a trusted origin:
the public base URL's (`Settings.base_url`) or one in `SEATMAP_ALLOWED_ORIGINS` (the same list
the WebSocket handshake checks, `live/socket.py`). A request with `Authorization: Bearer` is not
checked: a page cannot make a browser send that header to another origin without a CORS
preflight, which we never grant, and its cookies are ignored anyway (`auth.token_from`). A
request with neither `Origin` nor `Sec-Fetch-Site` does not come from a browser (curl, a kiosk
script) and is not a CSRF risk either.

Origins are compared as RFC 6454 says, scheme, host and port all equal (`same_origin`), so
`evil://127.0.0.1:8200` is not `http://127.0.0.1:8200`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from seatmap.accounts.auth import ACCESS_COOKIE, REFRESH_COOKIE
from seatmap.errors import CrossOrigin, error_response
from seatmap.settings import Settings

Origin = tuple[str, str, int | None]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_SESSION_COOKIES: Final = (ACCESS_COOKIE, REFRESH_COOKIE)
# A dev server told it is on localhost is as much on 127.0.0.1 and [::1] (the browser's choice).
_LOOPBACK: Final = ("localhost", "127.0.0.1", "[::1]")


def parse_origin(text: str) -> Origin | None:
    """(scheme, host, port) of an origin (`https://a.example:8443`) or of a URL's origin; the
    port is the scheme's default when left out (None for schemes without one). None for what
    names no origin: `null`, no scheme or no host, user info, a bad port."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname or parts.username is not None:
        return None
    return scheme, parts.hostname.lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    """Whether `a` and `b` are one origin: scheme, host and port all equal."""
    origin = parse_origin(a)
    return origin is not None and origin == parse_origin(b)


def origin_allowed(origin: str, trusted: Iterable[str]) -> bool:
    """Whether an `Origin` header names one of `trusted` (origins or URLs; `*`: any origin)."""
    return any(t == "*" or same_origin(origin, t) for t in trusted)


def trusted_origins(settings: Settings) -> tuple[str, ...]:
    """The public base URL, its loopback aliases in dev mode, and `SEATMAP_ALLOWED_ORIGINS`."""
    base = settings.base_url
    aliases: tuple[str, ...] = ()
    parsed = parse_origin(base)
    if settings.dev and parsed is not None and parsed[1] in ("localhost", "127.0.0.1", "::1"):
        scheme, _, port = parsed
        aliases = tuple(f"{scheme}://{host}:{port}" for host in _LOOPBACK)
    return (base, *aliases, *settings.allowed_origins)


def cross_origin(headers: Headers, trusted: Iterable[str]) -> bool:
    """Whether a cookie-authenticated request came from a page we do not trust. `Origin` decides
    when sent (every browser sends it on a POST); without it, `Sec-Fetch-Site` saying the page
    is on another origin (`same-site`: another port or subdomain; `cross-site`) does."""
    origin = headers.get("origin")
    if origin is not None:
        return not origin_allowed(origin, trusted)
    return headers.get("sec-fetch-site", "").lower() in ("same-site", "cross-site")


class CrossOriginGuard:
    """Pure ASGI middleware: a state-changing HTTP request (any method but GET, HEAD, OPTIONS,
    TRACE) that carries a session cookie and no `Authorization` header, from an untrusted
    origin, gets 403 `cross_origin` before any route sees it."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.trusted = trusted_origins(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _SAFE_METHODS:
            headers = Headers(scope=scope)
            # An empty Authorization header falls back to the cookie (auth.token_from): checked.
            if not headers.get("authorization") and cross_origin(headers, self.trusted):
                cookies = cookie_parser(headers.get("cookie", ""))
                if any(cookies.get(name) for name in _SESSION_COOKIES):
                    await error_response(CrossOrigin())(scope, receive, send)
                    return
        await self.app(scope, receive, send)
