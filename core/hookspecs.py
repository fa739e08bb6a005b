"""The hook specifications: THE contract between credenza and its plugins.

A plugin is a module or a class (instantiated with its ``[plugins.NAME]`` Section) declared as an
entry point in the group ``credenza.plugins``. Its hook implementations are functions or methods
named like the hooks below and marked with :data:`credenza.hookimpl`::

    from credenza import hookimpl

    @hookimpl
    def credenza_grants(principal):
        ...

Calling conventions:

* **firstresult** hooks stop at the first implementation that returns something other than
  ``None``; implementations are asked in the order the ``[credenza] plugins`` list names their
  plugins (plugins that an embedding application registers come first).
* **merged** hooks call every implementation; each returns an iterable and the broker merges them.
* **observer** hooks call every implementation and ignore the results.

An implementation may accept fewer arguments than the spec declares (pluggy passes only the ones it
names), but not other ones: a misspelled hook or argument name stops startup.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from credenza.markers import hookspec

if TYPE_CHECKING:
    import click

    from credenza.broker import Broker
    from credenza.config import Config
    from credenza.models import (
        Account,
        AwsCredentials,
        AwsOptions,
        DeniedEvent,
        Grant,
        Health,
        IdentityRequest,
        IssuedEvent,
        IssuedToken,
        Principal,
        RevokedEvent,
        SignedInEvent,
        TokenRecord,
        TokenSpec,
        TokenStore,
        UpstreamToken,
    )
    from credenza.wsgi.routes import Route

# -------------------------------------------------------------------------------------------------
# Identity sources: who is calling?
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def credenza_identify(request: IdentityRequest) -> Principal | None:
    """Identify the caller from what it presented.

    :param request: the credentials and environment of the request (HTTP Basic, bearer token,
        ``X-API-Key``, the WSGI environ, the peer address).
    :returns: a Principal when this plugin recognises the credentials, ``None`` when the request
        carries nothing this plugin understands (the next plugin is asked). A plugin that
        recognises a token this broker issued sets ``Principal.token_id``: the broker then
        refuses the caller once that token is revoked. API keys of the token store (``ck_...``)
        never reach this hook: the broker checks them itself.
    :raises credenza.errors.Unauthenticated: when the credentials are meant for this plugin but are
        wrong (a bad password, an unknown key). This fails closed: no other plugin is asked.
    :raises credenza.errors.Unavailable: when the plugin's backend (a directory) cannot be reached.

    Stops at the first non-None result. Example::

        @hookimpl
        def credenza_identify(request):
            if request.api_key is None:
                return None
            owner = KEYS.get(hash_key(request.api_key))
            if owner is None:
                raise Unauthenticated("unknown API key")
            return Principal(owner, source="my-keys", kind="machine")
    """


@hookspec
def credenza_principal_groups(principal: Principal) -> Iterable[str]:
    """Return the groups ``principal`` belongs to, beyond those it was identified with.

    :param principal: the identified caller.
    :returns: group names; the broker adds them to the principal before asking for grants.
    :raises credenza.errors.Unavailable: when the group source is down (never answer "no groups"
        for "could not look").

    Merged: every implementation is called. Example::

        @hookimpl
        def credenza_principal_groups(principal):
            return directory.groups_of(principal.name)
    """


@hookspec
def credenza_principal_attributes(principal: Principal) -> Mapping[str, Any]:
    """Return attributes of ``principal`` (name, email, org, ...) this plugin knows.

    :param principal: the identified caller.
    :returns: attribute name -> value; what the identity source itself said wins over these,
        and earlier plugins win over later ones.

    Merged. Example::

        @hookimpl
        def credenza_principal_attributes(principal):
            return {"email": directory.mail_of(principal.name)}
    """


# -------------------------------------------------------------------------------------------------
# Account/role providers: what may they use?
# -------------------------------------------------------------------------------------------------


@hookspec
def credenza_accounts() -> Iterable[Account]:
    """Return AWS accounts for the catalogue (name, id, partition, region, durations, role path).

    :returns: accounts; when two plugins name the same account the first in plugin order wins.

    Merged. Example::

        @hookimpl
        def credenza_accounts():
            return [Account("prod", id="123456789012", region="eu-west-1")]
    """


@hookspec
def credenza_grants(principal: Principal) -> Iterable[Grant]:
    """Return what ``principal`` (with its groups) may obtain.

    :param principal: the identified caller, groups included.
    :returns: grants: AWS account+role pairs, token providers with allowed audiences, API key
        identifiers, admin rights over token lifecycles. The broker de-duplicates them.
    :raises credenza.errors.Unavailable: when the grant source is down.

    Merged. Example::

        @hookimpl
        def credenza_grants(principal):
            if "ops" in principal.groups:
                yield Grant.aws("prod", "admin", via="group ops")
    """


# -------------------------------------------------------------------------------------------------
# Credential issuers: hand them a short-lived credential
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def credenza_issue_aws(
    principal: Principal, account: Account, grant: Grant, options: AwsOptions
) -> AwsCredentials | None:
    """Issue temporary AWS credentials for ``grant``'s role in ``account``.

    Called only after the broker has checked that ``grant`` permits the request.

    :param principal: the caller (for the session name, tags and source identity).
    :param account: the catalogue entry of the account (id, partition, durations, role path).
    :param grant: the grant that permits the request.
    :param options: requested duration, the validity the caller needs at least.
    :returns: credentials, or ``None`` when this plugin does not issue for this account.
    :raises credenza.errors.Forbidden: when AWS denies the role to the broker.
    :raises credenza.errors.Unavailable: when STS is down or throttling after retries.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def credenza_console_callback(url: str) -> str | None:
    """Check a console callback URL before anything is issued for the request naming it.

    The callback becomes the sign-in page's Issuer: where the console's sign-out leads.

    :param url: the ``callbackurl`` the caller asked for.
    :returns: the URL to use (normalised), or ``None`` when this plugin makes no console URLs.
    :raises credenza.errors.BadRequest: when the URL is not an allowed callback (an unchecked
        Issuer is an open redirect). The broker refuses the request then, before any credential
        is issued, and also when no plugin answers.

    Stops at the first non-None result. Example::

        @hookimpl
        def credenza_console_callback(url):
            if not url.startswith("https://intranet.example.com/aws/"):
                raise BadRequest(f"callbackurl {url!r} is not allowed")
            return url
    """


@hookspec(firstresult=True)
def credenza_console_url(
    principal: Principal, account: Account, credentials: AwsCredentials, options: AwsOptions
) -> str | None:
    """Turn ``credentials`` into an AWS console sign-in URL (a secret: never log it).

    :param principal: the caller.
    :param account: the account the credentials are for (its partition picks the sign-in host).
    :param credentials: credentials from :func:`credenza_issue_aws`.
    :param options: ``callback_url`` (the console's Issuer, already checked by
        :func:`credenza_console_callback`) and the session duration.
    :returns: the sign-in URL, or ``None`` when this plugin cannot make one.
    :raises credenza.errors.Unavailable: when the sign-in endpoint cannot be reached.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def credenza_issue_token(principal: Principal, spec: TokenSpec) -> IssuedToken | None:
    """Issue a token of the credential provider ``spec.provider`` (a JWT, an OAuth token).

    Called only after the broker has checked the principal's ``token`` grant for the provider
    and audiences; access tokens for this broker's own API (``spec.provider`` is
    :data:`credenza.models.ACCESS_TOKEN_PROVIDER`) need none, as a client gets its own.
    The broker stores the returned record and its secrets' hashes.

    :param principal: the caller (the creator of the token).
    :param spec: provider, subject, audiences, lifetime, custom claims, consumer.
    :returns: the token, or ``None`` when ``spec.provider`` is not one of this plugin's providers.
    :raises credenza.errors.BadRequest: when the spec breaks the provider's rules (a reserved
        audience, an issuer outside the allowlist, a lifetime over the maximum).

    Stops at the first non-None result. Example::

        @hookimpl
        def credenza_issue_token(principal, spec):
            if spec.provider != "build-bot":
                return None
            return signer.issue(principal, spec)
    """


@hookspec(firstresult=True)
def credenza_resign_token(record: TokenRecord) -> IssuedToken | None:
    """Make a stored token usable again: sign its stored claims anew (the store has no secrets).

    :param record: the record of a token this plugin issued (not revoked, not expired).
    :returns: the token with a fresh signature (and its derived short token), or ``None`` when
        the record is not one of this plugin's.

    Stops at the first non-None result. Example::

        @hookimpl
        def credenza_resign_token(record):
            if record.provider not in PROVIDERS:
                return None
            return IssuedToken(record, sign(record.claims), short_token(record.token_id))
    """


@hookspec(firstresult=True)
def credenza_verify_token(token: str) -> Mapping[str, Any] | None:
    """Verify a token this broker (or a trusted issuer) signed and return its claims.

    :param token: the presented token (a JWT or a derived short token).
    :returns: the verified claims (``jti`` names the stored record), or ``None`` when this plugin
        does not recognise the token. Claims of a trusted external issuer's token carry
        ``external: true`` (:data:`credenza.models.EXTERNAL_CLAIM`): such a token has no record
        here.
    :raises credenza.errors.Unauthenticated: when the token is recognised but invalid (bad
        signature, expired, wrong audience).

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def credenza_issuer() -> str | None:
    """Return the issuer (``iss``) of this broker's own tokens, for the discovery document.

    Stops at the first non-None result. Example::

        @hookimpl
        def credenza_issuer():
            return "https://credenza.example.com"
    """


@hookspec
def credenza_jwks() -> Iterable[Mapping[str, Any]]:
    """Return the public JWKs to publish, retiring keys included until their tokens expire.

    Merged into ``/.well-known/jwks.json``. Example::

        @hookimpl
        def credenza_jwks():
            return [key.public_jwk() for key in keyring.published()]
    """


@hookspec(firstresult=True)
def credenza_upstream_token(provider: str, scope: str | None, force: bool) -> UpstreamToken | None:
    """Fetch (or return a cached) access token of the upstream OAuth provider ``provider``.

    Called after the broker has checked the caller's ``oauth`` grant for ``provider``.

    :param provider: the upstream provider's identifier.
    :param scope: the scope to ask for (None: the provider's default).
    :param force: skip the cache and fetch anew.
    :returns: the token, or ``None`` when ``provider`` is not one of this plugin's.
    :raises credenza.errors.Unavailable: when the upstream endpoint fails.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def credenza_managed_credential(identifier: str) -> str | None:
    """Return the plaintext of a managed upstream credential (an API key kept encrypted).

    The broker keeps such credentials for its callers. Called after the broker has checked the
    caller's ``api-key`` grant for ``identifier``. The value is a secret: hand it to the caller,
    never log it.

    :param identifier: the credential's identifier.
    :returns: the decrypted value, or ``None`` when this plugin does not hold it.

    Stops at the first non-None result.
    """


# -------------------------------------------------------------------------------------------------
# Token stores: remember what was issued
# -------------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def credenza_token_store(config: Config) -> TokenStore | None:
    """Provide the token store (see :class:`credenza.models.TokenStore`).

    :param config: the loaded configuration (its data directory holds embedded stores).
    :returns: a store, or ``None``; without a store the broker refuses to issue tokens. The
        broker keeps every token's record there (:class:`credenza.tokens.TokenLifecycle`),
        including API keys, API tokens and refresh tokens by their hashes
        (:mod:`credenza.opaque`).

    Stops at the first non-None result. Called once, when the broker starts.
    """


@hookspec
def credenza_startup(broker: Broker) -> None:
    """The broker is assembled: take what the plugin needs from the rest of it.

    :param broker: the broker, before its first request. Its token store
        (``broker.tokens.store`` when ``broker.tokens.enabled``) may also implement
        :class:`credenza.models.SharedCache` (the ``sql`` plugin's does), through which a plugin
        shares what it caches with every worker and replica using the same store, as ``aws-sts``
        shares AWS credentials (:class:`credenza.sharedcache.TieredCache`).
        ``broker.tokens.sign`` signs a token of another plugin's provider for the plugin to
        present itself, as ``aws-sts`` does for STS in web-identity mode.

    Every implementation is called, once, when the broker is built. Raise
    :class:`credenza.errors.ConfigError` for settings that cannot work with the rest of the
    configuration: the broker does not start. Example::

        @hookimpl
        def credenza_startup(broker):
            if broker.tokens.enabled and isinstance(broker.tokens.store, SharedCache):
                self.cache.share(broker.tokens.store, self.cache_key)
    """


# -------------------------------------------------------------------------------------------------
# Health and lifecycle
# -------------------------------------------------------------------------------------------------


@hookspec
def credenza_health() -> Iterable[Health]:
    """Check the dependencies this plugin relies on (store, STS, directory) and report each.

    Called by ``/status``. Keep each check bounded (a short timeout): a check that hangs makes the
    status page hang.

    Merged. Example::

        @hookimpl
        def credenza_health():
            try:
                directory.ping(timeout=2)
            except OSError as exc:
                return [Health("ldap", ok=False, detail=f"cannot reach {URL}: {exc}")]
            return [Health("ldap", ok=True)]
    """


@hookspec
def credenza_shutdown() -> None:
    """Release connections, pools and threads: the broker is closing.

    Every implementation is called, once, by :meth:`credenza.broker.Broker.close`.
    """


@hookspec
def credenza_metrics() -> None:
    """Set the gauges that are read rather than counted, just before ``/metrics`` answers.

    Keys and their ages, queue depths: what is a state, not an event.
    Every implementation is called, on each scrape, in the worker that answers it; use the
    metrics of :mod:`credenza.metrics`, or gauges of your own made with
    ``registry=credenza.metrics.REGISTRY`` and a ``multiprocess_mode``. Example::

        @hookimpl
        def credenza_metrics():
            QUEUE_DEPTH.set(queue.qsize())
    """


# -------------------------------------------------------------------------------------------------
# Observers: audit and metrics (never receive plaintext secrets)
# -------------------------------------------------------------------------------------------------


@hookspec
def credenza_issued(event: IssuedEvent) -> None:
    """A credential was issued: who, what kind, for what, until when.

    :param event: principal, kind, target, role, token id and expiry; never the credential.

    Observer; an exception in an observer is logged and does not fail the request, except
    :class:`credenza.errors.Unavailable`, which fails it with 503 (the ``audit`` plugin's
    ``fail_closed``: no credential without its audit line). ``event.origin`` is the request it
    happened in (id, client address, method, path), None outside one. Example::

        @hookimpl
        def credenza_issued(event):
            audit.info("issued %s %s to %s", event.kind, event.target, event.principal.name)
    """


@hookspec
def credenza_revoked(event: RevokedEvent) -> None:
    """Tokens were revoked or reinstated (``event.reinstated``); reinstating is an admin act.

    :param event: who acted, on which token ids, and whether it was a reinstatement.

    Observer; see :func:`credenza_issued`.
    """


@hookspec
def credenza_denied(event: DeniedEvent) -> None:
    """A request was refused (no grant, bad credentials): who, for what and why.

    :param event: the principal (None when unidentified), what was asked and the reason.

    Observer; see :func:`credenza_issued`.
    """


@hookspec
def credenza_signed_in(event: SignedInEvent) -> None:
    """A request identified its caller: who, from which identity source, by what credential.

    :param event: the principal (with groups) and ``credential``: ``api-key``, ``password``,
        ``bearer`` or ``front-end`` (``REMOTE_USER``, the client address).

    Called on every request that identifies its caller, so keep it cheap. Observer; see
    :func:`credenza_issued`. Example::

        @hookimpl
        def credenza_signed_in(event):
            last_seen[event.principal.name] = event.at
    """


# -------------------------------------------------------------------------------------------------
# Front-end extensions
# -------------------------------------------------------------------------------------------------


@hookspec
def credenza_routes(add: Callable[[Route], None]) -> None:
    """Add HTTP endpoints to the WSGI app (they appear in ``/openapi.json`` too).

    :param add: call it with a :class:`credenza.wsgi.routes.Route` for each endpoint.

    Every implementation is called, once, when the app is made. Example::

        from credenza.wsgi.routes import Route, json_response

        def whoami(ctx):
            return json_response({"name": ctx.principal().name})

        @hookimpl
        def credenza_routes(add):
            add(Route("/acme/whoami", whoami, summary="The caller's name"))
    """


@hookspec
def credenza_commands(cli: click.Group) -> None:
    """Add commands to the ``credenza`` command line.

    :param cli: the top-level click group; call ``cli.add_command`` or use ``@cli.command()``.

    Every implementation is called, once per command line run, for the plugins enabled by the
    configuration in effect (``--config`` or ``$CREDENZA_CONFIG``). Example::

        @hookimpl
        def credenza_commands(cli):
            @cli.command(name="acme-sync")
            def acme_sync():
                "Sync ACME badges."
    """
