"""``/openapi.json``: an OpenAPI 3.1 description generated from the routes' own declarations.

The msgspec types a route declares for its query, body and answers are the ones the app decodes
with, so the document cannot drift from what the server accepts. JSON Schemas come from
``msgspec.json.schema_components`` and sit in ``components.schemas``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

import msgspec

from credenza import __version__
from credenza.wsgi.routes import Reply, Route

_PLACEHOLDER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
REF_TEMPLATE = "#/components/schemas/{name}"

SECURITY_SCHEMES = {
    "basic": {"type": "http", "scheme": "basic"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def _replies(route: Route) -> Iterator[tuple[str, Reply]]:
    for status in route.responses:
        yield str(status), route.reply(status)
    yield "default", Reply("An error", route.family.error_schema, route.family.error_media_type)


def _declared_types(routes: Sequence[Route]) -> list[Any]:
    found: list[Any] = []
    for route in routes:
        candidates = [route.query, route.headers, route.body,
                      *(reply.schema for _, reply in _replies(route))]
        found.extend(kind for kind in candidates if kind is not None and kind not in found)
    return found


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI document for ``routes``."""
    declared = _declared_types(routes)
    schemas, components = msgspec.json.schema_components(declared, ref_template=REF_TEMPLATE)

    def schema(kind: Any) -> dict[str, Any]:
        return schemas[declared.index(kind)]

    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = _PLACEHOLDER.sub(r"{\1}", route.rule)
        parameters: list[dict[str, Any]] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PLACEHOLDER.findall(route.rule)
        ]
        for kind, where in ((route.query, "query"), (route.headers, "header")):
            if kind is not None:
                name = schema(kind)["$ref"].rpartition("/")[2]
                parameters.extend(_parameters(components[name], where))
        for method in route.methods:
            operation: dict[str, Any] = {
                "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}",
                "summary": route.summary,
                "tags": [route.family.name],
                "responses": {status: _response(reply, schema) for status, reply in
                              _replies(route)},
                "security": ([{name: []} for name in SECURITY_SCHEMES] if route.authenticated
                             else []),
            }
            if route.handler.__doc__:
                operation["description"] = " ".join(route.handler.__doc__.split())
            if parameters:
                operation["parameters"] = parameters
            if route.body is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {route.body_media_type: {"schema": schema(route.body)}},
                }
            paths.setdefault(path, {})[method.lower()] = operation
    families = {route.family.name: route.family.description for route in routes}
    return {
        "openapi": "3.1.0",
        "info": {"title": "credenza", "version": __version__,
                 "description": "A pluggable credential broker."},
        "tags": [{"name": name, "description": text} for name, text in families.items()],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


def _parameters(struct_schema: dict[str, Any], where: str) -> Iterator[dict[str, Any]]:
    """The fields of a query or headers Struct as OpenAPI parameters."""
    required = set(struct_schema.get("required", ()))
    for name, prop in struct_schema.get("properties", {}).items():
        schema = {key: value for key, value in prop.items()
                  if key not in ("default", "description")}
        yield {"name": name, "in": where, "required": name in required, "schema": schema,
               **({"description": prop["description"]} if "description" in prop else {})}


def _response(reply: Reply, schema: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.schema is not None:
        answer["content"] = {reply.media_type: {"schema": schema(reply.schema)}}
    elif reply.media_type:  # a redirect has none
        answer["content"] = {reply.media_type: {}}
    return answer
