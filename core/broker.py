"""The Broker: the single path from a request to a credential.

    identify -> groups -> grants -> authorize -> issue -> record -> observers

Front ends (the WSGI app, the CLI, an embedding application) call the methods of one Broker; they
never call hooks themselves. Each method is a typed wrapper around the hooks it needs. What
happens to a token after it is issued has its own managers, reached through the broker:
``broker.tokens`` (:mod:`credenza.tokens`: records, listing, revocation), ``broker.api_keys``
(:mod:`credenza.apikeys`) and ``broker.oauth`` (:mod:`credenza.oauth`: one class per grant type).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from credenza import metrics
from credenza.apikeys import ApiKeys
from credenza.config import Config
from credenza.errors import (
    BadRequest,
    Forbidden,
    NotConfigured,
    NotFound,
    Unauthenticated,
    Unavailable,
)
from credenza.loader import PluginManager, load_plugins
from credenza.models import (
    WILDCARD,
    Account,
    AwsCredentials,
    AwsOptions,
    DeniedEvent,
    Grant,
    GrantKind,
    Health,
    IdentityRequest,
    IssuedEvent,
    IssuedToken,
    Principal,
    RevokedEvent,
    SignedInEvent,
    TokenSpec,
    TokenStore,
    UpstreamToken,
)
from credenza.names import ACCOUNT_NAME, ROLE_NAME, valid_account_name, valid_role_name
from credenza.oauth import OAuth
from credenza.tokens import TokenLifecycle

log = logging.getLogger(__name__)

#: the kinds of credential whose target is a provider's name (a bounded metrics label; the
#: targets of other kinds, such as an API key's name, are the caller's to choose)
PROVIDER_KINDS = frozenset({GrantKind.TOKEN.value, GrantKind.OAUTH.value})


class Broker:
    """Answers who is calling, what they may use, and hands out credentials for it."""

    def __init__(self, config: Config, plugin_manager: PluginManager,
                 store: TokenStore | None = None) -> None:
        self.config = config
        self.plugin_manager = plugin_manager
        self._hook = plugin_manager.hook
        #: the lifecycle of issued tokens (records, listing, revocation)
        self.tokens = TokenLifecycle(self, store)
        #: API keys of the token store (``ck_...``)
        self.api_keys = ApiKeys(self)
        #: OAuth grants, introspection and revocation for this broker's own API
        self.oauth = OAuth(self)
        self._hook.credenza_startup(broker=self)

    @classmethod
    def from_config(
        cls,
        source: Config | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        *,
        plugins: Sequence[object] = (),
    ) -> Broker:
        """Load the configuration and the plugins it enables.

        :param source: a loaded Config, an already parsed mapping (as TOML would give it), a
            file path, or None for ``$CREDENZA_CONFIG`` / the embedded default.
        :param plugins: plugin objects of an embedding application, asked before configured ones.
        :raises credenza.errors.ConfigError: naming the file, key or plugin that is wrong.
        """
        if isinstance(source, Config):
            config = source
        elif isinstance(source, Mapping):
            config = Config.from_mapping(source)
        else:
            config = Config.load(source)
        plugin_manager = load_plugins(config, plugins)
        return cls(config, plugin_manager,
                   plugin_manager.hook.credenza_token_store(config=config))

    # -- identity ---------------------------------------------------------------------------

    def identify(self, request: IdentityRequest, *, api_key_wins: bool = False) -> Principal:
        """The caller, with all its groups.

        Every credential presented is checked on its own (an API key, HTTP Basic, a bearer
        token): one that is wrong or that nobody recognises makes the request 401, whatever the
        others say and whatever the plugin order; all must name the same caller. For each, API
        keys of the token store (``ck_...``) are checked first, then the identity plugins are
        asked in order. A caller identified by a token this broker issued is refused once that
        token (or the API token it came from) is revoked.

        :param api_key_wins: when every credential is valid but they name different callers,
            take the API key's (libica sends all it has and means the key); else refuse.
        :raises Unauthenticated: when nobody recognises the caller, or credentials are wrong.
        """
        try:
            principals = [self._identify_one(part) for part in request.each_credential()]
        except Unauthenticated as exc:
            self._refuse_identity(request, exc.detail)
            raise
        first = principals[0]
        if first is None and request.presented is None:
            raise Unauthenticated("no valid credentials were presented")
        if any(principal is None for principal in principals):
            self._refuse_identity(request, "invalid credentials")
            raise Unauthenticated("invalid credentials")
        if any(principal.name != first.name for principal in principals) and not (
                api_key_wins and request.api_key):
            detail = "invalid credentials: those presented name different callers"
            self._refuse_identity(request, detail)
            raise Unauthenticated(detail)
        principal = self.enrich(first)
        self.notify_signed_in(SignedInEvent(principal, request.credential))
        return principal

    def _refuse_identity(self, request: IdentityRequest, reason: str) -> None:
        self.notify_denied(DeniedEvent(None, "identity", request.remote_addr or "-", reason))

    def _identify_one(self, request: IdentityRequest) -> Principal | None:
        principal = self.api_keys.identify(request)
        if principal is None:
            principal = self._hook.credenza_identify(request=request)
            if principal is not None:
                self.tokens.check_identifying(principal)
        return principal

    def enrich(self, principal: Principal) -> Principal:
        """``principal`` with the groups and attributes every source knows for it (what the
        identity source said wins; then the earlier plugin)."""
        groups = principal.groups.union(*self._hook.credenza_principal_groups(
            principal=principal))
        attributes: dict[str, Any] = {}
        for found in reversed(self._hook.credenza_principal_attributes(principal=principal)):
            attributes.update(found)
        attributes.update(principal.attributes)
        if groups == principal.groups and attributes == principal.attributes:
            return principal  # the usual case: the identity source said it all
        return attrs.evolve(principal, groups=groups, attributes=attributes)

    # -- what the caller may use -------------------------------------------------------------

    def grants(self, principal: Principal) -> tuple[Grant, ...]:
        """Every grant of ``principal``, de-duplicated, in plugin order."""
        merged = itertools.chain.from_iterable(self._hook.credenza_grants(principal=principal))
        return tuple(dict.fromkeys(merged))

    def authorize(self, principal: Principal, kind: str, target: str, role: str | None = None,
                  audiences: frozenset[str] = frozenset()) -> Grant:
        """The first grant that permits ``kind``/``target``/``role`` and all of ``audiences``.

        :raises Forbidden: when there is none (observers hear of it).
        """
        grants = self.grants(principal)
        for grant in grants:
            if grant.permits(kind, target, role, audiences):
                return grant
        what = f"{kind} {target}" + (f" role {role}" if role else "")
        if audiences and any(grant.permits(kind, target, role) for grant in grants):
            what += f" with audience {', '.join(sorted(audiences))}"
        reason = f"{principal.name} has no grant for {what}"
        self.notify_denied(DeniedEvent(principal, kind, target, reason, role=role))
        raise Forbidden(reason)

    def accounts(self) -> dict[str, Account]:
        """The account catalogue by name; the first plugin to name an account wins."""
        catalogue: dict[str, Account] = {}
        for account in itertools.chain.from_iterable(self._hook.credenza_accounts()):
            catalogue.setdefault(account.name, account)
        return catalogue

    def account(self, name: str) -> Account:
        """One account of the catalogue.

        :raises BadRequest: for a name no account could have. :raises NotFound: for an unknown one.
        """
        if not valid_account_name(name):
            raise BadRequest(f"{name!r} is not a valid account name ({ACCOUNT_NAME.pattern})")
        try:
            return self.accounts()[name]
        except KeyError:
            raise NotFound(f"unknown account {name!r}") from None

    def aws_roles(self, principal: Principal) -> dict[str, list[str]]:
        """Account name -> the roles ``principal`` may assume there, sorted.

        Only accounts in the catalogue. A grant naming a role lists it; a wildcard role lists
        the roles its account declares (``Account.roles``); a wildcard account, every account
        of the catalogue.
        """
        catalogue = self.accounts()
        roles: dict[str, set[str]] = {}
        for grant in self.grants(principal):
            if grant.kind != GrantKind.AWS:
                continue
            targets = catalogue.values() if grant.target == WILDCARD else \
                [catalogue[grant.target]] if grant.target in catalogue else []
            for account in targets:
                named = account.roles if grant.role == WILDCARD else (grant.role or "",)
                if named:
                    roles.setdefault(account.name, set()).update(named)
        return {account: sorted(names) for account, names in sorted(roles.items())}

    # -- issuing ------------------------------------------------------------------------------

    def issue_aws(
        self, principal: Principal, account_name: str, role: str, options: AwsOptions
    ) -> tuple[Account, AwsCredentials]:
        """Temporary AWS credentials for ``role`` in ``account_name``, if a grant permits them.

        :raises NotFound: unknown account. :raises Forbidden: no grant.
        :raises BadRequest: a callback URL that is not allowed (checked before anything is
            issued). :raises NotConfigured: no enabled plugin issues AWS credentials.
        """
        if not valid_role_name(role):
            raise BadRequest(f"{role!r} is not a valid IAM role name ({ROLE_NAME.pattern})")
        account = self.account(account_name)
        grant = self.authorize(principal, GrantKind.AWS, account.name, role)
        if options.callback_url is not None and self._hook.credenza_console_callback(
                url=options.callback_url) is None:  # a bad one is refused before any issuing
            raise BadRequest("no enabled plugin allows console callback URLs")
        # The grant may be a wildcard: the role asked for is the one to issue.
        grant = Grant.aws(account.name, role, via=grant.via)
        credentials = self._hook.credenza_issue_aws(
            principal=principal, account=account, grant=grant, options=options
        )
        if credentials is None:
            raise NotConfigured("no enabled plugin issues AWS credentials (enable aws-sts)")
        self.notify_issued(IssuedEvent(principal, GrantKind.AWS, account.name, role=role,
                                       expires_at=credentials.expiration))
        return account, credentials

    def console_url(self, principal: Principal, account: Account, credentials: AwsCredentials,
                    options: AwsOptions) -> str:
        """An AWS console sign-in URL for ``credentials`` (a secret: never log it).

        :raises BadRequest: for a callback URL outside the allowlist.
        :raises NotConfigured: when no enabled plugin makes console URLs.
        """
        url = self._hook.credenza_console_url(principal=principal, account=account,
                                              credentials=credentials, options=options)
        if url is None:
            raise NotConfigured("no enabled plugin makes console sign-in URLs (enable aws-sts)")
        return url

    # -- tokens -------------------------------------------------------------------------------

    def issue_token(self, principal: Principal, spec: TokenSpec) -> IssuedToken:
        """A token of ``spec.provider``, if a ``token`` grant permits it and its audiences.

        :raises Forbidden: no grant, or audiences beyond every grant's.
        :raises NotFound: no enabled plugin has that provider.
        """
        self.authorize(principal, GrantKind.TOKEN, spec.provider, audiences=spec.audiences)
        return self.tokens.issue(principal, spec)

    def upstream_token(self, principal: Principal, provider: str, scope: str | None = None,
                       force: bool = False) -> UpstreamToken:
        """An upstream provider's access token, for a caller with an ``oauth`` grant for it."""
        self.authorize(principal, GrantKind.OAUTH, provider)
        token = self._hook.credenza_upstream_token(provider=provider, scope=scope, force=force)
        if token is None:
            raise NotFound(f"unknown upstream OAuth provider {provider!r}")
        self.notify_issued(IssuedEvent(principal, GrantKind.OAUTH, provider,
                                       expires_at=token.expires_at))
        return token

    def managed_credential(self, principal: Principal, identifier: str) -> str:
        """A managed upstream credential, for a caller with an ``api-key`` grant for it."""
        self.authorize(principal, GrantKind.API_KEY, identifier)
        value = self._hook.credenza_managed_credential(identifier=identifier)
        if value is None:
            raise NotFound(f"no managed credential {identifier!r}")
        self.notify_issued(IssuedEvent(principal, GrantKind.API_KEY, identifier))
        return value

    # -- operations ---------------------------------------------------------------------------

    def health(self) -> list[Health]:
        """The health of every dependency the plugins report; a failing check reports itself."""
        report: list[Health] = []
        for plugin_name, call in self.plugin_manager.each("credenza_health"):
            try:
                for checks in call():
                    report.extend(checks)
            except Exception as exc:  # a broken health check is itself a failed check
                log.exception("health check of plugin %s failed", plugin_name)
                report.append(Health(plugin_name, ok=False,
                                     detail=f"health check raised {type(exc).__name__}"))
        return report

    def plugin_names(self) -> list[str]:
        """The names of the registered plugins, in the order they are asked."""
        return [name for name, _ in reversed(self.plugin_manager.list_name_plugin())]

    def close(self) -> None:
        """Let every plugin release its connections."""
        self._hook.credenza_shutdown()

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- observers ----------------------------------------------------------------------------

    def notify_issued(self, event: IssuedEvent) -> None:
        """Tell every ``credenza_issued`` observer that a credential was handed out."""
        metrics.series(metrics.ISSUED, event.kind, event.target if event.kind in PROVIDER_KINDS
                       else "").inc()
        self._observe("credenza_issued", event)

    def notify_revoked(self, event: RevokedEvent) -> None:
        """Tell every ``credenza_revoked`` observer that tokens were revoked or reinstated."""
        metrics.REVOKED.labels("reinstated" if event.reinstated else "revoked").inc(
            len(event.token_ids))
        self._observe("credenza_revoked", event)

    def notify_denied(self, event: DeniedEvent) -> None:
        """Tell every ``credenza_denied`` observer that a request was refused."""
        metrics.REFUSED.labels("identity" if event.kind == "identity" else "grant",
                               event.kind).inc()
        self._observe("credenza_denied", event)

    def notify_signed_in(self, event: SignedInEvent) -> None:
        """Tell every ``credenza_signed_in`` observer that a request identified its caller."""
        self._observe("credenza_signed_in", event)

    def _observe(self, hook_name: str, event: object) -> None:
        """Call every observer; one that fails is logged and does not stop the others, except
        by raising :class:`Unavailable` (an audit sink that cannot write, failing closed)."""
        for plugin_name, call in self.plugin_manager.each(hook_name):
            try:
                call(event=event)
            except Unavailable:
                raise
            except Exception:
                log.exception("observer %s of plugin %s failed", hook_name, plugin_name)

