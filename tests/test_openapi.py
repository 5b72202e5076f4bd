"""/openapi.json is generated from the real routes and types; /docs renders it offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router

from seatmap import openapi
from seatmap.api import documented, respond
from seatmap.app import create_app
from seatmap.settings import Settings


def app_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, Route]]:
    """(path, METHOD, route) of every HTTP route, walked independently of seatmap.openapi."""
    for route in routes:
        if isinstance(route, Mount):
            yield from app_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = re.sub(r"\{(\w+)(:\w+)?\}", r"{\1}", prefix + route.path)
            for method in route.methods or {"GET"}:
                if method != "HEAD":
                    yield path, method, route


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = spec
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
        node = node[part]
    return node


async def test_spec_is_openapi_3_1(client: httpx.AsyncClient) -> None:
    """/openapi.json is an OpenAPI 3.1 document whose every $ref and operation is well formed."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    spec = response.json()
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert set(resolve(spec, "#/components/schemas/Error")["required"]) == {"error"}
    for ref in refs(spec):
        resolve(spec, ref)
    operation_ids: list[str] = []
    for path, methods in spec["paths"].items():
        assert path.startswith("/")
        declared = {
            p["name"] for op in methods.values() for p in op.get("parameters", []) if p["in"] == "path"
        }
        assert declared == set(re.findall(r"\{(\w+)\}", path)), path
        for method, op in methods.items():
            assert method in {"get", "put", "post", "delete", "patch"}, (path, method)
            assert op["summary"], (path, method)
            assert op["responses"], (path, method)
            assert all(re.fullmatch(r"[1-5]\d\d", status) for status in op["responses"]), (path, method)
            operation_ids.append(op["operationId"])
            if "x-role" in op:
                assert op["security"] and "401" in op["responses"] and "403" in op["responses"]
            if "requestBody" in op:
                assert "422" in op["responses"]
    assert len(operation_ids) == len(set(operation_ids))


async def test_every_api_route_is_documented(client: httpx.AsyncClient, settings: Settings) -> None:
    """Every /api route of the app appears in the spec, with the summary its endpoint declares."""
    spec = (await client.get("/openapi.json")).json()
    found = list(app_routes(create_app(settings).routes))
    api = [(path, method, route) for path, method, route in found if path.startswith("/api/")]
    assert api, "the app has no /api routes"
    undocumented = sorted(f"{m} {p}" for p, m, r in api if not hasattr(r.endpoint, "__openapi__"))
    assert not undocumented, f"endpoints without @documented: {undocumented}"
    for path, method, route in api:
        operation = spec["paths"].get(path, {}).get(method.lower())
        assert operation is not None, f"{method} {path} is missing from /openapi.json"
        assert operation["summary"] == getattr(route.endpoint, "__openapi__").summary  # noqa: B009


async def test_documented_bodies_resolve_to_their_structs(client: httpx.AsyncClient) -> None:
    """Each request body and response schema resolves to a described object, not an empty `{}`."""
    spec = (await client.get("/openapi.json")).json()
    bodies = 0
    for methods in spec["paths"].values():
        for op in methods.values():
            contents = [op["requestBody"]["content"]] if "requestBody" in op else []
            for response in op["responses"].values():
                if "$ref" in response:
                    response = resolve(spec, response["$ref"])
                if "content" in response:
                    contents.append(response["content"])
            for content in contents:
                for entry in content.values():  # JSON, or a page or image (a string)
                    schema = entry["schema"]
                    while "$ref" in schema:
                        schema = resolve(spec, schema["$ref"])
                    assert schema, f"{op['operationId']} has an empty schema"
            if "requestBody" in op:
                bodies += 1
                schema = op["requestBody"]["content"]["application/json"]["schema"]
                target = resolve(spec, schema["$ref"]) if "$ref" in schema else schema
                assert target.get("type") == "object" and target.get("properties"), op["operationId"]
    assert bodies > 0, "no endpoint documents a request body"


class Seat(msgspec.Struct, rename="camel"):
    seat_label: str
    price_minor: int = msgspec.field(default=0)


@documented(
    "Book a seat", body=Seat, responses={201: Seat, 409: None}, auth="staff", query=("limit:int", "q")
)
async def book(request: Request) -> Response:
    return respond({})


async def undocumented(request: Request) -> Response:
    """First line becomes the summary.

    The rest is the description."""
    return respond({})


def test_mounts_params_and_declared_types() -> None:
    """Mount prefixes join, `{id:int}` becomes an integer path parameter, and each declared
    type, status, role and query parameter shows up where a client generator looks for it."""
    inner = Router(routes=[Route("/seats/{label}", book, methods=["POST", "GET"])])
    routes: list[BaseRoute] = [
        Mount("/api", routes=[Mount("/cinemas/{cinema_id:int}", app=inner)]),
        Route("/plain", undocumented),
    ]
    spec = openapi.build(routes)
    assert set(spec["paths"]) == {"/api/cinemas/{cinema_id}/seats/{label}", "/plain"}
    post = spec["paths"]["/api/cinemas/{cinema_id}/seats/{label}"]["post"]
    params = {p["name"]: p for p in post["parameters"]}
    assert params["cinema_id"]["in"] == "path" and params["cinema_id"]["schema"]["type"] == "integer"
    assert params["label"]["schema"] == {"type": "string"}
    assert params["limit"] == {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer"},
    }
    assert params["q"]["schema"] == {"type": "string"}
    body = resolve(spec, post["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert body["properties"].keys() == {"seatLabel", "priceMinor"} and body["required"] == ["seatLabel"]
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("Seat")
    assert post["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    assert {"400", "401", "403", "422"} <= post["responses"].keys()
    assert post["x-role"] == "staff" and {"bearerAuth": []} in post["security"]
    assert "get" in spec["paths"]["/api/cinemas/{cinema_id}/seats/{label}"]
    plain = spec["paths"]["/plain"]["get"]
    assert plain["summary"] == "First line becomes the summary."
    assert "The rest is the description." in plain["description"]
    assert "security" not in plain


def test_document_is_built_once_per_app(settings: Settings) -> None:
    """The spec is generated on first use and then served from a cache, per app."""
    app = create_app(settings)
    first = openapi.document(app)
    assert openapi.document(app) is first
    assert openapi.document(create_app(settings)) is not first


async def test_docs_page_works_offline(client: httpx.AsyncClient) -> None:
    """/docs is an HTML page that loads /openapi.json and nothing from another host."""
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "/openapi.json" in html
    assert "<script>" in html
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I), "references another host"
    assert not re.search(r"https?://", html), "mentions an absolute URL"
    assert not re.search(r"@import|<link\b", html, re.I)


async def test_document_names_every_status_parameter_and_media_type(client: httpx.AsyncClient) -> None:
    """What a client generator reads is what the server does: 404 wherever a path names a row,
    409/404 on holds, integer `limit`s with their bounds, the Idempotency-Key header of orders,
    the payment page as HTML and logout without a required body."""
    spec = (await client.get("/openapi.json")).json()
    operations = [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]
    without_404 = [f"{m} {p}" for p, m, op in operations if "{" in p and "404" not in op["responses"]]
    assert not without_404, without_404
    assert {"404", "409"} <= spec["paths"]["/api/holds"]["post"]["responses"].keys()
    limits = {
        f"{m} {p}": param["schema"]
        for p, m, op in operations
        for param in op.get("parameters", [])
        if param["name"] == "limit"
    }
    assert len(limits) >= 8 and all(s["type"] == "integer" and s["minimum"] == 1 for s in limits.values())
    assert limits["get /api/cinemas"]["maximum"] == 100 and limits["get /api/admin/users"]["maximum"] == 200
    (key,) = [p for p in spec["paths"]["/api/orders"]["post"]["parameters"] if p["in"] == "header"]
    assert (key["name"], key["required"], key["schema"]["type"]) == ("Idempotency-Key", True, "string")
    page = spec["paths"]["/pay/{id}"]["get"]["responses"]
    assert set(page["200"]["content"]) == set(page["404"]["content"]) == {"text/html"}
    assert spec["paths"]["/api/auth/logout"]["post"]["requestBody"]["required"] is False
    assert spec["paths"]["/api/auth/login"]["post"]["requestBody"]["required"] is True


async def test_405_names_every_method_of_the_path(client: httpx.AsyncClient) -> None:
    """A method a path does not serve is 405 with `Allow` naming every method it does serve,
    though they come from several routes (PUT, PATCH and DELETE of a cinema), pages included."""
    r = await client.request("OPTIONS", "/api/admin/cinemas/1")
    assert (r.status_code, r.headers["allow"]) == (405, "DELETE, PATCH, PUT")
    assert r.json()["error"]["code"] == "method_not_allowed"
    r = await client.request("TRACE", "/api/orders")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD, POST")
    r = await client.request("OPTIONS", "/pay/abc/approve")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
