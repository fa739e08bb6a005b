"""The WSGI application: routing, the request context, and errors rendered per API family."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound
from werkzeug.routing import Map, RequestRedirect, Rule
from werkzeug.wrappers import Request, Response

from credenza import metrics, requestctx
from credenza.broker import Broker
from credenza.config import CONFIG_ENV, Config
from credenza.errors import (
    BadRequest,
    ConfigError,
    CredenzaError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)
from credenza.legacy import ACCOUNT_CONFIG_PATH, CONFIG_PATH, configure_afp_logging
from credenza.loader import PluginManager
from credenza.requestctx import RequestOrigin
from credenza.wsgi import afp, console, ica, imds, keys, meta, oauth, pam
from credenza.wsgi import metrics as metrics_api
from credenza.wsgi.routes import (
    CORE,
    Family,
    RequestContext,
    Route,
    decode_body,
    decode_headers,
    decode_query,
)

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]

# The built-in API families; later families add their modules here.
BUILTIN_ROUTE_MODULES = (meta, keys, afp, imds, oauth, pam, ica, metrics_api, console)


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
        self.settings = family_settings(broker.config, self.families)
        #: (method, path) -> what the map matched there (see :meth:`_match`)
        self._matched: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        ctx = RequestContext(self.broker, request, self.routes, self.settings)
        origin = RequestOrigin(ctx.request_id, request.remote_addr, request.method, request.path,
                               environ)
        started = time.perf_counter()
        with requestctx.serving(origin):
            response = self._respond(ctx)
        self._count(ctx, response.status_code, time.perf_counter() - started)
        response.headers["X-Request-Id"] = ctx.request_id
        return _send(response, environ, start_response)

    def _count(self, ctx: RequestContext, status: int, seconds: float) -> None:
        """Count the request by family, route (the rule, not the path), method and status;
        what no route matched counts as ``unmatched``, so that clients cannot add series."""
        route = ctx.route
        if route is None:
            family, rule, method = self._family_of(ctx.request.path).name, "unmatched", "other"
        else:
            family, rule = route.family.name, route.rule
            method = ctx.request.method if ctx.request.method in route.methods else "other"
        metrics.series(metrics.HTTP_REQUESTS, family, rule, method, str(status)).inc()
        metrics.series(metrics.HTTP_DURATION, family, rule).observe(seconds)

    def _respond(self, ctx: RequestContext) -> Response:
        request = ctx.request
        family = self._family_of(request.path)
        try:
            if (request.content_length or 0) > self.broker.config.server.max_body_bytes:
                raise PayloadTooLarge(ctx.too_large_detail())
            _refuse_smuggled_separators(request.environ)
            index, values = self._match(request.environ)
            route = ctx.route = self.routes[index]
            family = route.family
            return self._dispatch(route, ctx, values)
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

    @staticmethod
    def _dispatch(route: Route, ctx: RequestContext, values: dict[str, Any]) -> Response:
        """Decode the declared inputs, identify the caller of an authenticated route, and only
        then run the handler."""
        inputs = ctx.inputs
        if route.query is not None:
            inputs["query"] = decode_query(route, ctx)
        if route.headers is not None:
            inputs["headers"] = decode_headers(route, ctx)
        if route.body is not None:
            inputs["body"] = decode_body(route, ctx)
        if route.authenticated:
            if route.authenticate is not None:
                ctx.identified(route.authenticate(ctx))
            else:
                ctx.principal()
        return route.handler(ctx, **values, **inputs)

    #: most matches remembered; more paths than this (clients choose them) start afresh
    MATCHES_KEPT = 4096

    def _match(self, environ: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The route index and path values for this request. A match depends only on the
        method and the path, and the map costs more than the rest of a validate request's
        framing: each pair is matched once, and only matches are kept (a redirect, a 404 or
        a 405 is raised afresh each time)."""
        key = (environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", ""))
        found = self._matched.get(key)
        if found is None:
            found = self.url_map.bind_to_environ(environ).match()
            if len(self._matched) >= self.MATCHES_KEPT:
                self._matched.clear()
            self._matched[key] = found
        return found

    def _family_of(self, path: str) -> Family:
        for family in self.families:
            if any(path.startswith(prefix) for prefix in family.prefixes):
                return family
        return CORE

    def _error(self, family: Family, error: CredenzaError, ctx: RequestContext) -> Response:
        if isinstance(error, Unauthenticated):
            error.realm = self.broker.config.server.realm
        if error.status >= 500:
            log.warning("request %s: %s %s", ctx.request_id, error.status, error.detail)
        return family.render_error(error, ctx)


def _send(response: Response, environ: dict[str, Any],
          start_response: StartResponse) -> Iterable[bytes]:
    """Start ``response`` and return its body. Werkzeug's ``Response.__call__`` copies the
    headers to fix Location, Content-Location and Content-Length, and wraps the body to close
    it: as much again as building the response. A complete body in memory with its length set
    and none of those headers (every JSON answer) needs none of it and goes out as it is; any
    other response, and any answer to HEAD or without a body by its status, goes through
    Werkzeug."""
    body, headers = response.response, response.headers
    if (type(body) is list and all(type(chunk) is bytes for chunk in body)
            and not response.direct_passthrough and not response._on_close
            and environ.get("REQUEST_METHOD") != "HEAD"
            and response.status_code >= 200 and response.status_code not in (204, 304)
            and "Content-Length" in headers
            and "Location" not in headers and "Content-Location" not in headers):
        start_response(response.status, headers.to_wsgi_list())
        return body
    return response(environ, start_response)


# Servers decode the path before routing: "acct%2Fdev" would become two segments, "%5C" a
# backslash, "%00" a NUL. No name here contains them; a request that smuggles one is refused.
_SMUGGLED = re.compile(r"%(2f|5c|00)", re.IGNORECASE)


def _refuse_smuggled_separators(environ: dict[str, Any]) -> None:
    raw_path = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or "").partition("?")[0]
    path = environ.get("PATH_INFO", "")
    if _SMUGGLED.search(raw_path) or "\\" in path or "\0" in path:
        raise BadRequest("the path contains an encoded slash, a backslash or a NUL character")


def family_settings(config: Config, families: Iterable[Family]) -> dict[str, Any]:
    """The settings of every family that has some, read from its ``[api.NAME]`` table.

    :raises ConfigError: for a bad setting, or a table that names no family of this app.
    """
    families = tuple(families)
    known = {family.name for family in families}
    for name in config.api_tables:
        if name not in known:
            raise ConfigError(f"{config.source}: [api.{name}]: unknown API family (known: "
                              f"{', '.join(sorted(known))})")
    return {family.name: family.settings.from_section(config.api_section(family.name))
            for family in families if family.settings is not None}


def all_routes(plugin_manager: PluginManager) -> list[Route]:
    """The built-in routes, then those the plugins add."""
    routes: list[Route] = [route for module in BUILTIN_ROUTE_MODULES for route in module.ROUTES]
    plugin_manager.hook.credenza_routes(add=routes.append)
    return routes


def make_app(broker: Broker) -> CredenzaApp:
    """The WSGI app for ``broker``: the built-in API families plus routes added by plugins.

    :raises ConfigError: when two routes claim the same path and method.
    """
    routes = all_routes(broker.plugin_manager)
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
    ``$CREDENZA_CONFIG``, or afp-core's ``$CONFIG_PATH`` and ``$ACCOUNT_CONFIG_PATH``, read from
    the process environment or the WSGI environ (where Apache's ``SetEnv`` puts them), once per
    process.
    """

    def __init__(self) -> None:
        self._app: CredenzaApp | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    settings = dict(os.environ)
                    for key in (CONFIG_ENV, CONFIG_PATH, ACCOUNT_CONFIG_PATH):
                        if not settings.get(key) and isinstance(environ.get(key), str):
                            settings[key] = environ[key]
                    if settings.get(CONFIG_PATH) and not settings.get(CONFIG_ENV):
                        configure_afp_logging(settings)
                    self._app = make_app(Broker.from_config(Config.load(None, settings)))
        return self._app(environ, start_response)

