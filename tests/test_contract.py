"""/openapi.json tells the truth: schemathesis drives a real server with what the document allows
(and what it does not), anonymously and as a customer, staff and an admin, and checks every
answer against the document: no 5xx, only documented statuses, content types, headers and
bodies. The seed is fixed (derandomized), so a failure shows up again on the next run.

The server is a separate `uvicorn seatmap.app:app_from_environ` process on 127.0.0.1, as in
production (its own JWT secret, no dev mode); schemathesis calls it with blocking `requests`,
which an in-process server on the test's event loop could not answer.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import asyncpg
import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis.config import SchemathesisConfig
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from seatmap import openapi
from seatmap.app import create_app
from seatmap.composition import open_runtime
from seatmap.runtime import Runtime
from seatmap.settings import Secret, Settings
from tests.conftest import REDIS_CLUSTER, with_database
from tests.support import TIMEOUT_FACTOR, free_port, make_screening, process_environ, quick_users

CALLERS: Final = ("anonymous", "customer", "staff", "admin")
# Each operation gets its coverage cases (boundaries, missing and wrong-typed fields) plus this
# many generated ones per caller: about 90 s of the suite for the four callers together.
MAX_EXAMPLES: Final = 8


def _document() -> dict[str, Any]:
    """The document the server will serve: built from the same routes, no server needed (the
    schema must exist when pytest collects, before any fixture runs)."""
    offline = Settings.from_environ(
        {"DATABASE_URL": "postgresql://127.0.0.1:9/none", "REDIS_URL": "redis://127.0.0.1:9/0",
         "SEATMAP_JWT_SECRET": "x" * 48, "SEATMAP_PUBLIC_URL": "http://127.0.0.1:9"}
    )  # fmt: skip
    decoded: dict[str, Any] = msgspec.json.decode(openapi.document(create_app(offline)))
    return decoded


def _config() -> SchemathesisConfig:
    config = SchemathesisConfig()
    project = config.projects.default
    project.update(request_timeout=10 * TIMEOUT_FACTOR)
    project.checks.update(included_check_names=["all"])
    project.generation.update(max_examples=MAX_EXAMPLES)
    return config


schema = schemathesis.openapi.from_dict(_document(), config=_config())


@pytest.fixture(scope="module")
async def contract_settings(
    pg_url: str, redis_url: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    """One database for every operation and caller of this module (a server per test would
    cost more than the requests)."""
    name = f"seatmap_contract_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    yield Settings(
        database_url=with_database(pg_url, name),
        redis_url=redis_url,
        data_dir=tmp_path_factory.mktemp("contract"),
        dev=False,
        jwt_secret=Secret("contract-secret-" + "x" * 40),
        redis_prefix=f"c{uuid.uuid4().hex[:10]}",
        log_json=False,
        redis_cluster=REDIS_CLUSTER,
    )
    admin = await asyncpg.connect(pg_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def contract_rt(contract_settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime on the server's databases, with a screening (and its cinema, auditorium and
    movie, all id 1), so that generated ids also reach real rows."""
    async with open_runtime(contract_settings, "worker") as rt:
        await make_screening(rt, ["SSSSSSSS"] * 3, ga=[("Floor", 5)])
        yield rt


@pytest.fixture(scope="module")
def contract_server(
    contract_settings: Settings, contract_rt: Runtime, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A production-like web process on these databases; its base URL. Stopped by its PID, and
    its log must hold no traceback."""
    port = free_port()
    log = tmp_path_factory.mktemp("contract-log") / "server.log"
    command = [sys.executable, "-m", "uvicorn", "seatmap.app:app_from_environ", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    url = f"http://127.0.0.1:{port}"
    environ = process_environ(contract_settings, SEATMAP_PUBLIC_URL=url)
    with log.open("wb") as out:
        proc = subprocess.Popen(command, env=environ, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 30 * TIMEOUT_FACTOR
        while True:
            assert proc.poll() is None, f"the server died on start-up:\n{log.read_text()}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not become ready"
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10 * TIMEOUT_FACTOR)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module", params=CALLERS)
async def caller(request: pytest.FixtureRequest, contract_rt: Runtime) -> dict[str, str]:
    """The headers of one kind of caller: none, or a bearer token of a fresh account of that role."""
    if request.param == "anonymous":
        return {}
    (user,) = await quick_users(contract_rt, 1, request.param)
    return user.headers


@schema.parametrize()
@hypothesis_settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_keeps_the_contract(
    case: Case[Any], caller: dict[str, str], contract_server: str
) -> None:
    """Whatever is sent, by whoever: never a 5xx, and every answer is one the document describes."""
    case.call_and_validate(
        base_url=contract_server,
        headers=caller,
        timeout=10 * TIMEOUT_FACTOR,
        excluded_checks=_beyond_the_document(case),
    )


# Requests the document cannot call valid or invalid, and the one check each would fool; every
# other check (status, content type, headers, body, no 5xx) still runs on them.
# - A valid request refused by a rule no schema states: an opaque cursor that must decode to
#   a position, a code or a signature that must be right, a seat count bounded by a setting.
_RULES_NOT_IN_SCHEMA: Final = {
    "POST /api/auth/register",  # 422: the address must still be one after NFKC (accounts/emails.py)
    "POST /api/auth/verify",  # 400 invalid_code: the code must be the one mailed
    "POST /api/payments/webhooks/{provider}",  # 400 invalid_signature: signed with our secret
    "GET /api/screenings/{id}/suggestion",  # count is bounded by SEATMAP_HOLD_MAX_SEATS
    "GET /api/admin/orders",  # from/to must be a real date or RFC 3339 time Python reads
    "GET /api/admin/reports",  # to is not before from, and at most 366 days after it
    "POST /api/admin/webhooks",  # 422: the URL's host must be public (sales/webhooks.py: check_url)
    "PATCH /api/admin/webhooks/{id}",  # the same URL rule
    # A time zone must be an IANA name this server's tz database knows.
    "POST /api/admin/cinemas",
    "PUT /api/admin/cinemas/{id}",
    "PATCH /api/admin/cinemas/{id}",
    # A layout needs at least one seat or one standing area (a rule across its rows and areas).
    "POST /api/admin/cinemas/{id}/auditoriums",
    "PUT /api/admin/auditoriums/{id}",
    # A screening ends after it starts and prices every category its auditorium has.
    "POST /api/admin/screenings",
    "PATCH /api/admin/screenings/{id}",
    # Seats must be seats (and areas, categories) of this screening's auditorium; at least one of
    # `seats`, `ga`, `best_available` (a rule across fields); at most SEATMAP_HOLD_MAX_SEATS.
    "POST /api/admin/screenings/{id}/blocks",
    "POST /api/admin/screenings/{id}/unblock",
    "POST /api/holds",
    "POST /api/boxoffice/sales",
}


def _beyond_the_document(case: Case[Any]) -> list[Any]:
    excluded: list[Any] = []
    if case.operation.label in _RULES_NOT_IN_SCHEMA or (case.query or {}).get("cursor"):
        excluded.append(positive_data_acceptance)
    # - An empty query parameter counts as absent (the document's description says so), so
    #   `?limit=` is not the invalid integer schemathesis takes it for.
    if any(value == "" for value in (case.query or {}).values()):
        excluded.append(negative_data_rejection)
    return excluded
