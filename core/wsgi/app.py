"""The WSGI application: routing, the request context, and errors rendered per API family."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from credenza.broker import Broker
from credenza.config import CONFIG_ENV
from credenza.errors import (
    BadRequest,
    ConfigError,
    CredenzaError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
)
from credenza.wsgi import meta
from credenza.wsgi.routes import CORE, Family, RequestContext, Route

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

# The built-in API families; later families add their modules here.
BUILTIN_ROUTE_MODULES = (meta,)


class CredenzaApp:
    """A WSGI callable over one Broker."""

    def __init__(self, broker: Broker, routes: Sequence[Route]) -> None:
        self.broker = broker
        self.routes = tuple(routes)
        self.url_map = Map(
            [Rule(route.rule, endpoint=index, methods=route.methods)
             for index, route in enumerate(self.routes)],
            strict_slashes=False,
        )
        self.families = tuple(dict.fromkeys(route.family for route in self.routes))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        ctx = RequestContext(self.broker, request, self.routes)
        response = self._respond(ctx)
        response.headers["X-Request-Id"] = ctx.request_id
        return response(environ, start_response)

    def _respond(self, ctx: RequestContext) -> Response:
        request = ctx.request
        family = self._family_of(request.path)
        try:
            if (request.content_length or 0) > self.broker.config.server.max_body_bytes:
                raise PayloadTooLarge(ctx.too_large_detail())
            index, values = self.url_map.bind_to_environ(request.environ).match()
            route = self.routes[index]
            family = route.family
            return route.handler(ctx, **values)
        except CredenzaError as exc:
            return self._error(family, exc, ctx)
        except RequestRedirect as exc:
            return exc.get_response(request.environ)
        except WerkzeugNotFound:
            return self._error(family, NotFound(f"no endpoint at {request.path}"), ctx)
        except WerkzeugMethodNotAllowed as exc:
            allowed = exc.valid_methods or []
            detail = f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}"
            return self._error(family, MethodNotAllowed(detail, allowed=allowed), ctx)
        except HTTPException as exc:  # anything else Werkzeug raises while parsing a request
            return self._error(family, BadRequest(exc.description or exc.name), ctx)
        except Exception:
            log.exception("request %s %s failed (request id %s)", request.method, request.path,
                          ctx.request_id)
            return self._error(family, CredenzaError("an unexpected error occurred; the request "
                                                     "id identifies it in the server log"), ctx)

    def _family_of(self, path: str) -> Family:
        for family in self.families:
            if any(path.startswith(prefix) for prefix in family.prefixes):
                return family
        return CORE

    def _error(self, family: Family, error: CredenzaError, ctx: RequestContext) -> Response:
        if error.status >= 500:
            log.warning("request %s: %s %s", ctx.request_id, error.status, error.detail)
        return family.render_error(error, ctx)


def make_app(broker: Broker) -> CredenzaApp:
    """The WSGI app for ``broker``: the built-in API families plus routes added by plugins.

    :raises ConfigError: when two routes claim the same path and method.
    """
    routes: list[Route] = [route for module in BUILTIN_ROUTE_MODULES for route in module.ROUTES]
    broker.plugin_manager.hook.credenza_routes(add=routes.append)
    seen: dict[tuple[str, str], Route] = {}
    for route in routes:
        for method in route.methods:
            key = (route.rule, method)
            if key in seen:
                raise ConfigError(f"two routes claim {method} {route.rule}")
            seen[key] = route
    return CredenzaApp(broker, routes)


class LazyApplication:
    """A module-level WSGI ``application`` for mod_wsgi and gunicorn.

    Nothing is loaded at import time: the broker is built on the first request from
    ``$CREDENZA_CONFIG`` (the process environment, or the WSGI environ, where Apache's ``SetEnv``
    puts it), once per process.
    """

    def __init__(self) -> None:
        self._app: CredenzaApp | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    path = os.environ.get(CONFIG_ENV) or environ.get(CONFIG_ENV)
                    self._app = make_app(Broker.from_config(path))
        return self._app(environ, start_response)

