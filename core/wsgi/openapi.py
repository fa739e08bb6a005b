"""``/openapi.json``: an OpenAPI 3.1 description generated from the routes themselves."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from credenza import __version__
from credenza.wsgi.routes import PROBLEM_JSON, Route

_PLACEHOLDER = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
    },
}

SECURITY_SCHEMES = {
    "basic": {"type": "http", "scheme": "basic"},
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI document for ``routes``."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        path = _PLACEHOLDER.sub(r"{\1}", route.rule)
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _PLACEHOLDER.findall(route.rule)
        ]
        for method in route.methods:
            operation: dict[str, Any] = {
                "operationId": f"{method.lower()}{re.sub(r'[^A-Za-z0-9]+', '_', path)}",
                "summary": route.summary,
                "tags": [route.family.name],
                "responses": _responses(route),
            }
            if parameters:
                operation["parameters"] = parameters
            if route.authenticated:
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
            else:
                operation["security"] = []
            paths.setdefault(path, {})[method.lower()] = operation
    families = {route.family.name: route.family.description for route in routes}
    return {
        "openapi": "3.1.0",
        "info": {"title": "credenza", "version": __version__,
                 "description": "A pluggable credential broker."},
        "tags": [{"name": name, "description": text} for name, text in families.items()],
        "paths": paths,
        "components": {"schemas": {"Problem": PROBLEM_SCHEMA},
                       "securitySchemes": SECURITY_SCHEMES},
    }


def _responses(route: Route) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(status): {"description": text, "content": {route.content_type: {}}}
        for status, text in route.responses.items()
    }
    problem = {"content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    responses["default"] = {"description": "An error", **problem}
    return responses
