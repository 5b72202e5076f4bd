"""CSV exports: the one renderer every list and report uses when asked for `Accept: text/csv`.

A back-office list is read by people in a spreadsheet as often as by programs, so each such
endpoint answers the same request as JSON or CSV, chosen by content negotiation
(`wants_csv`): the JSON stays the default, `text/csv` is sent only to a client that ranks it
above JSON. The CSV is what a spreadsheet opens without a wizard:

- RFC 4180: a header row, `,` between fields, CRLF after every record, a field holding a comma,
  a quote, CR or LF quoted with `"` and its quotes doubled (Python's `csv` module, `QUOTE_MINIMAL`);
- UTF-8 with a byte-order mark, so Excel reads `Zoë` and `山田` as such (LibreOffice and Python's
  `utf-8-sig` skip it); `Content-Type: text/csv; charset=utf-8; header=present`;
- a `Content-Disposition: attachment` filename, so a browser saves it under a useful name;
- formula injection defused (OWASP "CSV injection"): a text cell that starts with `=`, `+`, `-`,
  `@`, TAB or CR would run as a formula when opened; it gets a leading `'`, which spreadsheets
  show as text. Numbers are written as numbers (a refund of -5000 stays a number).

Times are ISO 8601 with their offset; None is an empty field; booleans `true`/`false`.
Rows are streamed: `csv_response` takes an async iterator of row batches, so an export of every
booking of a chain holds one batch in memory, never the whole list.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import date, datetime
from typing import Any, Final

from starlette.requests import HTTPConnection
from starlette.responses import StreamingResponse

CSV: Final = "text/csv"
MEDIA_TYPE: Final = "text/csv; charset=utf-8; header=present"
BOM: Final = "\ufeff"
_FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]+")


def _quality(part: str) -> tuple[str, float]:
    """One member of an Accept header: its media range and q (malformed q counts as 0)."""
    media, *params = (p.strip() for p in part.split(";"))
    q = 1.0
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
    return media.lower(), q


def prefers_csv(accept: str) -> bool:
    """Does this Accept header ask for CSV? Pure. `text/csv` with a q above 0 wins unless
    `application/json` is named too with a q at least as high; a wildcard never picks CSV."""
    csv_q = 0.0
    json_q: float | None = None
    for part in accept.split(","):
        if not part.strip():
            continue
        media, q = _quality(part)
        if media == CSV:
            csv_q = max(csv_q, q)
        elif media == "application/json":
            json_q = max(json_q or 0.0, q)
    return csv_q > 0 and (json_q is None or csv_q > json_q)


def wants_csv(conn: HTTPConnection) -> bool:
    return prefers_csv(conn.headers.get("accept", ""))


def cell(value: Any) -> str | int | float:
    """A value as a CSV field: text defused against formulas, times in ISO 8601. Pure."""
    if type(value) is str:  # the common case first: an export is mostly text
        return "'" + value if value.startswith(_FORMULA) else value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def render(header: Sequence[str], rows: Iterable[Sequence[Any]], *, with_header: bool = True) -> str:
    """Records as RFC 4180 text, CRLF-terminated (the header first unless told otherwise). Pure."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    if with_header:
        writer.writerow(header)
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue()


def filename(*parts: str | int) -> str:
    """`bookings-screening-42.csv`: ASCII only, so the header needs no RFC 5987 encoding."""
    cleaned = (_SAFE_NAME.sub("_", str(p)).strip("_") for p in parts)
    stem = "-".join(c for c in cleaned if c)
    return f"{stem or 'export'}.csv"


def csv_response(
    name: str, header: Sequence[str], batches: AsyncIterator[Sequence[Sequence[Any]]]
) -> StreamingResponse:
    """Stream the header, then each batch of rows as it comes, as a download called `name`."""

    async def body() -> AsyncIterator[bytes]:
        yield (BOM + render(header, ())).encode()
        async for rows in batches:
            if rows:
                yield render(header, rows, with_header=False).encode()

    return StreamingResponse(
        body(),
        media_type=MEDIA_TYPE,
        headers={"Content-Disposition": f'attachment; filename="{name}"', "Vary": "Accept"},
    )


async def one_batch(rows: Sequence[Sequence[Any]]) -> AsyncIterator[Sequence[Sequence[Any]]]:
    """An export whose rows are all at hand already (a report) as the iterator `csv_response` takes."""
    yield rows
