"""Amounts read the same everywhere: ISO 4217 minor units, whole rupiah, one way of writing them."""

from __future__ import annotations

import httpx
import pytest

from seatmap.money import exponent, format_amount
from seatmap.runtime import Runtime
from tests.support import make_screening


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (150_000, "IDR", "150,000 IDR"),  # whole rupiah: the project's choice, not ISO's 2 decimals
        (0, "IDR", "0 IDR"),
        (99_950, "EUR", "999.50 EUR"),
        (5, "USD", "0.05 USD"),
        (123_456_789, "USD", "1,234,567.89 USD"),
        (-1_250, "USD", "-12.50 USD"),  # a refund shown as money going back
        (1_500, "JPY", "1,500 JPY"),
        (1_234_567, "KWD", "1,234.567 KWD"),  # three decimals
        (10_000, "CLF", "1.0000 CLF"),  # four
        (1_999, "usd", "19.99 USD"),  # as a careless caller spells it
        (1_999, "XYZ", "19.99 XYZ"),  # not listed: two decimals, the usual case
    ],
)
def test_amounts_are_written_in_the_currencys_own_units(amount: int, currency: str, text: str) -> None:
    """A customer reads each amount in whole units with that currency's decimals."""
    assert format_amount(amount, currency) == text


@pytest.mark.parametrize(
    ("currency", "places"),
    [("IDR", 0), ("JPY", 0), ("KRW", 0), ("USD", 2), ("EUR", 2), ("BHD", 3), ("UYW", 4)],
)
def test_the_exponent_the_browser_is_given(currency: str, places: int) -> None:
    """The API sends this beside each currency, so the browser divides by the same power of ten."""
    assert exponent(currency) == places


async def test_the_api_sends_the_exponent_beside_each_currency(
    rt: Runtime, client: httpx.AsyncClient
) -> None:
    """The browser writes prices from the server's exponent (whole rupiah), keeping no table of its own."""
    screening = await make_screening(rt, ["SS"])
    detail = (await client.get(f"/api/screenings/{screening}")).json()
    assert (detail["currency"], detail["currency_exponent"]) == ("IDR", 0)
    async with rt.pool.acquire() as conn:
        await conn.execute("UPDATE screenings SET currency = 'KWD' WHERE id = $1", screening)
    detail = (await client.get(f"/api/screenings/{screening}")).json()
    assert (detail["currency"], detail["currency_exponent"]) == ("KWD", 3)
