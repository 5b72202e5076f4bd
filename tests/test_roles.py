"""Every endpoint that needs a role refuses callers without it, before looking at anything else."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from seatmap.api import Doc
from seatmap.app import create_app
from seatmap.openapi import endpoints
from seatmap.runtime import Runtime
from seatmap.settings import Settings
from tests.support import create_user, login

_RANK = {"customer": 0, "staff": 1, "admin": 2}
_SAMPLE = {"token": "1.aaaaaaaaaaaaaaaaaaaaaaaa", "code": "nosuchticketcode"}


def guarded(app: Starlette) -> list[tuple[str, str, str]]:
    """(method, concrete path, least role) of every documented endpoint that needs a role."""
    found = []
    for path, method, handler, _ in endpoints(app.routes):
        doc = getattr(handler, "__openapi__", None)
        if isinstance(doc, Doc) and doc.auth is not None:
            concrete = path
            for name, value in _SAMPLE.items():
                concrete = concrete.replace("{" + name + "}", value)
            while "{" in concrete:
                start, end = concrete.index("{"), concrete.index("}")
                concrete = concrete[:start] + "1" + concrete[end + 1 :]
            found.append((method, concrete, doc.auth))
    return found


async def test_role_checks_cover_every_guarded_endpoint(
    rt: Runtime, settings: Settings, client: httpx.AsyncClient
) -> None:
    """Anonymous callers get 401, and too small a role 403, on every guarded endpoint."""
    routes = guarded(create_app(settings))
    assert any(role == "admin" for _, _, role in routes)
    users = {role: await login(client, await create_user(rt, role)) for role in _RANK}  # type: ignore[arg-type]
    client.cookies.clear()
    wrong: list[str] = []
    for method, path, least in routes:
        body: Any = {} if method in ("POST", "PUT", "PATCH") else None
        r = await client.request(method, path, json=body)
        if r.status_code != 401:
            wrong.append(f"anonymous {method} {path}: {r.status_code}")
        for role, user in users.items():
            if _RANK[role] < _RANK[least]:
                r = await client.request(method, path, json=body, headers=user.headers)
                if r.status_code != 403 or r.json()["error"]["code"] != "forbidden":
                    wrong.append(f"{role} {method} {path}: {r.status_code}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("header", ["Bearer garbage", "Bearer a.b.c", "Basic dXNlcjpwdw=="])
async def test_bad_tokens_are_401_not_anonymous(client: httpx.AsyncClient, header: str) -> None:
    """A broken or foreign Authorization header is refused outright, even on public reads."""
    for method, path in (("POST", "/api/holds"), ("GET", "/api/me")):
        r = await client.request(
            method, path, json={} if method == "POST" else None, headers={"Authorization": header}
        )
        assert r.status_code == 401, (method, path)
