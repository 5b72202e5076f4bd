"""Benchmarks run by hand (`python -m bench.live`), never by the test suite. See bench/README.md."""

from __future__ import annotations
