"""The Broker: the single path from a request to a credential.

    identify -> groups -> grants -> authorize -> issue -> record -> observers

Front ends (the WSGI app, the CLI, an embedding application) call the methods of one Broker; they
never call hooks themselves. Each method is a typed wrapper around the hooks it needs.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import logging
import os
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from credenza.config import Config
from credenza.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidGrant,
    NotConfigured,
    NotFound,
    Unauthenticated,
)
from credenza.loader import PluginManager, load_plugins
from credenza.models import (
    ACCESS_TOKEN_PROVIDER,
    ACCOUNT_NAME,
    API_KEY_PREFIX,
    API_KEY_PROVIDER,
    API_TOKEN_LIFETIME,
    API_TOKEN_PROVIDER,
    REFRESH_TOKEN_LIFETIME,
    REFRESH_TOKEN_PROVIDER,
    REGISTERED_CLAIMS,
    ROLE_NAME,
    WILDCARD,
    Account,
    AwsCredentials,
    AwsOptions,
    DeniedEvent,
    Grant,
    Health,
    IdentityRequest,
    IssuedEvent,
    IssuedToken,
    Page,
    Principal,
    RevokedEvent,
    TokenQuery,
    TokenRecord,
    TokenSpec,
    TokenStore,
    UpstreamToken,
    claim_audiences,
    utcnow,
    valid_account_name,
    valid_role_name,
)
from credenza.secrets import new_token_id

log = logging.getLogger(__name__)


class Broker:
    """Answers who is calling, what they may use, and hands out credentials for it."""

    def __init__(self, config: Config, plugin_manager: PluginManager,
                 store: TokenStore | None = None) -> None:
        self.config = config
        self.plugin_manager = plugin_manager
        self.store = store
        self._hook = plugin_manager.hook

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

    def identify(self, request: IdentityRequest) -> Principal:
        """The caller, with all its groups.

        :raises Unauthenticated: when nobody recognises the caller, or credentials are wrong.
        """
        try:
            principal = self._hook.credenza_identify(request=request)
        except Unauthenticated as exc:
            self._denied(DeniedEvent(None, "identity", request.remote_addr or "-", exc.detail))
            raise
        if principal is None:
            presented = request.basic or request.bearer or request.api_key
            detail = "invalid credentials" if presented else "no valid credentials were presented"
            raise Unauthenticated(detail, challenges=self._challenges())
        # A token this broker issued identifies nobody once it is revoked, nor once the API
        # token it was exchanged for is (a lost laptop's login ends at once).
        for key, what in (("token_id", "the access token"), ("api_token_id", "its API token")):
            token_id = principal.attributes.get(key)
            if token_id is None or self.store is None:
                continue
            record = self.store.get(str(token_id))
            if record is None or record.revoked:
                raise Unauthenticated(f"{what} has been revoked", challenges=self._challenges())
        return self.enrich(principal)

    def enrich(self, principal: Principal) -> Principal:
        """``principal`` with the groups and attributes every source knows for it (what the
        identity source said wins; then the earlier plugin)."""
        groups = itertools.chain.from_iterable(
            self._hook.credenza_principal_groups(principal=principal)
        )
        attributes: dict[str, Any] = {}
        for found in reversed(self._hook.credenza_principal_attributes(principal=principal)):
            attributes.update(found)
        attributes.update(principal.attributes)
        return attrs.evolve(principal.with_groups(groups), attributes=attributes)

    def _challenges(self) -> tuple[str, ...]:
        realm = self.config.server.realm.replace('"', "")
        return (f'Basic realm="{realm}"', f'Bearer realm="{realm}"')

    # -- what the caller may use -------------------------------------------------------------

    def grants(self, principal: Principal) -> tuple[Grant, ...]:
        """Every grant of ``principal``, de-duplicated, in plugin order."""
        merged = itertools.chain.from_iterable(self._hook.credenza_grants(principal=principal))
        return tuple(dict.fromkeys(merged))

    def authorize(
        self, principal: Principal, kind: str, target: str, role: str | None = None
    ) -> Grant:
        """The grant that permits ``kind``/``target``/``role``.

        :raises Forbidden: when there is none (observers hear of it).
        """
        for grant in self.grants(principal):
            if grant.permits(kind, target, role):
                return grant
        what = f"{kind} {target}" + (f" role {role}" if role else "")
        reason = f"{principal.name} has no grant for {what}"
        self._denied(DeniedEvent(principal, kind, target, reason, role=role))
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

        Only accounts in the catalogue, and only named roles: a wildcard grant permits any role
        but names none to list.
        """
        catalogue = self.accounts()
        roles: dict[str, set[str]] = {}
        for grant in self.grants(principal):
            if grant.kind == "aws" and grant.target in catalogue and grant.role != WILDCARD:
                roles.setdefault(grant.target, set()).add(grant.role or "")
        return {account: sorted(names) for account, names in sorted(roles.items())}

    # -- issuing ------------------------------------------------------------------------------

    def issue_aws(
        self, principal: Principal, account_name: str, role: str, options: AwsOptions
    ) -> tuple[Account, AwsCredentials]:
        """Temporary AWS credentials for ``role`` in ``account_name``, if a grant permits them.

        :raises NotFound: unknown account. :raises Forbidden: no grant.
        :raises NotConfigured: no enabled plugin issues AWS credentials.
        """
        if not valid_role_name(role):
            raise BadRequest(f"{role!r} is not a valid IAM role name ({ROLE_NAME.pattern})")
        account = self.account(account_name)
        grant = self.authorize(principal, "aws", account.name, role)
        # The grant may be a wildcard: the role asked for is the one to issue.
        grant = Grant.aws(account.name, role, via=grant.via)
        credentials = self._hook.credenza_issue_aws(
            principal=principal, account=account, grant=grant, options=options
        )
        if credentials is None:
            raise NotConfigured("no enabled plugin issues AWS credentials (enable aws-sts)")
        self._observe("credenza_issued", event=IssuedEvent(
            principal, "aws", account.name, role=role, expires_at=credentials.expiration
        ))
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

    # -- tokens ---------------------------------------------------------------------------------

    def _token_store(self) -> TokenStore:
        if self.store is None:
            raise NotConfigured("no token store is enabled (enable the sql plugin)")
        return self.store

    def _issue_and_record(self, principal: Principal, spec: TokenSpec) -> IssuedToken:
        store = self._token_store()
        token = self._hook.credenza_issue_token(principal=principal, spec=spec)
        if token is None:
            raise NotFound(f"unknown credential provider {spec.provider!r}")
        store.add(token.record)
        self._observe("credenza_issued", event=IssuedEvent(
            principal, "token", spec.provider, token_id=token.record.token_id,
            expires_at=token.record.expires_at))
        return token

    def issue_token(self, principal: Principal, spec: TokenSpec) -> IssuedToken:
        """A token of ``spec.provider``, if a ``token`` grant permits it (and its audiences).

        :raises Forbidden: no grant, or audiences beyond the grant's.
        :raises NotFound: no enabled plugin has that provider.
        """
        grant = self.authorize(principal, "token", spec.provider)
        beyond = sorted(spec.audiences - grant.audiences) if grant.audiences else []
        if beyond:
            reason = f"{principal.name} may not request audience {beyond[0]!r} of {spec.provider}"
            self._denied(DeniedEvent(principal, "token", spec.provider, reason))
            raise Forbidden(reason)
        return self._issue_and_record(principal, spec)

    def issue_access_token(self, principal: Principal, audiences: frozenset[str],
                           scope: str, family: str | None = None) -> IssuedToken:
        """An OAuth access token for this broker's own API (``/oauth2/token``); ``family``
        ties it to the refresh tokens it was issued with."""
        claims = {"scope": scope, **({"family": family} if family else {})}
        spec = TokenSpec(ACCESS_TOKEN_PROVIDER, principal.name, audiences,
                         custom_claims=claims, consumer_type="application",
                         consumer_id=principal.name)
        return self._issue_and_record(principal, spec)

    def issue_refresh_token(self, principal: Principal, audiences: frozenset[str], scope: str,
                            family: str | None = None) -> tuple[str, str]:
        """A new opaque refresh token (stored only as its SHA-256) and its family id."""
        store = self._token_store()
        family = family or secrets.token_hex(12)
        token_id = new_token_id("rt")
        value = f"{token_id}.{secrets.token_urlsafe(32)}"
        now = utcnow().replace(microsecond=0)
        store.add(TokenRecord(
            token_id=token_id, token_type="refresh_token",  # noqa: S106 - a kind of token
            provider=REFRESH_TOKEN_PROVIDER,
            consumer_type="application", consumer_id=principal.name,
            creator_type=principal.kind, creator_id=principal.name, issued_at=now,
            expires_at=now + REFRESH_TOKEN_LIFETIME,
            claims={"family": family, "scope": scope, "aud": sorted(audiences)},
        ), [hashlib.sha256(value.encode()).digest()])
        return value, family

    def refresh_access_token(self, principal: Principal,
                             refresh_token: str) -> tuple[IssuedToken, str]:
        """Rotate: the refresh token is spent, a new access and refresh token come back.

        A refresh token used a second time means a copy is in someone else's hands: the whole
        family (every refresh and access token descended from the same grant) is revoked.

        :raises InvalidGrant: unknown, another client's, expired, revoked or reused.
        """
        store = self._token_store()
        record = store.find(hashlib.sha256(refresh_token.encode()).digest())
        if (record is None or record.provider != REFRESH_TOKEN_PROVIDER
                or record.consumer_id != principal.name):
            raise InvalidGrant("the refresh token is not valid for this client")
        family = str(record.claims["family"])
        spent = not record.revoked and store.set_revoked([record.token_id], True, utcnow()) == 1
        if not spent:  # revoked already: used before, or raced by a copy being used right now
            revoked = self.revoke_family(principal, record.consumer_id, family)
            raise InvalidGrant(f"the refresh token was already used: its family ({revoked} "
                               "tokens) is revoked")
        if record.expired():
            raise InvalidGrant("the refresh token has expired")
        audiences = claim_audiences(record.claims)
        scope = str(record.claims.get("scope", ""))
        access = self.issue_access_token(principal, audiences, scope, family)
        new_refresh, _ = self.issue_refresh_token(principal, audiences, scope, family)
        return access, new_refresh

    def create_api_key(self, owner: Principal, name: str,
                       lifetime: dt.timedelta | None = None) -> tuple[TokenRecord, str]:
        """A new API key acting as ``owner`` (shown once, stored as its SHA-256)."""
        if not name or not name.isprintable() or len(name) > 128:
            raise BadRequest("an API key needs a printable name of at most 128 characters")
        token_id = new_token_id(API_KEY_PREFIX.rstrip("_"))
        value = f"{token_id}.{secrets.token_urlsafe(32)}"
        now = utcnow().replace(microsecond=0)
        record = TokenRecord(
            token_id=token_id, token_type="api_key",  # noqa: S106 - a kind of token
            provider=API_KEY_PROVIDER, consumer_type="custom", consumer_id=owner.name,
            creator_type=owner.kind, creator_id=owner.name, issued_at=now,
            expires_at=now + (lifetime or API_TOKEN_LIFETIME),
            claims={"name": name, "kind": owner.kind},
        )
        self._token_store().add(record, [hashlib.sha256(value.encode()).digest()])
        self._observe("credenza_issued", event=IssuedEvent(
            owner, "api-key", name, token_id=token_id, expires_at=record.expires_at))
        return record, value

    def list_api_keys(self, principal: Principal, owner: str) -> list[TokenRecord]:
        """The API keys of ``owner`` (the owner itself, or an admin of API keys)."""
        self.authorize_manage(principal, owner, API_KEY_PROVIDER)
        store = self._token_store()
        return [record for token_id in store.token_ids(owner, API_KEY_PROVIDER)
                if (record := store.get(token_id)) is not None]

    def revoke_api_key(self, principal: Principal, key_id: str) -> TokenRecord:
        """Revoke one API key by its id (its owner, or an admin of API keys)."""
        record = self._token_store().get(key_id)
        if record is None or record.provider != API_KEY_PROVIDER:
            raise NotFound(f"no API key {key_id!r}")
        self.authorize_manage(principal, record.consumer_id, API_KEY_PROVIDER)
        self._set_revoked(principal, [key_id], revoked=True)
        return record

    def upstream_token(self, principal: Principal, provider: str, scope: str | None = None,
                       force: bool = False) -> UpstreamToken:
        """An upstream provider's access token, for a caller with an ``oauth`` grant for it."""
        self.authorize(principal, "oauth", provider)
        token = self._hook.credenza_upstream_token(provider=provider, scope=scope, force=force)
        if token is None:
            raise NotFound(f"unknown upstream OAuth provider {provider!r}")
        self._observe("credenza_issued", event=IssuedEvent(
            principal, "oauth", provider, expires_at=token.expires_at))
        return token

    def managed_credential(self, principal: Principal, identifier: str) -> str:
        """A managed upstream credential, for a caller with an ``api-key`` grant for it."""
        self.authorize(principal, "api-key", identifier)
        value = self._hook.credenza_managed_credential(identifier=identifier)
        if value is None:
            raise NotFound(f"no managed credential {identifier!r}")
        self._observe("credenza_issued", event=IssuedEvent(principal, "api-key", identifier))
        return value

    def create_api_token(self, user: Principal, client_id: str,
                         provider: str) -> tuple[TokenRecord, str]:
        """A long-lived API token for a public client: ``user`` will get ``provider``'s JWTs
        (audience ``client_id``) in exchange for it. Stored as its SHA-256; shown once.

        :raises Forbidden: when ``user`` may not get tokens of ``provider``.
        """
        self.authorize(user, "token", provider)
        token_id = new_token_id("ak")
        value = f"{token_id}.{secrets.token_urlsafe(32)}"
        now = utcnow().replace(microsecond=0)
        record = TokenRecord(
            token_id=token_id, token_type="api_token",  # noqa: S106 - a kind of token
            provider=API_TOKEN_PROVIDER,
            consumer_type="custom", consumer_id=user.name, creator_type=user.kind,
            creator_id=user.name, issued_at=now, expires_at=now + API_TOKEN_LIFETIME,
            claims={"client_id": client_id, "provider": provider,
                    **{k: str(v) for k, v in user.attributes.items()
                       if k in ("name", "email", "org")}},
        )
        self._token_store().add(record, [hashlib.sha256(value.encode()).digest()])
        self._observe("credenza_issued", event=IssuedEvent(
            user, "api-token", client_id, token_id=token_id, expires_at=record.expires_at))
        return record, value

    def exchange_api_token(self, client_id: str, api_token: str) -> IssuedToken:
        """A JWT for the user of an API token; the same API token keeps working.

        :raises Unauthenticated: unknown, another client's, revoked or expired API token.
        """
        record = self._token_store().find(hashlib.sha256(api_token.encode()).digest())
        if (record is None or record.provider != API_TOKEN_PROVIDER
                or record.claims.get("client_id") != client_id or record.revoked
                or record.expired()):
            raise Unauthenticated("invalid client_id or refresh token", challenges=())
        user = self.enrich(Principal(record.consumer_id, source="api-token"))
        claims = {key: record.claims[key] for key in ("name", "email", "org")
                  if key in record.claims}
        spec = TokenSpec(str(record.claims["provider"]), user.name, [client_id],
                         custom_claims={**claims, "groups": sorted(user.groups),
                                        "api_token_id": record.token_id},
                         consumer_id=user.name)
        return self.issue_token(user, spec)

    def exchange_token(self, client: Principal, subject_token: str,
                       audiences: frozenset[str], scope: str) -> IssuedToken:
        """RFC 8693: an access token for the subject of ``subject_token``, issued to
        ``client`` (named in the ``act`` claim).

        The subject token is a live token of this broker, or one of a trusted external issuer;
        the client needs an ``exchange`` grant for the subject token's issuer.

        :raises Unauthenticated: the subject token does not verify, or is revoked or expired.
        :raises Forbidden: the client may not exchange tokens of that issuer.
        """
        claims = self._hook.credenza_verify_token(token=subject_token)
        if not claims or "sub" not in claims:
            raise Unauthenticated("the subject token is not one this broker can verify",
                                  challenges=())
        if not claims.get("external"):
            record = self._token_store().get(str(claims.get("jti", "")))
            if record is None or record.revoked or record.expired():
                raise Unauthenticated("the subject token is revoked or expired", challenges=())
        issuer = str(claims.get("iss", ""))
        self.authorize(client, "exchange", issuer)
        subject = str(claims["sub"])
        spec = TokenSpec(ACCESS_TOKEN_PROVIDER, subject, audiences,
                         custom_claims={"scope": scope, "act": {"sub": client.name},
                                        "subject_issuer": issuer},
                         consumer_type="application", consumer_id=client.name)
        return self._issue_and_record(client, spec)

    def revoke_family(self, actor: Principal, consumer_id: str, family: str) -> int:
        """Revoke every refresh and access token of one grant family."""
        store = self._token_store()
        ids = [token_id
               for provider in (REFRESH_TOKEN_PROVIDER, ACCESS_TOKEN_PROVIDER)
               for token_id in store.token_ids(consumer_id, provider)
               if (record := store.get(token_id)) is not None
               and record.claims.get("family") == family]
        self._set_revoked(actor, ids, revoked=True)
        return len(ids)

    def any_token_record(self, token: str) -> TokenRecord | None:
        """The record of a signed token, or of an opaque refresh or API token (found by its
        hash), or None."""
        record = self.token_record(token)
        if record is None and self.store is not None and token.startswith(("rt_", "ak_")):
            record = self.store.find(hashlib.sha256(token.encode()).digest())
        return record

    def refresh_token(self, token: str, provider: str) -> IssuedToken:
        """A new token with the claims of a still-valid, unrevoked one of ``provider``, for the
        same consumer, if that consumer still holds the grant.

        :raises Unauthenticated: the token is not a live token of ``provider``.
        :raises Forbidden: it was made from an API key (such tokens are not refreshable), or
            the grant is gone.
        """
        record = self.token_record(token)
        if (record is None or record.provider != provider or record.revoked
                or record.expired()):
            raise Unauthenticated("the token is not a valid, unrevoked token of this API",
                                  challenges=self._challenges())
        if record.claims.get("origin") == "api-key":
            raise Forbidden("a token created with an API key cannot be refreshed; create a new "
                            "one with the key")
        consumer = self.enrich(Principal(record.consumer_id, source="refresh",
                                         kind=record.creator_type))
        spec = TokenSpec(provider, str(record.claims["sub"]), claim_audiences(record.claims),
                         issuer=str(record.claims["iss"]),
                         custom_claims={k: v for k, v in record.claims.items()
                                        if k not in REGISTERED_CLAIMS},
                         consumer_type=record.consumer_type, consumer_id=record.consumer_id)
        return self.issue_token(consumer, spec)

    def token_record(self, token: str) -> TokenRecord | None:
        """The record of a token this broker issued (a JWT or a derived short token), or None
        when the token is not one, does not verify, or was forgotten."""
        try:
            claims = self._hook.credenza_verify_token(token=token)
        except Unauthenticated:
            return None
        if not claims or "jti" not in claims:
            return None
        return self._token_store().get(str(claims["jti"]))

    def validate_token(self, token: str) -> bool:
        """Whether ``token`` verifies, is known, not revoked and not expired."""
        record = self.token_record(token)
        return record is not None and not record.revoked and not record.expired()

    def authorize_manage(self, principal: Principal, consumer_id: str, provider: str) -> None:
        """A consumer manages its own tokens; an ``admin`` grant manages anyone's.

        :raises Forbidden: otherwise.
        """
        if principal.name != consumer_id:
            self.authorize(principal, "admin", provider)

    def _usable(self, record: TokenRecord) -> TokenRecord:
        if record.revoked:
            raise Conflict(f"token {record.token_id} is revoked")
        if record.expired():
            raise Conflict(f"token {record.token_id} has expired")
        return record

    def _resign(self, record: TokenRecord) -> IssuedToken:
        token = self._hook.credenza_resign_token(record=self._usable(record))
        if token is None:
            raise NotConfigured(f"no enabled plugin can re-sign tokens of {record.provider!r}")
        return token

    def obtain_token(self, principal: Principal, consumer_id: str, token_id: str) -> IssuedToken:
        """A stored token again, by id, for its consumer (or an admin)."""
        record = self._token_store().get(token_id)
        if record is None or record.consumer_id != consumer_id:
            raise NotFound(f"no token {token_id!r} of consumer {consumer_id!r}")
        self.authorize_manage(principal, record.consumer_id, record.provider)
        return self._resign(record)

    def obtain_by_short_token(self, short_token: str) -> IssuedToken:
        """The token a derived short token stands for (the short token is the credential)."""
        record = self.token_record(short_token) if short_token.startswith("st_") else None
        if record is None:
            raise Unauthenticated("invalid derived short token", challenges=())
        return self._resign(record)

    def list_tokens(self, principal: Principal, query: TokenQuery, max_results: int,
                    next_token: str | None) -> Page:
        """One page of a consumer's tokens of one provider."""
        self.authorize_manage(principal, query.consumer_id, query.provider)
        after = _page_position(next_token, query) if next_token else None
        records, more, total = self._token_store().list(query, max_results, after, utcnow())
        following = _page_token(records[-1].token_id, query) if more and records else None
        return Page(records, following, total)

    def _known(self, token: str) -> TokenRecord:
        record = self.any_token_record(token)
        if record is None:
            raise NotFound("no such token (it does not verify, or is unknown here)")
        return record

    def revoke_token(self, principal: Principal, token: str) -> TokenRecord:
        """Revoke one token (its consumer or an admin)."""
        record = self._known(token)
        self.authorize_manage(principal, record.consumer_id, record.provider)
        self._set_revoked(principal, [record.token_id], revoked=True)
        return record

    def reinstate_token(self, principal: Principal, token: str) -> TokenRecord:
        """Reinstate one revoked token: an admin act, refused for expired tokens."""
        record = self._known(token)
        self.authorize(principal, "admin", record.provider)
        if record.expired():
            raise Conflict(f"token {record.token_id} has expired and cannot be reinstated")
        self._set_revoked(principal, [record.token_id], revoked=False)
        return record

    def revoke_consumer(self, principal: Principal, consumer_id: str, provider: str) -> int:
        """Revoke all of a consumer's tokens of a provider; returns how many changed."""
        self.authorize_manage(principal, consumer_id, provider)
        return self._set_revoked(principal, self._token_store().token_ids(consumer_id, provider),
                                 revoked=True)

    def reinstate_consumer(self, principal: Principal, consumer_id: str, provider: str) -> int:
        """Reinstate a consumer's unexpired tokens of a provider (admin)."""
        self.authorize(principal, "admin", provider)
        store = self._token_store()
        ids = [token_id for token_id in store.token_ids(consumer_id, provider)
               if (record := store.get(token_id)) is not None and not record.expired()]
        return self._set_revoked(principal, ids, revoked=False)

    def jwks(self) -> list[dict[str, Any]]:
        """Every public key the plugins publish."""
        return [dict(key) for keys in self._hook.credenza_jwks() for key in keys]

    def issuer(self) -> str | None:
        """The issuer of this broker's own tokens, if a plugin issues any."""
        return self._hook.credenza_issuer()

    def _set_revoked(self, principal: Principal, token_ids: list[str], revoked: bool) -> int:
        changed = self._token_store().set_revoked(token_ids, revoked, utcnow())
        if token_ids:
            self._observe("credenza_revoked", event=RevokedEvent(principal, tuple(token_ids),
                                                                 reinstated=not revoked))
        return changed

    # -- operations ---------------------------------------------------------------------------

    def health(self) -> list[Health]:
        """The health of every dependency the plugins report; a failing check reports itself."""
        report: list[Health] = []
        for impl in _in_call_order(self._hook.credenza_health):
            try:
                report.extend(impl.function())
            except Exception as exc:  # a broken health check is itself a failed check
                log.exception("health check of plugin %s failed", impl.plugin_name)
                report.append(Health(impl.plugin_name, ok=False,
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

    def _denied(self, event: DeniedEvent) -> None:
        self._observe("credenza_denied", event=event)

    def _observe(self, hook_name: str, **kwargs: Any) -> None:
        """Call every observer; one that fails is logged and does not stop the others."""
        for impl in _in_call_order(getattr(self._hook, hook_name)):
            try:
                impl.function(**{name: kwargs[name] for name in impl.argnames})
            except Exception:
                log.exception("observer %s of plugin %s failed", hook_name, impl.plugin_name)



def _fingerprint(query: TokenQuery) -> str:
    raw = f"{query.consumer_id}\0{query.provider}\0{query.revoked}\0{query.expired}"
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _page_token(after: str, query: TokenQuery) -> str:
    """An opaque next token: where the page ended, bound to the query it belongs to."""
    raw = json.dumps([after, _fingerprint(query)], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _page_position(token: str, query: TokenQuery) -> str:
    try:
        after, fingerprint = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, TypeError):
        raise BadRequest("nextToken is not one this broker gave out") from None
    if fingerprint != _fingerprint(query) or not isinstance(after, str):
        raise BadRequest("nextToken belongs to another listing (other filters)")
    return after


def _in_call_order(hook: Any) -> list[Any]:
    """The implementations of ``hook`` in the order pluggy would call them."""
    return list(reversed(hook.get_hookimpls()))
