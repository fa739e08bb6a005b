"""The core family: ``/status``, ``/openapi.json`` and ``/v1/whoami``."""

from __future__ import annotations

from werkzeug.wrappers import Response

from credenza.wsgi.openapi import openapi_document
from credenza.wsgi.routes import RequestContext, Route, json_response

STATUS_RETRY_AFTER = "30"


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
          responses={200: "All dependencies are healthy", 503: "A dependency is down"}),
    Route("/openapi.json", openapi, summary="This API's OpenAPI description", authenticated=False),
    Route("/v1/whoami", whoami, summary="The caller's identity, groups and grants",
          responses={200: "The caller", 401: "Not identified"}),
)
