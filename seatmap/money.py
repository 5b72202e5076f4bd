"""Amounts as people read them: integer minor units, ISO 4217 exponents, one way of writing them.

Every amount in seatmap is an integer count of the currency's minor unit, and ISO 4217 says how
many of those make one unit: its exponent (2 for USD, 0 for JPY, 3 for KWD). Rupiah are the
project's one exception: ISO lists IDR with 2 decimals, but prices are quoted, and gateways
charge, in whole rupiah, so an IDR amount counts rupiah (exponent 0) and "150000 IDR" is a
150,000-rupiah ticket, never 1,500.00.

This is the one table and the one formatter: mails, the simulated payment page and the API
(which sends `currency_exponent` beside each `currency`, so the browser needs no table of its
own) all use it, and all write an amount the same way: "150,000 IDR", "12.50 USD".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# ISO 4217 currencies whose exponent is not 2 (the list's funds and metals codes left out).
_WHOLE: Final = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split()
_ISO_EXPONENTS: Final[Mapping[str, int]] = {
    **dict.fromkeys(_WHOLE, 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
# The project's choice (see above): whole rupiah.
_EXPONENTS: Final[Mapping[str, int]] = {**_ISO_EXPONENTS, "IDR": 0}
_USUAL: Final = 2


def exponent(currency: str) -> int:
    """How many decimal places one unit of `currency` has in our amounts (2 unless listed)."""
    return _EXPONENTS.get(currency.upper(), _USUAL)


def format_amount(amount: int, currency: str) -> str:
    """`amount` minor units of `currency` written out: "150,000 IDR", "-12.50 USD". Pure."""
    places = exponent(currency)
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10**places)
    fraction = f".{minor:0{places}d}" if places else ""
    return f"{sign}{units:,}{fraction} {currency.upper()}"
