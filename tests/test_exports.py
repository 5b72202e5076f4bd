"""The CSV renderer every export shares: content negotiation, RFC 4180, formulas defused."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from typing import Any

import pytest

from seatmap.exports import cell, filename, prefers_csv, render


@pytest.mark.parametrize(
    ("accept", "csv_wanted"),
    [
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("TEXT/CSV", True),
        ("text/csv, application/json", False),  # a tie: JSON, the default
        ("text/csv, application/json;q=0.5", True),
        ("application/json;q=0.9, text/csv", True),
        ("text/csv;q=0, */*", False),
        ("text/csv;q=oops", False),
        ("text/html, */*;q=0.8", False),
        ("text/csv;q=0.5, */*", True),  # a wildcard never picks JSON over a named CSV
    ],
)
def test_csv_only_for_a_client_that_ranks_it_first(accept: str, csv_wanted: bool) -> None:
    """Pure: JSON stays the default; CSV when asked for by name and not outranked by JSON."""
    assert prefers_csv(accept) is csv_wanted


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (None, ""),
        (True, "true"),
        (42, 42),
        (-5000, -5000),  # a number stays a number, minus and all
        (12.5, 12.5),
        ("plain", "plain"),
        ("=1+1", "'=1+1"),
        ("+31 20 555", "'+31 20 555"),
        ("-2", "'-2"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        (datetime(2026, 12, 7, 18, 30, tzinfo=UTC), "2026-12-07T18:30:00+00:00"),
        (date(2026, 12, 7), "2026-12-07"),
    ],
)
def test_cells_are_written_as_a_spreadsheet_should_read_them(value: Any, written: Any) -> None:
    """Pure: text that would run as a formula gets a leading quote; numbers and times as such."""
    assert cell(value) == written


def test_records_round_trip_through_pythons_csv_reader() -> None:
    """Pure: commas, quotes, CR/LF and non-ASCII come back intact; CRLF ends each record."""
    names = ['Zoë "Zee" O\'Brien, Jr.', "山田\n太郎", "a\r\nb", "", "x,y"]
    text = render(("n", "name"), [(i, name) for i, name in enumerate(names)])
    assert text.startswith("n,name\r\n") and text.endswith("\r\n")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows == [["n", "name"], *[[str(i), name] for i, name in enumerate(names)]]


def test_filenames_are_plain_ascii() -> None:
    """Pure: a filename needs no RFC 5987 encoding in Content-Disposition."""
    assert filename("bookings", "screening", 42) == "bookings-screening-42.csv"
    assert filename("seat-history", 7, "") == "seat-history-7.csv"
    assert filename('a"b', "山田") == "a_b.csv"
    assert filename() == "export.csv"


def test_every_export_documents_its_csv_beside_its_json() -> None:
    """/openapi.json says which answers also come as text/csv, with their Content-Disposition."""
    from seatmap import openapi
    from seatmap.app import create_app
    from seatmap.settings import Settings

    offline = Settings.from_environ(
        {"DATABASE_URL": "postgresql://127.0.0.1:9/none", "REDIS_URL": "redis://127.0.0.1:9/0",
         "SEATMAP_JWT_SECRET": "x" * 48, "SEATMAP_PUBLIC_URL": "http://127.0.0.1:9"}
    )  # fmt: skip
    paths = openapi.build(create_app(offline).routes)["paths"]
    exports = {
        path for path, operations in paths.items()
        if "text/csv" in operations.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
    }  # fmt: skip
    assert exports >= {  # other exports may join them
        "/api/admin/orders",
        "/api/admin/screenings/{id}/attendees",
        "/api/admin/reports",
        "/api/admin/reports/screenings/{id}",
        "/api/admin/reports/screenings/{id}/seats",
    }
    for path in exports:
        ok = paths[path]["get"]["responses"]["200"]
        assert "application/json" in ok["content"] and "Content-Disposition" in ok["headers"]
