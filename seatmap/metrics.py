"""Process metrics in the Prometheus text format, and the middleware that counts requests.

Each process keeps its own numbers (Prometheus scrapes processes, not deployments), so the
registry is a plain in-memory object: `counter()` and `summary()` for things we count as
they happen, `gauge(name, help, fn)` for things read at scrape time (a websocket module
registers `gauge("seatmap_ws_viewers", "...", lambda: len(sockets))`). Registering a name
again returns the same counter, or replaces the gauge's function, so an app built twice in
one process (the tests) does not fail or double up.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_NAME: Final = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL: Final = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")

Labels = tuple[tuple[str, str], ...]


def _labels(labels: dict[str, str]) -> Labels:
    for name in labels:
        if not _LABEL.match(name):
            raise ValueError(f"invalid label name {name!r}")
    return tuple(sorted(labels.items()))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels) + "}"


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


class Counter:
    """A monotonically increasing number, optionally split by labels."""

    kind: Final = "counter"

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self._values: dict[Labels, float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = _labels(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_labels(labels), 0.0)

    def samples(self) -> Iterator[tuple[str, Labels, float]]:
        with self._lock:
            items = list(self._values.items())
        for labels, value in items:
            yield self.name, labels, value


class Summary:
    """Sum and count of observations (durations), without quantiles: cheap, and enough for
    an average rate in PromQL (`rate(x_sum[5m]) / rate(x_count[5m])`)."""

    kind: Final = "summary"

    def __init__(self, name: str, help: str) -> None:
        self.name = name
        self.help = help
        self._values: dict[Labels, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, **labels: str) -> None:
        key = _labels(labels)
        with self._lock:
            total, count = self._values.get(key, (0.0, 0))
            self._values[key] = (total + value, count + 1)

    def samples(self) -> Iterator[tuple[str, Labels, float]]:
        with self._lock:
            items = list(self._values.items())
        for labels, (total, count) in items:
            yield f"{self.name}_sum", labels, total
            yield f"{self.name}_count", labels, float(count)


class Gauge:
    """A value read when /metrics is scraped, from the function its owner registered."""

    kind: Final = "gauge"

    def __init__(self, name: str, help: str, fn: Callable[[], float]) -> None:
        self.name = name
        self.help = help
        self.fn = fn

    def samples(self) -> Iterator[tuple[str, Labels, float]]:
        yield self.name, (), float(self.fn())


Metric = Counter | Summary | Gauge


class Registry:
    """The metrics of one process, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def _get(self, name: str, kind: type[Counter] | type[Summary], help: str) -> Counter | Summary:
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        with self._lock:
            existing = self._metrics.get(name)
            if existing is None:
                created = self._metrics[name] = kind(name, help)
                return created
        if not isinstance(existing, kind):
            raise ValueError(f"metric {name!r} is already registered as a {existing.kind}")
        return existing

    def counter(self, name: str, help: str) -> Counter:
        metric = self._get(name, Counter, help)
        assert isinstance(metric, Counter)
        return metric

    def summary(self, name: str, help: str) -> Summary:
        metric = self._get(name, Summary, help)
        assert isinstance(metric, Summary)
        return metric

    def gauge(self, name: str, help: str, fn: Callable[[], float]) -> Gauge:
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        with self._lock:
            existing = self._metrics.get(name)
            if existing is not None and not isinstance(existing, Gauge):
                raise ValueError(f"metric {name!r} is already registered as a {existing.kind}")
            gauge = self._metrics[name] = Gauge(name, help, fn)
        return gauge

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for metric in metrics:
            try:
                samples = list(metric.samples())
            except Exception as exc:  # a gauge's function failing must not break the scrape
                lines.append(f"# {metric.name} unavailable: {type(exc).__name__}")
                continue
            lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            for name, labels, value in samples:
                lines.append(f"{name}{_format_labels(labels)} {_format_value(value)}")
        return "\n".join(lines) + "\n"


REGISTRY: Final = Registry()
_STARTED: Final = time.time()
_STARTED_MONOTONIC: Final = time.monotonic()


def counter(name: str, help: str) -> Counter:
    """Get or create a counter in this process's registry."""
    return REGISTRY.counter(name, help)


def summary(name: str, help: str) -> Summary:
    """Get or create a summary (sum and count) in this process's registry."""
    return REGISTRY.summary(name, help)


def gauge(name: str, help: str, fn: Callable[[], float]) -> Gauge:
    """Register (or replace) a gauge whose value `fn()` is read at scrape time."""
    return REGISTRY.gauge(name, help, fn)


def render() -> str:
    return REGISTRY.render()


gauge(
    "process_start_time_seconds",
    "When this process loaded seatmap, in seconds since the Unix epoch.",
    lambda: _STARTED,
)
gauge(
    "seatmap_process_uptime_seconds",
    "Seconds since this process started.",
    lambda: time.monotonic() - _STARTED_MONOTONIC,
)
gauge("seatmap_process_pid", "The process id, to tell web processes apart.", lambda: os.getpid())
http_requests = counter("seatmap_http_requests_total", "HTTP requests answered, by status class (2xx, 4xx…).")
http_duration = summary("seatmap_http_request_duration_seconds", "Time spent answering HTTP requests.")


class Metrics:
    """Pure ASGI middleware: counts every HTTP request by status class and times it.

    A request that raises before answering is counted as 5xx: the server error handler
    outside this middleware turns it into a 500.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            http_requests.inc(status=f"{status // 100}xx")
            http_duration.observe(time.perf_counter() - started)
