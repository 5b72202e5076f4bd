"""The payment gateway contract: what a provider does for us, and how its webhooks are signed.

`PaymentProvider` is the one Protocol in seatmap, because there is real plurality: the
built-in simulated gateway (`seatmap.simulated`, a configuration choice, not a test branch) and
the real gateways a deployment plugs in. A provider creates payments, verifies and parses the
webhooks it sends, and refunds. This module is the only thing a provider imports from sales:
what a confirmed payment does (payments.py) and how money goes back (refunds.py) stay on our
side of the contract, so no provider can reach into them.

A webhook carries `Seatmap-Signature: t=<unix seconds>,v1=<hex>`, the HMAC-SHA256 of
`<t>.<body>` (the scheme Stripe and others use). The receiver recomputes it in constant time,
accepts several `v1` while a secret rotates, and refuses a timestamp further than its
tolerance from its clock, so a captured webhook cannot be replayed later. A gateway signs and
delivers; we verify.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Final, Protocol

import msgspec

from seatmap.api import Int64, ascii_int, decode
from seatmap.errors import InvalidSignature
from seatmap.settings import Settings

# ---- the gateway interface --------------------------------------------------------------------


class PaymentData(msgspec.Struct, kw_only=True, frozen=True):
    payment_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    reference: Annotated[str, msgspec.Meta(max_length=200)]
    amount: Int64
    currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]


class WebhookEvent(msgspec.Struct, kw_only=True, frozen=True):
    """A gateway's notification. `type`: payment.processing | payment.paid | payment.declined;
    `data.reference` is our order id."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    type: Annotated[str, msgspec.Meta(max_length=100)]
    created: Int64
    data: PaymentData


class CreatedPayment(msgspec.Struct, kw_only=True, frozen=True):
    provider_ref: str
    redirect_url: str


class Refund(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    payment_id: str
    amount: int
    replayed: bool  # the idempotency key was seen before: no new money moved


class PaymentProvider(Protocol):
    name: str

    async def create_payment(
        self, *, reference: str, amount: int, currency: str, description: str, expires_at: datetime,
        notify_url: str, return_url: str, time_zone: str,
    ) -> CreatedPayment:  # fmt: skip
        """Open a payment at the gateway; the buyer pays at `redirect_url` until `expires_at`,
        which the gateway's page shows in `time_zone` (the cinema's IANA zone)."""
        ...

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """The event, if the signature is right and fresh; `InvalidSignature` otherwise."""
        ...

    async def refund(self, provider_ref: str, amount: int, idempotency_key: str) -> Refund:
        """Return money; the same idempotency key again returns the same refund."""
        ...

    def start(self) -> None:
        """Begin the provider's own background work, if it has any (the simulated gateway's
        webhook pump). Only processes that serve or work call it: a runtime opened to look at
        the databases (tests, tools) must not act behind the server's back."""
        ...


# ---- signing and verifying webhooks ----------------------------------------------------------------

SIGNATURE_HEADER: Final = "Seatmap-Signature"


def webhook_key(settings: Settings) -> bytes:
    """SEATMAP_WEBHOOK_SECRET, or a key derived from the JWT secret (never the JWT key itself)."""
    if settings.webhook_secret is not None:
        return settings.webhook_secret.reveal().encode()
    return hmac.new(
        settings.jwt_secret.reveal().encode(), b"seatmap webhook signing v1", hashlib.sha256
    ).digest()


def sign(key: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(key: bytes, header: str | None, body: bytes, *, tolerance: int, now: float) -> None:
    """Accept `t=…,v1=…` (several v1 while a secret rotates) signed with `key` within `tolerance` s."""
    if not header:
        raise InvalidSignature("The webhook has no signature.", reason="missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t":
            timestamp = ascii_int(value)  # None unless ASCII digits: malformed, not a 500
        elif name == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise InvalidSignature("The webhook signature is malformed.", reason="malformed")
    expected = sign(key, body, timestamp).rpartition("v1=")[2]
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise InvalidSignature("The webhook signature does not match.", reason="mismatch")
    if abs(now - timestamp) > tolerance:
        raise InvalidSignature("The webhook is too old (or from the future): a replay?", reason="stale")


def verify_event(key: bytes, headers: Mapping[str, str], body: bytes, tolerance: int) -> WebhookEvent:
    """The event of a webhook signed with `key`; `InvalidSignature` before anything is decoded."""
    verify_signature(key, headers.get(SIGNATURE_HEADER), body, tolerance=tolerance, now=time.time())
    return decode(body, WebhookEvent)
