"""The metrics family: ``/metrics`` in the Prometheus text format (see :mod:`credenza.metrics`).

``[api.metrics] access`` decides who may scrape: ``off`` (the default: 404), ``open`` (anyone
who reaches the port: bind it where only Prometheus does), or ``token`` (``Authorization:
Bearer TOKEN``, compared in constant time, as Prometheus's ``authorization`` setting sends it).
"""

from __future__ import annotations

import hmac

import attrs
from werkzeug.wrappers import Response

from credenza import metrics
from credenza.config import Section
from credenza.errors import NotFound, Unauthenticated
from credenza.models import IdentityRequest
from credenza.settings import read, setting
from credenza.wsgi.routes import Family, RequestContext, Route


@attrs.frozen
class MetricsSettings:
    """``[api.metrics]``: who may scrape ``/metrics``."""

    access: str = setting("off (404), open, or token (a bearer token)", "off",
                          choices=("off", "open", "token"))
    token: str | None = setting("access = token: the bearer token Prometheus sends", None,
                                secret=True)

    @classmethod
    def from_section(cls, section: Section) -> MetricsSettings:
        """Read ``[api.metrics]``; ``token`` is required with ``access = "token"``."""
        settings = read(cls, section)
        if settings.access == "token" and not settings.token:
            raise section.error("token", 'is required with access = "token" (`openssl rand '
                                '-hex 32`, given as env:VAR or file:PATH)')
        return settings


METRICS = Family("metrics", "Prometheus metrics of every worker.", prefixes=("/metrics",),
                 settings=MetricsSettings)


def scrape(ctx: RequestContext) -> Response:
    """Every figure, summed over the server's workers."""
    settings: MetricsSettings = ctx.settings(METRICS)
    if settings.access == "off":
        raise NotFound("metrics are off ([api.metrics] access)")
    if settings.access == "token":
        presented = IdentityRequest.from_environ(ctx.request.environ).bearer or ""
        assert settings.token is not None  # from_section requires it
        if not hmac.compare_digest(presented.encode(), settings.token.encode()):
            raise Unauthenticated("a valid bearer token is required to scrape metrics",
                                  challenges=(f'Bearer realm="{ctx.broker.config.server.realm}"',))
    ctx.broker.plugin_manager.hook.credenza_metrics()
    return Response(metrics.exposition(), content_type=metrics.CONTENT_TYPE,
                    headers={"Cache-Control": "no-store"})


ROUTES = (
    Route("/metrics", scrape, family=METRICS, authenticated=False,
          content_type="text/plain",
          summary="Prometheus metrics (the text format), when [api.metrics] access allows",
          responses={200: "The metrics", 401: "A bearer token is required",
                     404: "Metrics are off"}),
)
