"""The web console family (``/ui/``): people sign in, see their accounts and roles, open the AWS
console and get credentials, in a browser, from server-rendered pages (Jinja2) with a little
static JavaScript and CSS shipped in the package.

Sessions are opaque secrets of the token store (``cs_...``, :data:`credenza.opaque.SESSION`):
listed and revoked like any token, ended server-side by signing out, and bounded by
``session_max_seconds``. The cookie (HttpOnly, SameSite=Strict, ``Secure`` and ``__Host-``
under TLS) carries the secret with the time it was last used, MACed with ``session_key``, so
that idle expiry holds across workers and replicas without a write per page. Behind a front end
that authenticates (``REMOTE_USER``, the ``environ`` plugin), the console needs no sign-in.

Every state-changing request is a POST carrying a CSRF token (tied to the session, or to a
sign-in cookie before there is one) and is refused when the browser says it is cross-site.
Pages have a Content-Security-Policy without inline script, ``frame-ancestors 'none'``,
``Referrer-Policy: no-referrer`` and ``Cache-Control: no-store``; no secret is ever put in a URL.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import attrs
import jinja2
import msgspec
from werkzeug.wrappers import Response

from credenza.apikeys import MAX_NAME_LENGTH
from credenza.config import Section
from credenza.errors import (
    BadRequest,
    CredenzaError,
    Forbidden,
    NotFound,
    Unauthenticated,
)
from credenza.models import (
    AwsOptions,
    BasicCredentials,
    GrantKind,
    IdentityRequest,
    Principal,
    TokenQuery,
    TokenRecord,
    utcnow,
)
from credenza.opaque import API_KEY, SESSION
from credenza.secrets import configured_key
from credenza.settings import read, setting
from credenza.wsgi.routes import FORM, Family, Name, Reply, RequestContext, Route

HTML = "text/html"
COOKIE = "credenza_session"
SIGNIN_COOKIE = "credenza_signin"  # the CSRF token of the sign-in form (double submit)
AWS_SIGNIN_ORIGINS = ("https://signin.aws.amazon.com", "https://signin.amazonaws.cn",
                      "https://signin.amazonaws-us-gov.com")
STATIC_FILES = {"console.css": "text/css", "console.js": "text/javascript"}


@attrs.frozen
class ConsoleSettings:
    """``[api.console]``: the web console."""

    enabled: bool = setting("Serve the console under /ui/", True)
    session_idle_seconds: int = setting("A session unused this long ends", 900, min=60,
                                        max=86400)
    session_max_seconds: int = setting("A session ends this long after sign-in, used or not",
                                       8 * 3600, min=300, max=7 * 86400)
    session_key: str | None = setting(
        "base64 of 32 random bytes MACing session cookies and CSRF tokens; replicas share it",
        None, secret=True, default_text="a key generated into DATA_DIR/console-session.key")
    callback_url: str | None = setting(
        "The console's Issuer (where AWS sends people back): one of [plugins.aws-sts] "
        "callback_urls", None)
    signin_origins: tuple[str, ...] = setting(
        "Where Open console may send the browser (its form-action policy): the AWS sign-in "
        "endpoints in use", AWS_SIGNIN_ORIGINS)
    max_failures_per_user: int = setting("Failed sign-ins of one user name within "
                                         "failure_window_seconds before it is refused (429)",
                                         5, min=1, max=1000)
    max_failures_per_address: int = setting("Failed sign-ins from one address within "
                                            "failure_window_seconds before it is refused",
                                            20, min=1, max=10000)
    failure_window_seconds: int = setting("The window of the sign-in limits", 300, min=10,
                                          max=86400)
    #: reads the session key (configured, or the data directory's)
    key: Callable[[], bytes] = attrs.field(default=lambda: b"", kw_only=True, repr=False)

    @classmethod
    def from_section(cls, section: Section) -> ConsoleSettings:
        """Read ``[api.console]``."""
        settings = read(cls, section)
        for origin in settings.signin_origins:
            parts = urlsplit(origin)
            if parts.scheme not in ("https", "http") or not parts.netloc or parts.path:
                raise section.error("signin_origins", f"{origin!r} is not an origin "
                                    "(scheme://host[:port])")
        return attrs.evolve(settings, key=configured_key(
            section, "session_key", settings.session_key, "console-session.key"))


class TooManyFailures(CredenzaError):
    """Sign-in refused for a while: too many failures for this user name or address."""

    status = 429
    slug = "too-many-requests"
    title = "Too many failed sign-ins"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "60"}


def error_page(error: CredenzaError, ctx: RequestContext) -> Response:
    """Errors of the console are pages (with the request id, to find them in the log)."""
    return _page(ctx, "error.html", {"error": error, "request_id": ctx.request_id},
                 status=error.status, headers=error.headers())


CONSOLE = Family(
    "console", "The web console for people: sign in, accounts and roles, the AWS console, "
    "credentials.", prefixes=("/ui",), render_error=error_page, settings=ConsoleSettings,
    error_schema=None, error_media_type=HTML)


# -- pages ----------------------------------------------------------------------------------------

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("credenza", "console"), autoescape=True,
    undefined=jinja2.StrictUndefined)


def _policy(settings: ConsoleSettings) -> str:
    form_action = " ".join(("'self'", *settings.signin_origins))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; "
            "base-uri 'none'")


def _page(ctx: RequestContext, template: str, values: Mapping[str, Any], status: int = 200,
          headers: Mapping[str, str] | None = None) -> Response:
    settings = ctx.settings(CONSOLE)
    # links are under the application's root (SCRIPT_NAME), so the console works mounted under
    # a path prefix
    body = _TEMPLATES.get_template(template).render(root=ctx.request.script_root, **values)
    response = Response(body, status=status, content_type=f"{HTML}; charset=utf-8",
                        headers=dict(headers or {}))
    return _secured(response, settings)


def _secured(response: Response, settings: ConsoleSettings) -> Response:
    response.headers.update({
        "Content-Security-Policy": _policy(settings),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    })
    return response


def _redirect(ctx: RequestContext, location: str) -> Response:
    return _secured(Response(status=303, headers={"Location": location}), ctx.settings(CONSOLE))


def _to(ctx: RequestContext, path: str) -> Response:
    """See the console's page ``path`` (under the application's root)."""
    return _redirect(ctx, ctx.request.script_root + path)


# -- sessions -------------------------------------------------------------------------------------

def keyed_mac(key: bytes, *parts: str) -> str:
    """HMAC-SHA256 of ``parts`` with ``key``: the MAC of session cookies and CSRF tokens."""
    return hmac.new(key, "\0".join(parts).encode(), hashlib.sha256).hexdigest()


def _cookie_name(ctx: RequestContext, name: str) -> str:
    # __Host- (RFC 6265bis): only a Secure cookie set by this host for "/"; no subdomain can
    # plant one
    return f"__Host-{name}" if ctx.request.is_secure else name


def _set_cookie(ctx: RequestContext, response: Response, name: str, value: str,
                max_age: int | None) -> None:
    response.set_cookie(_cookie_name(ctx, name), value, max_age=max_age, path="/",
                        secure=ctx.request.is_secure, httponly=True, samesite="Strict")


def _delete_cookie(ctx: RequestContext, response: Response, name: str) -> None:
    response.delete_cookie(_cookie_name(ctx, name), path="/", secure=ctx.request.is_secure,
                           httponly=True, samesite="Strict")


@attrs.frozen
class Visitor:
    """Who is using the console: the principal, their session (None behind a front end), and
    the CSRF token their forms carry."""

    principal: Principal
    session: TokenRecord | None
    csrf: str


def _session_cookie(ctx: RequestContext, settings: ConsoleSettings, value: str) -> str:
    stamp = str(int(time.time()))
    return f"{value}|{stamp}|{keyed_mac(settings.key(), 'session', value, stamp)}"


def _from_session(ctx: RequestContext, settings: ConsoleSettings) -> Visitor | None:
    raw = ctx.request.cookies.get(_cookie_name(ctx, COOKIE), "")
    value, _, rest = raw.partition("|")
    stamp, _, mac = rest.partition("|")
    key = settings.key()
    if not (value and stamp.isdigit()) or not hmac.compare_digest(
            mac, keyed_mac(key, "session", value, stamp)):
        return None
    if time.time() - int(stamp) > settings.session_idle_seconds:
        return None
    tokens = ctx.broker.tokens
    record = SESSION.find(tokens.store, value) if tokens.enabled else None
    if record is None or record.revoked or record.expired():
        return None
    claims = record.claims
    principal = ctx.broker.enrich(Principal(
        str(claims["name"]), source=str(claims["source"]), kind=str(claims["kind"]),
        token_id=record.token_id))
    return Visitor(principal, record, keyed_mac(key, "csrf", record.token_id))


def _from_front_end(ctx: RequestContext, settings: ConsoleSettings) -> Visitor | None:
    """The user a front end named in REMOTE_USER (the environ plugin identifies them)."""
    environ = ctx.request.environ
    if not environ.get("REMOTE_USER"):
        return None
    principal = ctx.identified(ctx.broker.identify(IdentityRequest(
        environ=environ, remote_addr=environ.get("REMOTE_ADDR"))))
    return Visitor(principal, None, keyed_mac(settings.key(), "csrf-user", principal.name))


def _enabled(ctx: RequestContext) -> ConsoleSettings:
    """The console's settings; 404 when it is off."""
    settings: ConsoleSettings = ctx.settings(CONSOLE)
    if not settings.enabled:
        raise NotFound("the console is off ([api.console] enabled)")
    return settings


def visitor(ctx: RequestContext) -> Visitor | None:
    """The signed-in visitor, or None (then pages send them to sign in)."""
    settings = _enabled(ctx)
    found = _from_session(ctx, settings) or _from_front_end(ctx, settings)
    if found is not None and found.session is not None:
        ctx.identified(found.principal)
    return found


def _same_site(ctx: RequestContext) -> None:
    """Refuse a state-changing request the browser says another site made."""
    if ctx.request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise Forbidden("cross-site requests are refused")


def _checked_post(ctx: RequestContext, presented: str, expected: str) -> None:
    """Refuse a state-changing request made cross-site, or without the form's CSRF token."""
    _same_site(ctx)
    _checked_token(presented, expected)


def _checked_token(presented: str, expected: str) -> None:
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Forbidden("the form has expired or did not come from this console: reload it")


def _visitor_values(ctx: RequestContext, found: Visitor) -> dict[str, Any]:
    """What every page of a signed-in visitor shows: who, sign-out, and the admin's link."""
    return {"who": found.principal, "signed_in": found.session is not None, "csrf": found.csrf,
            "admin": any(grant.kind == GrantKind.ADMIN
                         for grant in ctx.broker.grants(found.principal))}


def _poster(ctx: RequestContext, csrf: str) -> Visitor:
    """The signed-in visitor who posted a form of this console with its CSRF token ``csrf``.

    :raises Forbidden: cross-site (asked before anything is looked up), or a wrong token.
    :raises Unauthenticated: without a live session (or front end's user).
    """
    _same_site(ctx)
    found = visitor(ctx)
    if found is None:
        raise Unauthenticated("your session has ended: sign in again", challenges=())
    _checked_token(csrf, found.csrf)
    return found


def _refreshed(ctx: RequestContext, response: Response, found: Visitor) -> Response:
    """Slide the session's idle expiry forward on every page it sees."""
    if found.session is not None:
        settings: ConsoleSettings = ctx.settings(CONSOLE)
        value = ctx.request.cookies.get(_cookie_name(ctx, COOKIE), "").partition("|")[0]
        _set_cookie(ctx, response, COOKIE, _session_cookie(ctx, settings, value),
                    settings.session_max_seconds)
    return response


# -- sign-in limits -------------------------------------------------------------------------------

class FailureLimit:
    """Failed sign-ins per user name and per address within a window, in this process (each
    worker counts its own: the limits are per worker)."""

    def __init__(self) -> None:
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, window: float, now: float) -> collections.deque[float]:
        times = self._failures.setdefault(key, collections.deque())
        while times and now - times[0] > window:
            times.popleft()
        return times

    def check(self, settings: ConsoleSettings, user: str, address: str) -> None:
        now, window = time.monotonic(), settings.failure_window_seconds
        with self._lock:
            if len(self._recent(f"user:{user}", window, now)) >= settings.max_failures_per_user \
                    or len(self._recent(f"addr:{address}", window, now)) >= \
                    settings.max_failures_per_address:
                raise TooManyFailures("too many failed sign-ins: wait a minute and try again")

    def failed(self, user: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in (f"user:{user}", f"addr:{address}"):
                self._failures.setdefault(key, collections.deque()).append(now)
            if len(self._failures) > 100_000:  # a flood of names: forget the oldest half
                for key in list(self._failures)[:50_000]:
                    del self._failures[key]

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{user}", None)


LIMITS = FailureLimit()


# -- handlers -------------------------------------------------------------------------------------

class SignIn(msgspec.Struct):
    """The sign-in form."""

    username: Name
    password: str
    csrf: str


class RoleForm(msgspec.Struct):
    """An account and role, and the duration asked for (empty: the account's default)."""

    account: Name
    role: Name
    csrf: str
    duration: str = ""


class CsrfOnly(msgspec.Struct):
    csrf: str


def signin_form(ctx: RequestContext, error: str | None = None, status: int = 200) -> Response:
    """The sign-in page (and a fresh CSRF cookie for its form)."""
    if error is None and visitor(ctx) is not None:
        return _to(ctx, "/ui/")
    token = secrets.token_urlsafe(32)
    response = _page(ctx, "signin.html", {"csrf": token, "error": error}, status=status)
    _set_cookie(ctx, response, SIGNIN_COOKIE, token, None)
    return response


def signin(ctx: RequestContext, body: SignIn) -> Response:
    """Check the user name and password with the identity plugins; start a session."""
    settings = _enabled(ctx)
    _checked_post(ctx, body.csrf, ctx.request.cookies.get(_cookie_name(ctx, SIGNIN_COOKIE), ""))
    address = ctx.request.remote_addr or "-"
    LIMITS.check(settings, body.username, address)
    try:
        principal = ctx.broker.identify(IdentityRequest(
            remote_addr=address, basic=BasicCredentials(body.username, body.password)))
    except Unauthenticated:
        LIMITS.failed(body.username, address)
        return signin_form(ctx, "Invalid user name or password.", status=401)
    LIMITS.succeeded(body.username)
    _record, value = SESSION.mint(
        ctx.broker.tokens.store, principal, consumer_id=principal.name, consumer_type="user",
        claims={"name": principal.name, "source": principal.source, "kind": principal.kind},
        lifetime=dt.timedelta(seconds=settings.session_max_seconds))
    response = _to(ctx, "/ui/")
    _set_cookie(ctx, response, COOKIE, _session_cookie(ctx, settings, value),
                settings.session_max_seconds)
    _delete_cookie(ctx, response, SIGNIN_COOKIE)
    return response


def signout(ctx: RequestContext, body: CsrfOnly) -> Response:
    """End the session server-side and forget the cookie."""
    found = visitor(ctx)
    if found is None:
        return _to(ctx, "/ui/signin")
    _checked_post(ctx, body.csrf, found.csrf)
    if found.session is not None:
        ctx.broker.tokens.revoke_record(found.principal, found.session)
    response = _to(ctx, "/ui/signin")
    _delete_cookie(ctx, response, COOKIE)
    return response


def accounts(ctx: RequestContext) -> Response:
    """The visitor's accounts and roles, with a filter box and a button per role."""
    found = visitor(ctx)
    if found is None:
        return _to(ctx, "/ui/signin")
    catalogue = ctx.broker.accounts()
    rows = [(catalogue[name], role) for name, roles in
            ctx.broker.aws_roles(found.principal).items() for role in roles]
    return _refreshed(ctx, _page(ctx, "accounts.html", {
        **_visitor_values(ctx, found), "rows": rows, "durations": DURATIONS}), found)


DURATIONS = (("", "the account's default"), ("3600", "1 hour"), ("14400", "4 hours"),
             ("43200", "12 hours"))


def _issued(ctx: RequestContext, body: RoleForm) -> tuple[Visitor, Any, Any, AwsOptions]:
    found = _poster(ctx, body.csrf)
    if body.duration and body.duration not in dict(DURATIONS):
        raise BadRequest(f"duration {body.duration!r} is not one of the choices")
    settings: ConsoleSettings = ctx.settings(CONSOLE)
    options = AwsOptions(duration=int(body.duration) if body.duration else None,
                         callback_url=settings.callback_url)
    account, credentials = ctx.broker.issue_aws(found.principal, body.account, body.role,
                                                options)
    return found, account, credentials, options


def open_console(ctx: RequestContext, body: RoleForm) -> Response:
    """Straight to AWS's sign-in URL (a 303 the browser follows; the URL is never shown)."""
    found, account, credentials, options = _issued(ctx, body)
    location = ctx.broker.console_url(found.principal, account, credentials, options)
    return _refreshed(ctx, _redirect(ctx, location), found)


def credentials(ctx: RequestContext, body: RoleForm) -> Response:
    """The credentials of a role, with copy buttons for env, JSON and a credential_process
    profile, and their expiry counting down."""
    found, account, issued, _ = _issued(ctx, body)
    expiration = issued.expiration.strftime("%Y-%m-%dT%H:%M:%SZ")
    env = (f"export AWS_ACCESS_KEY_ID={issued.access_key_id}\n"
           f"export AWS_SECRET_ACCESS_KEY={issued.secret_access_key}\n"
           f"export AWS_SESSION_TOKEN={issued.session_token}\n")
    as_json = msgspec.json.format(msgspec.json.encode({
        "Version": 1, "AccessKeyId": issued.access_key_id,
        "SecretAccessKey": issued.secret_access_key, "SessionToken": issued.session_token,
        "Expiration": expiration}), indent=2).decode()
    profile = (f"[profile {account.name}-{body.role}]\n"
               f"credential_process = credenza aws creds {account.name} {body.role} "
               "--format process\n")
    return _refreshed(ctx, _page(ctx, "credentials.html", {
        **_visitor_values(ctx, found), "account": account, "role": body.role,
        "expiration": expiration, "env": env, "json": as_json, "profile": profile}), found)


# -- tokens and API keys --------------------------------------------------------------------------

KEY_LIFETIMES = (("30", "30 days"), ("90", "90 days"), ("365", "1 year"))
MAX_LISTED = 500  # tokens on one page; the page says how many more there are


class NewApiKey(msgspec.Struct):
    """The API key form: its name and lifetime in days (one of :data:`KEY_LIFETIMES`)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
    csrf: str
    days: str = "90"


class TokenForm(msgspec.Struct):
    """One token, by id (ids are not secrets), and the consumer view to go back to."""

    token_id: Name
    csrf: str
    consumer: str = ""


class ConsumerQuery(msgspec.Struct):
    """Whose tokens the admin view shows."""

    consumer: Name | None = None


def _listing(ctx: RequestContext, found: Visitor, consumer: str) -> tuple[list[TokenRecord],
                                                                          int]:
    """The unexpired tokens of ``consumer`` the visitor may manage, newest first, and how many
    more there are."""
    tokens = ctx.broker.tokens
    if not tokens.enabled:
        return [], 0
    records, _more, total = tokens.store.list(TokenQuery(consumer, expired=False), MAX_LISTED,
                                              None, utcnow())
    if consumer != found.principal.name:
        allowed = {provider for provider in {record.provider for record in records}
                   if tokens.administers(found.principal, provider)}
        records = [record for record in records if record.provider in allowed]
    records.sort(key=lambda record: record.issued_at, reverse=True)
    return records, max(0, total - MAX_LISTED)


def tokens_page(ctx: RequestContext) -> Response:
    """The visitor's API keys (with a form for a new one) and their other live tokens, each
    with Revoke."""
    found = visitor(ctx)
    if found is None:
        return _to(ctx, "/ui/signin")
    records, more = _listing(ctx, found, found.principal.name)
    keys = [record for record in records if record.provider == API_KEY.provider]
    others = [record for record in records if record.provider != API_KEY.provider]
    return _refreshed(ctx, _page(ctx, "tokens.html", {
        **_visitor_values(ctx, found), "keys": keys, "others": others, "more": more,
        "session_id": found.session.token_id if found.session else None,
        "lifetimes": KEY_LIFETIMES, "consumer": ""}), found)


def create_api_key(ctx: RequestContext, body: NewApiKey) -> Response:
    """A new API key acting as the visitor, shown on this page once."""
    found = _poster(ctx, body.csrf)
    if body.days not in dict(KEY_LIFETIMES):
        raise BadRequest(f"days {body.days!r} is not one of the choices")
    record, value = ctx.broker.api_keys.create(found.principal, body.name,
                                               dt.timedelta(days=int(body.days)))
    return _refreshed(ctx, _page(ctx, "api-key.html", {
        **_visitor_values(ctx, found), "record": record, "key": value}), found)


def _token_form(ctx: RequestContext, body: TokenForm) -> tuple[Visitor, TokenRecord]:
    found = _poster(ctx, body.csrf)
    tokens = ctx.broker.tokens
    record = tokens.store.get(body.token_id) if tokens.enabled else None
    if record is None:
        raise NotFound(f"no token {body.token_id!r}")
    return found, record


def _back(ctx: RequestContext, found: Visitor, body: TokenForm) -> Response:
    if body.consumer:
        return _refreshed(ctx, _to(ctx, f"/ui/consumers?{urlencode({'consumer': body.consumer})}"),
                          found)
    return _refreshed(ctx, _to(ctx, "/ui/tokens"), found)


def revoke_token(ctx: RequestContext, body: TokenForm) -> Response:
    """Revoke one token (the visitor's own, or one they administer)."""
    found, record = _token_form(ctx, body)
    ctx.broker.tokens.revoke_record(found.principal, record)
    return _back(ctx, found, body)


def reinstate_token(ctx: RequestContext, body: TokenForm) -> Response:
    """Reinstate one revoked, unexpired token (admins)."""
    found, record = _token_form(ctx, body)
    ctx.broker.tokens.reinstate_record(found.principal, record)
    return _back(ctx, found, body)


def consumer_page(ctx: RequestContext, query: ConsumerQuery) -> Response:
    """Admins: one consumer's live tokens of the providers they administer, with Revoke and
    Reinstate."""
    found = visitor(ctx)
    if found is None:
        return _to(ctx, "/ui/signin")
    values = _visitor_values(ctx, found)
    if not values["admin"]:
        raise Forbidden(f"{found.principal.name} administers no tokens (no admin grant)")
    records, more = _listing(ctx, found, query.consumer) if query.consumer else ([], 0)
    return _refreshed(ctx, _page(ctx, "consumer.html", {
        **values, "consumer": query.consumer or "", "others": records, "more": more,
        "session_id": None}), found)


def static(ctx: RequestContext, name: str) -> Response:
    """The console's own script and style sheet."""
    _enabled(ctx)
    if name not in STATIC_FILES:
        raise NotFound(f"no file {name!r}")
    data = resources.files("credenza").joinpath("console", "static", name).read_bytes()
    response = Response(data, content_type=STATIC_FILES[name])
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


PAGE = {200: Reply("A page", media_type=HTML)}
SEE_OTHER = {303: Reply("On to the next page (or to sign in)", media_type="")}
POST_ERRORS = {400: "A field is missing or wrong", 401: "Not signed in",
               403: "Cross-site, or without the form's CSRF token; or no grant",
               404: "Unknown account or token, or the console is off",
               503: "A dependency (STS, the token store) is unavailable"}

ROUTES = (
    Route("/ui/", accounts, family=CONSOLE, authenticated=False, content_type=HTML,
          summary="Your accounts and roles", responses={**PAGE, **SEE_OTHER,
                                                        404: "The console is off"}),
    Route("/ui/signin", signin_form, family=CONSOLE, authenticated=False, content_type=HTML,
          summary="The sign-in form", responses={**PAGE, **SEE_OTHER,
                                                 404: "The console is off"}),
    Route("/ui/signin", signin, methods=("POST",), family=CONSOLE, authenticated=False,
          body=SignIn, body_media_type=FORM, content_type=HTML, summary="Sign in",
          responses={**SEE_OTHER, 400: "A field is missing", 401: "Wrong user name or password",
                     403: "Cross-site, or without the form's CSRF token",
                     404: "The console is off", 429: "Too many failed sign-ins",
                     503: "An identity source is unavailable"}),
    Route("/ui/signout", signout, methods=("POST",), family=CONSOLE, authenticated=False,
          body=CsrfOnly, body_media_type=FORM, summary="Sign out (the session ends)",
          responses={**SEE_OTHER, 400: "A field is missing", 403: "Without the CSRF token",
                     404: "The console is off"}),
    Route("/ui/console", open_console, methods=("POST",), family=CONSOLE, authenticated=False,
          body=RoleForm, body_media_type=FORM, summary="Open the AWS console for a role",
          responses={**SEE_OTHER, **POST_ERRORS}),
    Route("/ui/credentials", credentials, methods=("POST",), family=CONSOLE,
          authenticated=False, body=RoleForm, body_media_type=FORM, content_type=HTML,
          summary="A role's credentials, shown on request", responses={**PAGE, **POST_ERRORS}),
    Route("/ui/tokens", tokens_page, family=CONSOLE, authenticated=False, content_type=HTML,
          summary="Your tokens and API keys", responses={**PAGE, **SEE_OTHER,
                                                         404: "The console is off"}),
    Route("/ui/api-keys", create_api_key, methods=("POST",), family=CONSOLE,
          authenticated=False, body=NewApiKey, body_media_type=FORM, content_type=HTML,
          summary="Create an API key (shown on this page once)",
          responses={**PAGE, **POST_ERRORS}),
    Route("/ui/tokens/revoke", revoke_token, methods=("POST",), family=CONSOLE,
          authenticated=False, body=TokenForm, body_media_type=FORM,
          summary="Revoke a token (yours, or one you administer)",
          responses={**SEE_OTHER, **POST_ERRORS}),
    Route("/ui/tokens/reinstate", reinstate_token, methods=("POST",), family=CONSOLE,
          authenticated=False, body=TokenForm, body_media_type=FORM,
          summary="Reinstate a revoked token (admins)",
          responses={**SEE_OTHER, **POST_ERRORS, 409: "The token has expired"}),
    Route("/ui/consumers", consumer_page, family=CONSOLE, authenticated=False,
          query=ConsumerQuery, content_type=HTML,
          summary="Admins: a consumer's tokens, to revoke and reinstate",
          responses={**PAGE, **SEE_OTHER, 400: "A bad consumer name",
                     403: "No admin grant", 404: "The console is off"}),
    Route("/ui/static/<name>", static, family=CONSOLE, authenticated=False,
          content_type="text/plain", summary="The console's script and style sheet",
          responses={200: "The file", 404: "No such file"}),
)
