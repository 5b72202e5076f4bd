"""The OpenAPI 3.1 document, made from the app's routes and the msgspec types they declare.

Nothing here is written by hand per endpoint: each endpoint carries a `seatmap.api.Doc`
(set by `@documented`) naming its body and response Structs, and the JSON Schemas come from
`msgspec.json.schema_components` over those same Structs, so the spec cannot drift from what
the server validates and encodes. The document is built once per app and cached.
"""

from __future__ import annotations

import http
import inspect
import weakref
from collections.abc import Iterator, Sequence
from typing import Any, Final

import msgspec
from starlette.convertors import Convertor, FloatConvertor, IntegerConvertor, UUIDConvertor
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

import seatmap
from seatmap.accounts.auth import ACCESS_COOKIE
from seatmap.api import Doc, Param

REF: Final = "#/components/schemas/{name}"
_ERROR_REF: Final = {"$ref": REF.format(name="Error")}
# Query parameters may name their type after a colon in `@documented(query=("limit:int",))`.
_QUERY_TYPES: Final[dict[str, dict[str, Any]]] = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
}


class ErrorDetail(msgspec.Struct):
    """`code` is stable, clients switch on it; errors may carry more fields (`path`, `seats`…)."""

    code: str
    message: str


class Error(msgspec.Struct):
    """Every error answer has this shape (see `seatmap.errors`)."""

    error: ErrorDetail


def _convertor_schema(convertor: Convertor[Any]) -> dict[str, Any]:
    if isinstance(convertor, IntegerConvertor):
        # Ids are PostgreSQL bigints: the document says so, and the fuzzer tries the edge.
        return {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    if isinstance(convertor, FloatConvertor):
        return {"type": "number"}
    if isinstance(convertor, UUIDConvertor):
        return {"type": "string", "format": "uuid"}
    return {"type": "string"}


def endpoints(
    routes: Sequence[BaseRoute], prefix: str = "", params: dict[str, Any] | None = None
) -> Iterator[tuple[str, str, Any, dict[str, Any]]]:
    """Walk routes and mounted routers: (path with `{name}` params, METHOD, handler, convertors).

    WebSocket routes and mounted apps without routes (static files) have no place in OpenAPI.
    Every endpoint is a function (`@documented`), so a route's methods are its operations.
    """
    params = params or {}
    for route in routes:
        if isinstance(route, Mount):
            # path_format of a Mount ends with the catch-all "/{path}" that Starlette adds.
            mount_format = route.path_format.removesuffix("/{path}")
            mount_params = {k: v for k, v in route.param_convertors.items() if k != "path"}
            yield from endpoints(route.routes, prefix + mount_format, {**params, **mount_params})
        elif isinstance(route, Route) and route.include_in_schema:
            path = prefix + route.path_format
            convertors = {**params, **route.param_convertors}
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    yield path, method, route.endpoint, convertors


def _status_text(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return str(status)


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


_SHARED_RESPONSES: Final[dict[str, dict[str, Any]]] = {
    "BadRequest": _error_response("The body is not valid JSON (`malformed_json`)."),
    "Unauthorized": _error_response("No valid access token (`unauthorized`, `invalid_token`)."),
    "Forbidden": _error_response("The caller's role does not allow this (`forbidden`)."),
    "NotFound": _error_response("Nothing has this id, token or code, or not for you (`not_found`)."),
    "InvalidInput": _error_response("The input failed validation; `path` names the field (`invalid_input`)."),
    "UnsupportedMediaType": _error_response("The body must be `application/json`."),
    "PayloadTooLarge": _error_response("The body is larger than 1 MiB."),
}


def _query_parameters(query: Any) -> list[dict[str, Any]]:
    """`Doc.query` as OpenAPI parameters: a Struct's fields (bounds and defaults from its
    schema), or names with an optional type after a colon, or `Param`s."""
    if isinstance(query, type):
        schema = msgspec.json.schema(query)
        if "$ref" in schema:
            schema = schema["$defs"][schema["$ref"].rpartition("/")[2]]
        required = set(schema.get("required", ()))
        return [
            {"name": name, "in": "query", "required": name in required, "schema": field}
            for name, field in schema["properties"].items()
        ]
    found: list[dict[str, Any]] = []
    for item in query:
        if isinstance(item, Param):
            found.append({"name": item.name, "in": "query", "required": item.required, "schema": item.schema})
        else:
            name, _, kind = item.partition(":")
            found.append(
                {"name": name, "in": "query", "required": False, "schema": _QUERY_TYPES[kind or "str"]}
            )
    return found


def _shared(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/responses/{name}"}


def _operation_id(handler: Any, method: str, taken: set[str]) -> str:
    module = (getattr(handler, "__module__", "") or "").rpartition(".")[2]
    name = str(getattr(handler, "__qualname__", None) or getattr(handler, "__name__", "endpoint"))
    base = f"{module}.{name}".replace(".", "_").strip("_") if module else name
    candidate = base
    if candidate in taken:
        candidate = f"{base}_{method.lower()}"
    n = 2
    while candidate in taken:
        candidate = f"{base}_{method.lower()}{n}"
        n += 1
    taken.add(candidate)
    return candidate


# api.decode refuses NUL in every string of a body (PostgreSQL cannot store it): the document says
# so on each free-text string, or a client (and schemathesis) would take such a body for valid.
_NO_NUL: Final = "^[^\\u0000]*$"


def _refuse_nul(node: Any) -> None:
    if isinstance(node, dict):
        if node.get("type") == "string" and not {"pattern", "enum", "const", "format"} & node.keys():
            node["pattern"] = _NO_NUL
        for value in node.values():
            _refuse_nul(value)
    elif isinstance(node, list):
        for value in node:
            _refuse_nul(value)


def build(
    routes: Sequence[BaseRoute], *, title: str = "seatmap", version: str = seatmap.__version__
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for these routes, as a JSON-ready dict."""
    found = list(endpoints(routes))
    # First pass: every type any endpoint names, so schema_components can share components.
    types: list[Any] = [Error]
    for _, _, handler, _ in found:
        doc = getattr(handler, "__openapi__", None)
        if isinstance(doc, Doc):
            if doc.body is not None:
                types.append(doc.body)
            types.extend(t for t in doc.responses.values() if t is not None and not isinstance(t, str))
    schemas, components = msgspec.json.schema_components(types, ref_template=REF)
    _refuse_nul(components)
    schema_of = dict(zip(map(id, types), schemas, strict=True))

    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for path, method, handler, convertors in found:
        doc = getattr(handler, "__openapi__", None)
        doc = doc if isinstance(doc, Doc) else None
        module_tag = (getattr(handler, "__module__", "") or "").rpartition(".")[2] or "default"
        summary = doc.summary if doc else (inspect.getdoc(handler) or handler.__name__).split("\n")[0]
        operation: dict[str, Any] = {
            "operationId": _operation_id(handler, method, taken),
            "summary": summary,
            "tags": list(doc.tags) if doc and doc.tags else [module_tag],
        }
        description = inspect.getdoc(handler)
        if description and description != summary:
            operation["description"] = description
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": _convertor_schema(conv)}
            for name, conv in convertors.items()
            if "{" + name + "}" in path
        ]
        if doc:
            parameters += _query_parameters(doc.query)
            parameters += [
                {"name": h.name, "in": "header", "required": h.required, "schema": h.schema}
                for h in doc.headers
            ]
        if parameters:
            operation["parameters"] = parameters
        responses: dict[str, Any] = {}
        for status, type_ in sorted((doc.responses if doc else {}).items()):
            if isinstance(type_, str):
                # A media type: a page or an image (or a page saying "not found"), not JSON.
                responses[str(status)] = {
                    "description": _status_text(status),
                    "content": {type_: {"schema": {"type": "string"}}},
                }
            elif type_ is None:
                responses[str(status)] = (
                    _error_response(_status_text(status))
                    if status >= 400
                    else {"description": _status_text(status)}
                )
            else:
                responses[str(status)] = {
                    "description": _status_text(status),
                    "content": {"application/json": {"schema": schema_of[id(type_)]}},
                }
        if not any(code.startswith("2") for code in responses):
            responses.setdefault("200", {"description": "OK"})
        if any(p["in"] == "path" for p in parameters):
            # Every path names a row (or a token, a code) that may not exist.
            responses.setdefault("404", _shared("NotFound"))
        if doc and doc.body is not None:
            operation["requestBody"] = {
                "required": doc.body_required,
                "content": {"application/json": {"schema": schema_of[id(doc.body)]}},
            }
            responses.setdefault("400", _shared("BadRequest"))
            responses.setdefault("413", _shared("PayloadTooLarge"))
            responses.setdefault("415", _shared("UnsupportedMediaType"))
        if doc and (doc.body is not None or doc.query or doc.headers):
            responses.setdefault("422", _shared("InvalidInput"))
        if doc and doc.auth is not None:
            operation["security"] = [{"bearerAuth": []}, {"cookieAuth": []}]
            operation["x-role"] = doc.auth
            scoped = ""
            if doc.scope == "cinema":
                operation["x-scope"] = "cinema"
                scoped = " An organizer may, for its own cinemas' data only (403 elsewhere)."
            operation["description"] = (
                f"Needs a logged-in {doc.auth} (or a higher role).{scoped}\n\n"
                + operation.get("description", "")
            ).strip()
            responses.setdefault("401", _shared("Unauthorized"))
            responses.setdefault("403", _shared("Forbidden"))
        operation["responses"] = dict(sorted(responses.items()))
        paths.setdefault(path, {})[method.lower()] = operation

    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": (
                "Real-time seat maps for cinemas and events. Errors are always "
                '`{"error": {"code", "message", …}}`; money is integer minor units with a currency. '
                "An empty query parameter (`?limit=`) counts as absent."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": _SHARED_RESPONSES,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "cookieAuth": {"type": "apiKey", "in": "cookie", "name": ACCESS_COOKIE},
            },
        },
    }


_cache: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def document(app: ASGIApp) -> bytes:
    """The encoded document of this app (a Starlette app or Router), built on first use."""
    try:
        return _cache[app]
    except KeyError:
        pass
    routes: Sequence[BaseRoute] = getattr(app, "routes", [])
    encoded = _cache[app] = msgspec.json.encode(build(routes))
    return encoded
