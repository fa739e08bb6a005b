"""The token lifecycle: what the broker remembers of the tokens it issued, and who may change it.

Every token this broker issues has a :class:`~credenza.models.TokenRecord` in the token store.
:class:`TokenLifecycle` (``broker.tokens``) finds a record from a token's value, validates,
obtains again, lists page by page, and revokes or reinstates tokens one at a time, by consumer or
by grant family. The rule for who may manage tokens is here too: a consumer manages its own, an
``admin`` grant for the provider manages anyone's; reinstating is for admins only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from credenza.errors import Conflict, NotConfigured, NotFound, Unauthenticated
from credenza.models import (
    ACCESS_TOKEN_PROVIDER,
    API_TOKEN_CLAIM,
    FAMILY_CLAIM,
    SHORT_TOKEN_PREFIX,
    WILDCARD,
    GrantKind,
    IssuedEvent,
    IssuedToken,
    Page,
    Principal,
    RevokedEvent,
    TokenQuery,
    TokenRecord,
    TokenSpec,
    TokenStore,
    utcnow,
)
from credenza.opaque import API_TOKEN, REFRESH_TOKEN, kind_of

if TYPE_CHECKING:
    from credenza.broker import Broker


class TokenLifecycle:
    """Records, validation, listing, revocation and reinstatement of issued tokens."""

    def __init__(self, broker: Broker, store: TokenStore | None) -> None:
        self._broker = broker
        self._hook = broker.plugin_manager.hook
        self._store = store

    @property
    def store(self) -> TokenStore:
        """The token store. :raises NotConfigured: when no plugin provides one."""
        if self._store is None:
            raise NotConfigured("no token store is enabled (enable the sql plugin)")
        return self._store

    @property
    def enabled(self) -> bool:
        """Whether a token store is configured."""
        return self._store is not None

    # -- finding records ------------------------------------------------------------------------

    def record(self, token: str) -> TokenRecord | None:
        """The record of a token this broker signed (a JWT or a derived short token), or None
        when the token is not one, does not verify, or was forgotten."""
        try:
            claims = self._hook.credenza_verify_token(token=token)
        except Unauthenticated:
            return None
        if not claims or "jti" not in claims:
            return None
        return self.store.get(str(claims["jti"]))

    def any_record(self, token: str) -> TokenRecord | None:
        """The record of a signed token, or of a refresh or API token (found by its hash)."""
        record = self.record(token)
        kind = kind_of(token)
        if record is None and self._store is not None and kind in (REFRESH_TOKEN, API_TOKEN):
            record = kind.find(self._store, token)
        return record

    def live_record(self, token: str, provider: str) -> TokenRecord | None:
        """The record of ``token`` when it is a signed, unrevoked, unexpired token of
        ``provider``; else None."""
        record = self.record(token)
        if record is None or record.provider != provider or record.revoked or record.expired():
            return None
        return record

    def validate(self, token: str) -> bool:
        """Whether ``token`` verifies, is known, not revoked and not expired."""
        record = self.record(token)
        return record is not None and not record.revoked and not record.expired()

    def check_identifying(self, principal: Principal) -> None:
        """Refuse a caller whose identifying token, or the API token that token was exchanged
        for, is revoked or forgotten (a lost laptop's login ends at once).

        :raises Unauthenticated: naming which of the two is revoked.
        """
        if principal.token_id is None or self._store is None:
            return
        record = self._store.get(principal.token_id)
        if record is None or record.revoked:
            raise Unauthenticated("the access token has been revoked")
        parent_id = record.claims.get(API_TOKEN_CLAIM)
        if parent_id is not None:
            parent = self._store.get(str(parent_id))
            if parent is None or parent.revoked:
                raise Unauthenticated("its API token has been revoked")

    # -- issuing --------------------------------------------------------------------------------

    def issue(self, principal: Principal, spec: TokenSpec) -> IssuedToken:
        """A token of ``spec``, signed by the plugin of its provider and recorded; observers
        hear of it. Authorization is the caller's business (:meth:`Broker.issue_token`).

        :raises NotFound: no enabled plugin has that provider.
        """
        store = self.store
        token = self.sign(principal, spec)
        store.add(token.record)
        self._broker.notify_issued(IssuedEvent(
            principal, GrantKind.TOKEN, token.record.provider, token_id=token.record.token_id,
            expires_at=token.record.expires_at))
        return token

    def sign(self, principal: Principal, spec: TokenSpec) -> IssuedToken:
        """A token of ``spec`` signed by the plugin of its provider, neither recorded nor
        announced: :meth:`issue` records what it hands out; the broker presents tokens of
        ``spec.internal`` providers itself (aws-sts's web identity) and never hands them out.

        :raises NotFound: no enabled plugin has that provider.
        """
        token = self._hook.credenza_issue_token(principal=principal, spec=spec)
        if token is None:
            raise NotFound(f"unknown credential provider {spec.provider!r}")
        return token

    def resign(self, record: TokenRecord) -> IssuedToken:
        """The token of a usable record, signed again (same claims, same id).

        :raises Conflict: revoked or expired. :raises NotConfigured: no plugin signs it.
        """
        if record.revoked:
            raise Conflict(f"token {record.token_id} is revoked")
        if record.expired():
            raise Conflict(f"token {record.token_id} has expired")
        token = self._hook.credenza_resign_token(record=record)
        if token is None:
            raise NotConfigured(f"no enabled plugin can re-sign tokens of {record.provider!r}")
        return token

    def obtain(self, principal: Principal, consumer_id: str, token_id: str) -> IssuedToken:
        """A stored token again, by id, for its consumer (or an admin)."""
        record = self.store.get(token_id)
        if record is None or record.consumer_id != consumer_id:
            raise NotFound(f"no token {token_id!r} of consumer {consumer_id!r}")
        self.authorize_manage(principal, record.consumer_id, record.provider)
        return self.resign(record)

    def obtain_by_short_token(self, short_token: str) -> IssuedToken:
        """The token a derived short token stands for (the short token is the credential)."""
        record = self.record(short_token) if short_token.startswith(SHORT_TOKEN_PREFIX) else None
        if record is None:
            raise Unauthenticated("invalid derived short token", challenges=())
        return self.resign(record)

    # -- who may manage -------------------------------------------------------------------------

    def authorize_manage(self, principal: Principal, consumer_id: str, provider: str) -> None:
        """A consumer manages its own tokens; an ``admin`` grant manages anyone's.

        :raises Forbidden: otherwise.
        """
        if principal.name != consumer_id:
            self._broker.authorize(principal, GrantKind.ADMIN, provider)

    def administers(self, principal: Principal, provider: str) -> bool:
        """Whether ``principal`` may manage anyone's tokens of ``provider`` (a question, not a
        check: no denial is reported)."""
        return any(grant.permits(GrantKind.ADMIN, provider)
                   for grant in self._broker.grants(principal))

    # -- listing --------------------------------------------------------------------------------

    def list(self, principal: Principal, query: TokenQuery, max_results: int,
             after: str | None) -> Page:
        """One page of a consumer's tokens of one provider, in token id order after ``after``.

        Without a provider, of every provider: for the consumer itself, or an admin of all
        (``admin`` grant on ``*``).
        """
        self.authorize_manage(principal, query.consumer_id, query.provider or WILDCARD)
        records, more, total = self.store.list(query, max_results, after, utcnow())
        return Page(records, records[-1].token_id if more and records else None, total)

    def of_consumer(self, consumer_id: str, provider: str) -> list[TokenRecord]:
        """Every record of one consumer's tokens of one provider."""
        store = self.store
        return [record for token_id in store.token_ids(consumer_id, provider)
                if (record := store.get(token_id)) is not None]

    # -- revoking and reinstating ----------------------------------------------------------------

    def _known(self, token: str) -> TokenRecord:
        record = self.any_record(token)
        if record is None:
            raise NotFound("no such token (it does not verify, or is unknown here)")
        return record

    def revoke(self, principal: Principal, token: str) -> TokenRecord:
        """Revoke one token, given by value (its consumer or an admin)."""
        record = self._known(token)
        self.authorize_manage(principal, record.consumer_id, record.provider)
        self.set_revoked(principal, [record.token_id], revoked=True)
        return record

    def revoke_record(self, principal: Principal, record: TokenRecord) -> None:
        """Revoke the token of ``record`` (its consumer or an admin)."""
        self.authorize_manage(principal, record.consumer_id, record.provider)
        self.set_revoked(principal, [record.token_id], revoked=True)

    def reinstate(self, principal: Principal, token: str) -> TokenRecord:
        """Reinstate one revoked token, given by value: an admin act, refused for expired
        tokens."""
        record = self._known(token)
        self.reinstate_record(principal, record)
        return record

    def reinstate_record(self, principal: Principal, record: TokenRecord) -> None:
        """Reinstate the revoked token of ``record`` (admin; refused once it has expired)."""
        self._broker.authorize(principal, GrantKind.ADMIN, record.provider)
        if record.expired():
            raise Conflict(f"token {record.token_id} has expired and cannot be reinstated")
        self.set_revoked(principal, [record.token_id], revoked=False)

    def revoke_consumer(self, principal: Principal, consumer_id: str, provider: str) -> int:
        """Revoke all of a consumer's tokens of a provider; returns how many changed."""
        self.authorize_manage(principal, consumer_id, provider)
        return self.set_revoked(principal, self.store.token_ids(consumer_id, provider),
                                revoked=True)

    def reinstate_consumer(self, principal: Principal, consumer_id: str, provider: str) -> int:
        """Reinstate a consumer's unexpired tokens of a provider (admin)."""
        self._broker.authorize(principal, GrantKind.ADMIN, provider)
        ids = [record.token_id for record in self.of_consumer(consumer_id, provider)
               if not record.expired()]
        return self.set_revoked(principal, ids, revoked=False)

    def revoke_family(self, actor: Principal, consumer_id: str, family: str) -> int:
        """Revoke every refresh and access token of one OAuth grant family; returns how many."""
        ids = [record.token_id
               for provider in (REFRESH_TOKEN.provider, ACCESS_TOKEN_PROVIDER)
               for record in self.of_consumer(consumer_id, provider)
               if record.claims.get(FAMILY_CLAIM) == family]
        self.set_revoked(actor, ids, revoked=True)
        return len(ids)

    def set_revoked(self, actor: Principal, token_ids: Iterable[str], revoked: bool) -> int:
        """Mark tokens revoked (or reinstated) and tell the observers; returns how many
        changed."""
        ids = list(token_ids)
        changed = self.store.set_revoked(ids, revoked, utcnow())
        if ids:
            self._broker.notify_revoked(RevokedEvent(actor, tuple(ids), reinstated=not revoked))
        return changed

    # -- keys -----------------------------------------------------------------------------------

    def jwks(self) -> list[dict[str, Any]]:
        """Every public key the plugins publish (JWKS ``keys``)."""
        return [dict(key) for keys in self._hook.credenza_jwks() for key in keys]

    def issuer(self) -> str | None:
        """The issuer of this broker's own tokens, if a plugin issues any."""
        return self._hook.credenza_issuer()

    def verify(self, token: str) -> Mapping[str, Any] | None:
        """The claims of a token some plugin verifies (this broker's or a trusted issuer's).

        :raises Unauthenticated: a token meant for a plugin that does not verify.
        """
        return self._hook.credenza_verify_token(token=token)
