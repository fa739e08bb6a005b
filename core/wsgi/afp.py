"""The afp-core compatible API, as afp-cli and afp-web really use it (docs/protocols/afp.md).

Mount it where afp-core was (afp-cli's default base is ``https://HOST/afp-api/latest``) or point
``afp --api-url`` at the server root. Unlike afp-core: no identity is 401 (not 500), an ungranted
role 403, an unknown account 404, STS trouble 503; ``callbackurl`` must match the allowlist; the
metadata endpoints check access without assuming a role; nothing secret is logged.
"""

from __future__ import annotations

from typing import Annotated

import attrs
import msgspec
from werkzeug.wrappers import Response

from credenza.errors import CredenzaError
from credenza.models import Account, AwsCredentials, AwsOptions, Principal
from credenza.wsgi.imds import (
    MetadataCredentials,
    metadata_credentials,
    metadata_issue,
    single_role,
)
from credenza.wsgi.routes import (
    PRINTABLE,
    TEXT,
    Family,
    Problem,
    Reply,
    RequestContext,
    Route,
    json_response,
    problem_response,
)


def render_afp_error(error: CredenzaError, ctx: RequestContext) -> Response:
    """Problem details plus ``message``, which afp-cli prints on any non-200 answer (and
    ``X-Username`` once the caller is known, as afp-core sent it)."""
    response = problem_response(error, ctx)
    body = response.get_json()
    body["message"] = error.detail
    return _named(ctx, json_response(body, error.status, dict(response.headers),
                                     response.content_type))


def _named(ctx: RequestContext, response: Response) -> Response:
    """``response`` with ``X-Username``: afp-core answered it on every endpoint."""
    if ctx.caller is not None:
        response.headers["X-Username"] = ctx.caller.name
    return response


class AfpProblem(Problem):
    """A problem with ``message``, which afp-cli prints."""

    message: str


AFP = Family("afp", "afp-core compatible API (afp-cli, afp-web).",
             prefixes=("/account", "/meta-data/"), render_error=render_afp_error,
             error_schema=AfpProblem)


class AccountsQuery(msgspec.Struct):
    """``/account``'s query: ``?withid`` (any value, or none) adds the account ids."""

    withid: str | None = None


class IssueQuery(msgspec.Struct):
    """How long the credentials should last, and where the console's sign-out leads."""

    duration: Annotated[int, msgspec.Meta(ge=900, le=43200)] | None = None
    callbackurl: Annotated[str, msgspec.Meta(min_length=1, max_length=2048,
                                             pattern=PRINTABLE)] | None = None


class AccountWithId(msgspec.Struct):
    id: str | None
    roles: list[str]


class AfpCredentials(MetadataCredentials):
    """Credentials and the console sign-in URL (a secret, valid for 15 minutes)."""

    ConsoleUrl: str


def _options(query: IssueQuery) -> AwsOptions:
    return AwsOptions(duration=query.duration, callback_url=query.callbackurl)


def accounts(ctx: RequestContext, query: AccountsQuery) -> Response:
    """``{"account": ["role", ...]}``; with ``?withid``, ``{"account": {"id", "roles"}}``."""
    principal = ctx.principal()
    roles = ctx.broker.aws_roles(principal)
    if query.withid is not None:
        catalogue = ctx.broker.accounts()
        body = {name: {"id": catalogue[name].id, "roles": names} for name, names in roles.items()}
    else:
        body = roles
    return _named(ctx, json_response(body))


@attrs.frozen
class Issued:
    """Credentials handed out for one request, with what a console URL needs."""

    principal: Principal
    account: Account
    credentials: AwsCredentials
    options: AwsOptions

    def console_url(self, ctx: RequestContext) -> str:
        """The sign-in URL for these credentials."""
        return ctx.broker.console_url(self.principal, self.account, self.credentials, self.options)


def _issue(ctx: RequestContext, account: str, role: str, query: IssueQuery) -> Issued:
    principal = ctx.principal()
    options = _options(query)
    found, credentials = ctx.broker.issue_aws(principal, account, role, options)
    return Issued(principal, found, credentials, options)


def credentials_and_console(ctx: RequestContext, account: str, role: str,
                            query: IssueQuery) -> Response:
    """Credentials and ``ConsoleUrl``."""
    issued = _issue(ctx, account, role, query)
    return _named(ctx, json_response({**metadata_credentials(issued.credentials),
                                      "ConsoleUrl": issued.console_url(ctx)}))


def credentials_only(ctx: RequestContext, account: str, role: str, query: IssueQuery) -> Response:
    """Credentials without a console URL."""
    return _named(ctx, json_response(metadata_credentials(
        _issue(ctx, account, role, query).credentials)))


def console_url(ctx: RequestContext, account: str, role: str, query: IssueQuery) -> Response:
    """The console sign-in URL as plain text."""
    return _named(ctx, Response(_issue(ctx, account, role, query).console_url(ctx),
                                content_type="text/plain", headers={"Cache-Control": "no-store"}))


def console_redirect(ctx: RequestContext, account: str, role: str, query: IssueQuery) -> Response:
    """A 302 to the console sign-in URL, as AWS recommends handing it over."""
    location = _issue(ctx, account, role, query).console_url(ctx)
    return _named(ctx, Response(status=302, headers={
        "Location": location, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}))


def metadata_role(ctx: RequestContext) -> Response:
    """The caller's single role name; access is checked without assuming the role."""
    _account, role = single_role(ctx.broker, ctx.principal())
    return _named(ctx, Response(role, content_type="text/plain",
                                headers={"Cache-Control": "no-store"}))


def metadata_role_credentials(ctx: RequestContext, role: str) -> Response:
    """Credentials for the caller's single role."""
    _account, credentials = metadata_issue(ctx, role)
    return _named(ctx, json_response(metadata_credentials(credentials)))


ERRORS = {400: "Bad name, duration or callback URL", 401: "Not identified",
          403: "Role not granted", 404: "Unknown account", 503: "STS unavailable"}
ISSUED = {200: Reply("Credentials", MetadataCredentials), **ERRORS}

ROUTES = (
    Route("/account", accounts, family=AFP, query=AccountsQuery,
          summary="The caller's accounts and roles (?withid: with account ids)",
          responses={200: Reply("Account -> roles (or -> {id, roles})",
                                dict[str, list[str] | AccountWithId]),
                     401: "Not identified"}),
    Route("/account/<account>/<role>", credentials_and_console, family=AFP, query=IssueQuery,
          summary="Credentials and console URL",
          responses={200: Reply("Credentials and ConsoleUrl", AfpCredentials), **ERRORS}),
    Route("/account/<account>/<role>/credentials", credentials_only, family=AFP,
          query=IssueQuery, summary="Credentials", responses=ISSUED),
    Route("/account/<account>/<role>/consoleurl", console_url, family=AFP, query=IssueQuery,
          summary="Console sign-in URL as text",
          responses={200: Reply("The sign-in URL", str, TEXT), **ERRORS}),
    Route("/account/<account>/<role>/console", console_redirect, family=AFP, query=IssueQuery,
          summary="302 to the console sign-in URL",
          responses={302: Reply("To the sign-in URL", media_type=""), **ERRORS}),
    Route("/meta-data/iam/security-credentials/", metadata_role, family=AFP,
          summary="The caller's single role name",
          responses={200: Reply("The role", str, TEXT), 401: "Not identified",
                     404: "Not exactly one role"}),
    Route("/meta-data/iam/security-credentials/<role>", metadata_role_credentials, family=AFP,
          summary="Credentials for the caller's single role", responses=ISSUED),
)
