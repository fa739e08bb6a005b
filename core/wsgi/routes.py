"""What an HTTP endpoint is: a Route (rule, handler, declared inputs and answers) in an API family.

A family groups the routes of one API (afp, imds, oauth, pam, ...) and decides how its errors look:
RFC 9457 problem+json unless a compatible client needs another shape.

A route declares its inputs as msgspec types: ``query`` (a Struct of query parameters),
``headers`` (a Struct of request headers), ``body`` (a Struct, JSON or form-encoded), and its
answers per status (:class:`Reply`). The app decodes and checks the inputs before the handler
runs (a malformed value is a 400 naming the field), identifies the caller of an
``authenticated`` route, and calls ``handler(ctx, **path_values, query=..., headers=...,
body=...)`` with those it declares; ``/openapi.json`` is generated from the same
declarations. msgspec was chosen because it decodes straight into typed Structs, names the field
that failed, declares limits (lengths, ranges, patterns) in the type, emits JSON Schema for the
same types, and is the fastest of the candidates (cattrs, pydantic).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Protocol

import attrs
import msgspec
from werkzeug.wrappers import Request, Response

from credenza import requestctx
from credenza.broker import Broker
from credenza.config import Section
from credenza.errors import BadRequest, CredenzaError, PayloadTooLarge
from credenza.models import UNPRINTABLE, IdentityRequest, Principal

JSON = "application/json"
PROBLEM_JSON = "application/problem+json"
FORM = "application/x-www-form-urlencoded"
TEXT = "text/plain"

# A printable value: none of the characters the models refuse (credenza.models.UNPRINTABLE).
PRINTABLE = f"^[^{UNPRINTABLE}]*$"
#: a name or identifier: printable, 1 to 256 characters
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=PRINTABLE)]
#: a token or other secret as presented: printable, 1 to 8192 characters
TokenText = Annotated[str, msgspec.Meta(min_length=1, max_length=8192, pattern=PRINTABLE)]
#: free text (a scope, a list of words): printable, at most 4096 characters
Text = Annotated[str, msgspec.Meta(max_length=4096, pattern=PRINTABLE)]


class Problem(msgspec.Struct):
    """RFC 9457 problem details (more members may follow)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str


class Empty(msgspec.Struct):
    """``{}``: done, and nothing more to say (some clients want a JSON body on every success)."""


@attrs.frozen
class Reply:
    """One documented answer: what it means, its body's type (a msgspec type, or None for no
    described body) and media type."""

    description: str
    schema: Any = None
    media_type: str = JSON


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None,
    content_type: str = JSON,
) -> Response:
    """A JSON response; never cached, since most answers here carry credentials."""
    response = Response(msgspec.json.encode(data), status=status,
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
    error shape (how it renders, and the type and media type that ``/openapi.json`` gives it),
    and the class of its settings, if it has any."""

    name: str
    description: str
    prefixes: tuple[str, ...] = ()
    render_error: Callable[[CredenzaError, RequestContext], Response] = problem_response
    settings: type[FamilySettings] | None = None
    error_schema: Any = Problem
    error_media_type: str = PROBLEM_JSON


CORE = Family("core", "Status, API description and the caller's own identity.")


@attrs.frozen
class Route:
    """One endpoint: a Werkzeug rule, its handler, its declared inputs and answers.

    ``responses`` maps a status to a :class:`Reply` (or just its description: then the body is
    undescribed, of ``content_type`` for a 2xx/3xx and of the family's error shape otherwise).
    """

    rule: str
    handler: Callable[..., Response]
    methods: tuple[str, ...] = attrs.field(default=("GET",), converter=tuple)
    summary: str = ""
    family: Family = CORE
    authenticated: bool = True
    responses: Mapping[int, Reply | str] = attrs.field(factory=lambda: {200: "OK"}, hash=False)
    content_type: str = JSON
    query: type | None = None
    body: type | None = None
    body_media_type: str = JSON
    #: a Struct of request headers, each field named after its header (``msgspec.field(name=)``)
    headers: type | None = None
    #: identifies the caller of an authenticated route (default: every credential presented)
    authenticate: Callable[[RequestContext], Principal] | None = attrs.field(default=None,
                                                                            eq=False)

    def reply(self, status: int) -> Reply:
        """The declared answer for ``status``, in its full form."""
        declared = self.responses[status]
        if isinstance(declared, Reply):
            return declared
        if status < 400:
            return Reply(declared, media_type=self.content_type)
        return Reply(declared, self.family.error_schema, self.family.error_media_type)


@attrs.define
class RequestContext:
    """One request on its way through a handler: the broker, the request, the caller."""

    broker: Broker
    request: Request
    routes: tuple[Route, ...] = ()
    family_settings: Mapping[str, Any] = attrs.field(factory=dict)
    #: the route's decoded inputs (``query``, ``headers``, ``body``), once the app has them
    inputs: dict[str, Any] = attrs.field(factory=dict)
    #: the form-encoded body's fields, once read (:func:`form_fields`)
    form: dict[str, str] | None = None
    request_id: str = attrs.field(factory=requestctx.new_request_id)
    #: the route the request matched, once matched
    route: Route | None = None
    _principal: Principal | None = attrs.field(default=None, init=False)
    _body: bytes | None = attrs.field(default=None, init=False)

    def principal(self) -> Principal:
        """The identified caller (identified once per request, before the handler runs when
        the route is declared authenticated).

        :raises credenza.errors.Unauthenticated: when the caller cannot be identified.
        """
        if self._principal is None:
            self._principal = self.broker.identify(
                IdentityRequest.from_environ(self.request.environ)
            )
        return self._principal

    @property
    def caller(self) -> Principal | None:
        """The caller, once identified (None before, or when identification failed)."""
        return self._principal

    def identified(self, principal: Principal) -> Principal:
        """Remember ``principal`` as the caller (a route's own ``authenticate`` found it)."""
        self._principal = principal
        return principal

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


# -- decoding the declared inputs ---------------------------------------------------------------


def decode_query(route: Route, ctx: RequestContext) -> Any:
    """The query parameters as ``route.query`` declares them (the first of repeated ones).

    :raises BadRequest: naming the parameter and what it should be.
    """
    args = {key: ctx.request.args.get(key) for key in ctx.request.args}
    return _converted(args, route.query, "query parameter")


def decode_headers(route: Route, ctx: RequestContext) -> Any:
    """The request headers ``route.headers`` declares.

    :raises BadRequest: naming the header and what it should be.
    """
    fields = msgspec.structs.fields(route.headers)
    present = {field.encode_name: ctx.request.headers[field.encode_name] for field in fields
               if field.encode_name in ctx.request.headers}
    return _converted(present, route.headers, "header")


def decode_body(route: Route, ctx: RequestContext) -> Any:
    """The body as ``route.body`` declares it (JSON, or a form for ``FORM`` routes).

    :raises BadRequest: naming the field and what it should be.
    :raises PayloadTooLarge: over ``[server] max_body_bytes``.
    """
    if route.body_media_type == FORM:
        return _converted(form_fields(ctx), route.body, "form parameter")
    raw = ctx.body()
    if not raw.strip():
        raise BadRequest("the request body must be a JSON object")
    try:
        return msgspec.json.decode(raw, type=route.body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request body: {_named(exc, 'field')}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(_undecodable(raw, exc)) from None


def form_fields(ctx: RequestContext) -> dict[str, str]:
    """A form-encoded body (read once per request); a parameter given twice is an error (RFC
    6749 section 3.2).

    :raises BadRequest: another media type, a body that is not UTF-8, a repeated parameter.
    """
    if ctx.form is not None:
        return ctx.form
    if ctx.request.mimetype != FORM:
        raise BadRequest(f"this endpoint takes {FORM} bodies")
    try:
        pairs = urllib.parse.parse_qsl(ctx.body().decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key in values:
            raise BadRequest(f"parameter {key!r} is given more than once")
        values[key] = value
    ctx.form = values
    return values


def _converted(values: dict[str, Any], kind: type, what: str) -> Any:
    """``values`` (strings, as a query, headers or a form carry them) as ``kind`` declares.

    :raises BadRequest: ``invalid <what>: ...`` naming the field by the last word of ``what``.
    """
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid {what}: {_named(exc, what.split()[-1])}") from None


def _named(exc: msgspec.ValidationError, what: str) -> str:
    """msgspec's message, with the JSON path ``$.name`` read as the field's name and the
    printable pattern said in words."""
    return (str(exc).replace("`$.", f"{what} `")
            .replace(f"matching regex {PRINTABLE!r}", "of printable characters"))


def _undecodable(raw: bytes, exc: msgspec.DecodeError) -> str:
    """Why a body does not decode; a lone UTF-16 surrogate (valid JSON, not text) is named."""
    try:
        decoded = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return f"the request body is not valid JSON: {exc}"
    where = _surrogate_at(decoded, "$")
    if where is None:
        return f"the request body cannot be read: {exc}"
    return f"invalid request body: {where} holds a lone UTF-16 surrogate, which is not a character"


def _surrogate_at(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path if any("\ud800" <= char <= "\udfff" for char in value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _surrogate_at(key, f"{path} key") or _surrogate_at(item, f"{path}.{key}")
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _surrogate_at(item, f"{path}[{index}]")
            if found:
                return found
    return None
