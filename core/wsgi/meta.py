"""The core family: ``/status``, ``/openapi.json`` and ``/v1/whoami``."""

from __future__ import annotations

from typing import Any

import msgspec
from werkzeug.wrappers import Response

from credenza.wsgi.openapi import openapi_document
from credenza.wsgi.routes import Reply, RequestContext, Route, json_response

STATUS_RETRY_AFTER = "30"


class Check(msgspec.Struct):
    component: str
    ok: bool
    detail: str


class Status(msgspec.Struct):
    """afp-core's ``{status, message}`` (strings), the plugins and every check."""

    status: str
    message: str
    plugins: list[str]
    checks: list[Check]


class GrantView(msgspec.Struct):
    kind: str
    target: str
    role: str | None
    audiences: list[str]
    via: str


class Caller(msgspec.Struct):
    name: str
    kind: str
    source: str
    groups: list[str]
    grants: list[GrantView]


def status(ctx: RequestContext) -> Response:
    """Every dependency's health; 503 naming the failed ones when any is down.

    The ``status``/``message`` fields keep the shape afp-core's ``/status`` had.
    """
    report = ctx.broker.health()
    failed = [check for check in report if not check.ok]
    body = {
        "status": "503" if failed else "200",
        "message": "; ".join(f"{c.component}: {c.detail}" for c in failed) if failed else "OK",
        "plugins": ctx.broker.plugin_names(),
        "checks": [{"component": c.component, "ok": c.ok, "detail": c.detail} for c in report],
    }
    headers = {"Retry-After": STATUS_RETRY_AFTER} if failed else {}
    return json_response(body, 503 if failed else 200, headers)


def openapi(ctx: RequestContext) -> Response:
    """The OpenAPI description of every route this app serves."""
    return json_response(openapi_document(ctx.routes))


def whoami(ctx: RequestContext) -> Response:
    """The caller as the broker sees it: identity, groups and grants."""
    principal = ctx.principal()
    grants = ctx.broker.grants(principal)
    return json_response({
        "name": principal.name,
        "kind": principal.kind,
        "source": principal.source,
        "groups": sorted(principal.groups),
        "grants": [
            {"kind": g.kind, "target": g.target, "role": g.role,
             "audiences": sorted(g.audiences), "via": g.via}
            for g in grants
        ],
    })


ROUTES = (
    Route("/status", status, summary="Health of every dependency", authenticated=False,
          responses={200: Reply("All dependencies are healthy", Status),
                     503: Reply("A dependency is down", Status)}),
    Route("/openapi.json", openapi, summary="This API's OpenAPI description", authenticated=False,
          responses={200: Reply("An OpenAPI 3.1 document", dict[str, Any])}),
    Route("/v1/whoami", whoami, summary="The caller's identity, groups and grants",
          responses={200: Reply("The caller", Caller), 401: "Not identified"}),
)
