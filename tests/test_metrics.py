"""/metrics as Prometheus reads it: requests by route, the domain counters, the queue at scrape time.

Counters are per process and every app of the test run shares this one, so the tests compare
two scrapes; what is read from PostgreSQL belongs to the test's own database and is exact.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from seatmap import jobs, metrics
from seatmap.app import create_app
from seatmap.runtime import Runtime
from seatmap.sales import refunds
from seatmap.settings import Settings
from seatmap.simulated.outbox import delivery_outcome
from tests.conftest import running
from tests.refunding import cancel_screening, eventually, paid_orders
from tests.shopping import buy
from tests.support import TIMEOUT_FACTOR, Server, logged_in, make_screening, metric_value, quick_users


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def _ok(request: Request) -> Response:
    return Response("ok")


async def routed_as(path: str) -> str:
    """The template `route_template` reads from the scope Starlette's routers leave behind,
    nested as app.py nests them."""
    app = Starlette(
        routes=[
            Route("/healthz", _ok),
            Mount("/api", routes=[Route("/orders/{id:int}/refund", _ok, methods=["POST"])]),
            Mount("/web", app=Starlette(routes=[Route("/app.js", _ok)])),
            Mount("/", app=Response("static")),  # like StaticFiles: an app without routes
        ]
    )
    seen: list[str] = []

    async def probe(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        seen.append(metrics.route_template(scope))

    async with httpx.AsyncClient(transport=httpx.ASGITransport(probe), base_url="http://test") as c:
        await c.get(path)
    (template,) = seen
    return template


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/healthz", "/healthz"),
        ("/api/orders/42/refund", "/api/orders/{id:int}/refund"),  # the template, never the id
        ("/api/no/such/thing", "/api/{path}"),  # the mount answered 404 itself
        ("/web/app.js", "/web/app.js"),  # a route of a mounted app
        ("/css/site.css", "/{path}"),  # a mount without routes: one series, whatever the file
        ("/nowhere", "/{path}"),
    ],
)
async def test_requests_are_labelled_by_route_template(path: str, template: str) -> None:
    """A request is counted under the route it matched as written, so ids and scanners do not
    make one series each."""
    assert await routed_as(path) == template


def test_a_request_no_route_matched_is_unmatched() -> None:
    """A request the router never matched (no `route` in its scope) has the one `unmatched` label."""
    assert metrics.route_template({"type": "http", "path": "/x"}) == "unmatched"


def _gauges(snapshot: metrics.Snapshot | None) -> dict[tuple[str, tuple[str, ...]], float]:
    return {
        (family.name, tuple(sample.labels.values())): sample.value
        for family in metrics.families(snapshot)
        for sample in family.samples
    }


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        (None, {("seatmap_scrape_postgres_up", ()): 0}),  # out: not "no orders, empty queue"
        (
            metrics.Snapshot(orders={"paid": 3, "pending": 1}, jobs=[jobs.Backlog("refund", 2, 1, 7.5)]),
            {
                ("seatmap_scrape_postgres_up", ()): 1,
                ("seatmap_orders", ("paid",)): 3,
                ("seatmap_orders", ("pending",)): 1,
                ("seatmap_jobs_queued", ("refund",)): 2,
                ("seatmap_jobs_oldest_age_seconds", ("refund",)): 7.5,
                ("seatmap_jobs_dead", ("refund",)): 1,
            },
        ),
    ],
)
def test_scrape_time_families(
    snapshot: metrics.Snapshot | None, expected: dict[tuple[str, tuple[str, ...]], float]
) -> None:
    """What PostgreSQL said becomes one gauge per state and kind; a failed read says so."""
    assert _gauges(snapshot) == expected


@pytest.mark.parametrize(
    ("status", "attempts", "outcome"),
    [
        (None, 1, "failed"),  # no answer: tried again later
        (503, 1, "failed"),
        (400, 1, "refused"),
        (302, 3, "refused"),
        (503, 12, "given_up"),
        (None, 12, "given_up"),
    ],
)
def test_webhook_delivery_outcomes(status: int | None, attempts: int, outcome: str) -> None:
    """An event the merchant did not take is counted as refused, failed, or given up at the last try."""
    assert delivery_outcome(status, attempts) == outcome


async def test_request_counter_moves_by_method_route_and_status(client: httpx.AsyncClient) -> None:
    """/metrics parses as Prometheus text, and its request counters and latency move with traffic."""
    before = await scrape(client)
    assert metric_value(before, "seatmap_process_uptime_seconds") > 0
    await client.get("/api/no/such/thing")
    await client.get("/api/no/such/thing")
    await client.get("/healthz")
    assert (await client.post("/api/orders/123456/refund")).status_code == 401
    after = await scrape(client)

    def moved(name: str, **labels: str) -> float:
        return metric_value(after, name, labels) - metric_value(before, name, labels)

    requests = "seatmap_http_requests_total"
    assert moved(requests, method="GET", route="/api/{path}", status="404") == 2
    assert moved(requests, method="GET", route="/healthz", status="200") == 1
    assert moved(requests, method="POST", route="/api/orders/{id:int}/refund", status="401") == 1
    # the first scrape too; this one is counted after it answers
    assert moved(requests, route="/metrics") == 1
    assert moved(requests) == 5
    assert moved("seatmap_http_request_duration_seconds_count", route="/healthz") == 1
    assert moved("seatmap_http_request_duration_seconds_sum") > 0
    assert moved("seatmap_http_request_duration_seconds_bucket", route="/healthz", le="+Inf") == 1


async def test_openmetrics_when_prometheus_asks_for_it(client: httpx.AsyncClient) -> None:
    """A scraper that asks for OpenMetrics gets it (with its `# EOF`), the same numbers."""
    response = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")


async def test_refunds_by_outcome_and_orders_by_state(
    server: Server, client: httpx.AsyncClient, rt: Runtime
) -> None:
    """A cancelled screening's paid order shows as refund_pending with its refund job queued; once
    the job returns the money, the order is refunded and the `succeeded` refunds moved by one."""
    screening = await make_screening(rt, ["S" * 4], strand_rule=False)
    (paid,) = await paid_orders(rt, screening, 1)
    first = await scrape(client)
    assert metric_value(first, "seatmap_scrape_postgres_up") == 1
    assert metric_value(first, "seatmap_orders", {"state": "paid"}) == 1

    await cancel_screening(client, rt, screening)
    queued = await scrape(client)
    assert metric_value(queued, "seatmap_orders", {"state": "refund_pending"}) == 1
    assert metric_value(queued, "seatmap_jobs_queued", {"kind": refunds.JOB}) == 1

    async with rt.pool.acquire() as conn:
        refund_id = await conn.fetchval("SELECT id FROM refunds WHERE order_id = $1", paid.id)
    assert server.runtime is not None
    job = jobs.Job(1, refunds.JOB, {"refund_id": refund_id}, 1, 3, datetime.now(UTC))
    await refunds.run_refund(server.runtime, job)
    done = await scrape(client)
    assert metric_value(done, "seatmap_orders", {"state": "refunded"}) == 1
    assert metric_value(done, "seatmap_orders", {"state": "refund_pending"}) == 0
    outcome = "seatmap_refunds_total"
    assert (
        metric_value(done, outcome, {"outcome": "succeeded"})
        - metric_value(queued, outcome, {"outcome": "succeeded"})
        == 1
    )


async def test_queue_depth_and_age_show_a_waiting_job(client: httpx.AsyncClient, rt: Runtime) -> None:
    """A job due a minute ago that no worker took shows in the queue with its age; a dead one too."""
    empty = await scrape(client)
    assert metric_value(empty, "seatmap_jobs_queued", {"kind": "metrics_probe"}) == 0
    async with rt.pool.acquire() as conn:
        await jobs.enqueue(conn, "metrics_probe", run_at=datetime.now(UTC) - timedelta(minutes=1))
        await jobs.enqueue(conn, "metrics_probe", run_at=datetime.now(UTC) + timedelta(hours=1))
        dead = await jobs.enqueue(conn, "metrics_probe")
        await conn.execute("UPDATE jobs SET status = 'dead' WHERE id = $1", dead)
    text = await scrape(client)
    assert metric_value(text, "seatmap_jobs_queued", {"kind": "metrics_probe"}) == 2
    assert metric_value(text, "seatmap_jobs_dead", {"kind": "metrics_probe"}) == 1
    age = metric_value(text, "seatmap_jobs_oldest_age_seconds", {"kind": "metrics_probe"})
    assert 60 <= age < 120


async def test_webhooks_delivered_received_and_refused(client: httpx.AsyncClient, rt: Runtime) -> None:
    """A purchase's webhook is counted as taken by the gateway and paid by us; a forged one as refused."""
    screening = await make_screening(rt, ["S" * 4], strand_rule=False)
    buyer = await logged_in(rt, client)
    before = await scrape(client)
    await buy(client, buyer, screening, ["A1"])
    forged = await client.post("/api/payments/webhooks/simulated", content=b"{}")
    assert forged.status_code == 400
    after = await scrape(client)

    def moved(name: str, outcome: str) -> float:
        return metric_value(after, name, {"outcome": outcome}) - metric_value(
            before, name, {"outcome": outcome}
        )

    assert moved("seatmap_webhooks_received_total", "paid") == 1
    assert moved("seatmap_webhooks_received_total", "refused") == 1
    assert moved("seatmap_webhook_deliveries_total", "taken") >= 1


def test_every_family_has_help_and_a_seatmap_or_standard_name() -> None:
    """The exposition is the default registry's: our families are there by import, with help text."""
    names = {family.name: family.documentation for family in metrics.Scrape(None).collect()}
    for name in ("seatmap_http_requests", "seatmap_refunds", "seatmap_jobs", "seatmap_webhook_deliveries",
                 "seatmap_webhooks_received", "process_start_time_seconds"):  # fmt: skip
        assert names.get(name), name


async def test_job_outcomes_by_kind(rt: Runtime) -> None:
    """A job that fails once then works counts a retry and a done; one out of attempts counts dead."""
    calls = 0

    async def flaky(job: jobs.Job) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("gateway timeout")

    async def broken(job: jobs.Job) -> None:
        raise ValueError("no such order")

    def count(kind: str, outcome: str) -> float:
        page = generate_latest().decode()
        return metric_value(page, "seatmap_jobs_total", {"kind": kind, "outcome": outcome})

    before = {(k, o): count(k, o) for k in ("flaky", "broken") for o in ("done", "retry", "dead")}
    async with rt.pool.acquire() as conn:
        flaky_id = await jobs.enqueue(conn, "flaky", max_attempts=3)
        broken_id = await jobs.enqueue(conn, "broken", max_attempts=1)
    assert rt.settings.database_url is not None
    policy = jobs.Policy(concurrency=2, max_attempts=3, backoff=0.05, max_backoff=0.1, poll_interval=0.1)
    worker = jobs.Worker(rt.pool, rt.settings.database_url, {"flaky": flaky, "broken": broken}, policy)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        async with asyncio.timeout(10 * TIMEOUT_FACTOR):
            while True:
                async with rt.pool.acquire() as conn:
                    finished = await conn.fetchval(
                        "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status IN ('done', 'dead')",
                        [flaky_id, broken_id],
                    )
                if finished == 2:
                    break
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await task
    moved = {key: count(*key) - value for key, value in before.items()}
    assert moved == {
        ("flaky", "done"): 1, ("flaky", "retry"): 1, ("flaky", "dead"): 0,
        ("broken", "done"): 0, ("broken", "retry"): 0, ("broken", "dead"): 1,
    }  # fmt: skip


async def test_a_hold_left_to_expire_moves_the_restock_counter_and_the_lag_histogram(
    settings: Settings, rt: Runtime
) -> None:
    """Nobody touches a 1 s hold: Redis expires it, the seat comes back, and /metrics says so."""
    screening = await make_screening(rt, ["SSSS"])
    short = replace(settings, hold_ttl=1)
    async with running(create_app(short)) as srv, httpx.AsyncClient(base_url=srv.http) as client:
        (alice,) = await quick_users(rt, 1)
        before = await scrape(client)
        held = await client.post(
            "/api/holds", json={"screening_id": screening, "seats": ["A1"]}, headers=alice.headers
        )
        assert held.status_code == 201

        async def restocked() -> bool:
            return "A1" not in (await client.get(f"/api/screenings/{screening}")).json()["seats"]

        await eventually(restocked, within=10)
        after = await scrape(client)

    def moved(name: str) -> float:
        return metric_value(after, name, {}) - metric_value(before, name, {})

    assert moved("seatmap_restocks_total") == 1
    assert moved("seatmap_restock_lag_seconds_count") == 1
    # Restocked by the keyspace notification, well inside the sweeper's interval after the deadline.
    assert 0 <= moved("seatmap_restock_lag_seconds_sum") < settings.sweep_interval + 1 * TIMEOUT_FACTOR
    assert moved("seatmap_holds_total") == 1
