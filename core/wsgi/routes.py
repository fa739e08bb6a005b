"""What an HTTP endpoint is: a Route (rule, handler, documentation) in an API family.

A family groups the routes of one API (afp, imds, oauth, pam, ...) and decides how its errors look:
RFC 9457 problem+json unless a compatible client needs another shape. Handlers receive a
:class:`RequestContext` and the values of the rule's placeholders, and return a Response.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs
from werkzeug.wrappers import Request, Response

from credenza.broker import Broker
from credenza.config import Section
from credenza.errors import BadRequest, CredenzaError, PayloadTooLarge
from credenza.models import IdentityRequest, Principal

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None,
    content_type: str = JSON,
) -> Response:
    """A JSON response; never cached, since most answers here carry credentials."""
    response = Response(json.dumps(data, separators=(",", ":")), status=status,
                        content_type=content_type, headers=dict(headers or {}))
    response.headers["Cache-Control"] = "no-store"
    return response


def problem_response(error: CredenzaError, ctx: RequestContext) -> Response:
    """RFC 9457 problem+json for ``error``; ``instance`` identifies this occurrence in the logs."""
    body = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "instance": f"urn:uuid:{ctx.request_id}",
        **error.extra,
    }
    return json_response(body, error.status, error.headers(), PROBLEM_JSON)


class FamilySettings(Protocol):
    """The settings class of an API family: read from its ``[api.NAME]`` table."""

    @classmethod
    def from_section(cls, section: Section) -> FamilySettings:
        """Read and check the table (unknown keys are errors)."""


@attrs.frozen
class Family:
    """An API family: its name (the OpenAPI tag and its ``[api.NAME]`` table), path prefixes,
    error shape, and the class of its settings, if it has any."""

    name: str
    description: str
    prefixes: tuple[str, ...] = ()
    render_error: Callable[[CredenzaError, RequestContext], Response] = problem_response
    settings: type[FamilySettings] | None = None


CORE = Family("core", "Status, API description and the caller's own identity.")


@attrs.frozen
class Route:
    """One endpoint: a Werkzeug rule, its handler and what ``/openapi.json`` says of it."""

    rule: str
    handler: Callable[..., Response]
    methods: tuple[str, ...] = attrs.field(default=("GET",), converter=tuple)
    summary: str = ""
    family: Family = CORE
    authenticated: bool = True
    responses: Mapping[int, str] = attrs.field(factory=lambda: {200: "OK"}, hash=False)
    content_type: str = JSON


@attrs.define
class RequestContext:
    """One request on its way through a handler: the broker, the request, the caller."""

    broker: Broker
    request: Request
    routes: tuple[Route, ...] = ()
    family_settings: Mapping[str, Any] = attrs.field(factory=dict)
    request_id: str = attrs.field(factory=lambda: str(uuid.uuid4()))
    _principal: Principal | None = attrs.field(default=None, init=False)
    _body: bytes | None = attrs.field(default=None, init=False)

    def principal(self) -> Principal:
        """The identified caller (identified once per request).

        :raises credenza.errors.Unauthenticated: when the caller cannot be identified.
        """
        if self._principal is None:
            self._principal = self.broker.identify(
                IdentityRequest.from_environ(self.request.environ)
            )
        return self._principal

    def settings(self, family: Family) -> Any:
        """The settings of ``family`` (an instance of its ``settings`` class)."""
        return self.family_settings[family.name]

    def body(self) -> bytes:
        """The raw request body, read once.

        :raises PayloadTooLarge: when it is over ``[server] max_body_bytes``, whether the client
            declared its length or sent it chunked. (Werkzeug's own limit silently truncates a
            chunked body; a truncated body must never be processed.)
        """
        if self._body is None:
            limit = self.broker.config.server.max_body_bytes
            raw = self.request.stream.read(limit + 1)
            if len(raw) > limit:
                raise PayloadTooLarge(self.too_large_detail())
            self._body = raw
        return self._body

    def json_body(self) -> dict[str, Any]:
        """The request body as a JSON object.

        :raises BadRequest: when it is not a JSON object. :raises PayloadTooLarge: over the limit.
        """
        raw = self.body()
        try:
            body = json.loads(raw or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        return body

    def too_large_detail(self) -> str:
        """Why a body was refused as too large."""
        limit = self.broker.config.server.max_body_bytes
        return f"the request body is larger than the limit of {limit} bytes"
