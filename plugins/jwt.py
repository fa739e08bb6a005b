"""Plugin ``jwt``: JWTs for credential providers, OAuth access tokens, derived short tokens.

Settings (``[plugins.jwt]``):

``issuer``
    This broker's issuer URL (access tokens; the default issuer of providers).
``key_dir``
    Signing keys (default ``jwt-keys`` in the data directory). On first start one key per
    algorithm in use is generated there (PEM, mode 0600). PEM files put there by hand are taken
    as active keys. ``credenza jwt keys ...`` prepares, rotates and lists keys.
``short_token_key``
    The HMAC key of derived short tokens (``env:``/``file:``; default a key file in the data
    directory). Replicas must share it, as they share ``key_dir``.
``api_audiences``
    Audiences of the access tokens ``/oauth2/token`` issues, which this broker accepts as bearer
    identity (default ``["urn:cloud:idaas:pam"]``, what the IDaaS PAM client asks for).
``access_token_lifetime_seconds``
    Lifetime of access tokens (default 3600).
``reserved_audience_prefixes``
    Audiences providers may never issue for (default ``["urn:cloud:idaas"]``).
``clock_skew_seconds``
    Leeway when checking exp/nbf (default 30).
``[plugins.jwt.trusted_issuers]``
    External OIDC issuers whose tokens may be exchanged (RFC 8693): issuer URL -> its JWKS URL.
    Their tokens must be meant for this broker (``aud`` is its issuer or an API audience).
``[plugins.jwt.key_rotation.ALG]``
    Scheduled rotation of ``ALG``'s keys: ``rotation_period_seconds`` (0: by command only) and
    ``verification_ttl_seconds`` (how long a replaced key still verifies; at least the longest
    token lifetime plus clock skew, the default). Replicas sharing ``key_dir`` rotate once.
``[plugins.jwt.providers.NAME]``
    One credential provider: ``issuers`` (allowlist, the first is the default), ``audiences``
    (allowed; empty allows any unreserved one), ``default_lifetime_seconds``,
    ``max_lifetime_seconds``, ``algorithm`` (``ES256`` default, ``RS256``, ``EdDSA``),
    ``identity`` (default false; see below), ``internal`` (default false: see below).

An identity provider (``identity = true``) issues the JWTs this broker's own clients hold: its
tokens identify their subject, as a user, on this broker's API (``credenza login`` turns an API
token into them). Because such a token is as good as its subject's password, an identity
provider needs an ``audiences`` allowlist (the client ids), which no other provider may issue
for, and it only issues tokens whose subject is the caller itself. The audiences of access tokens
(``api_audiences``) are likewise never issued by a provider.

An internal provider (``internal = true``) signs tokens only for the broker to present itself,
such as the web identity ``aws-sts`` sends to STS (``AssumeRoleWithWebIdentity``): no token API
issues them, they are not recorded, and no other provider may issue for its audiences, since a
token STS accepts is as good as the AWS credentials it buys.

Keys rotate through three states: ``next`` (published in the JWKS, not signing yet), ``active``
(signing) and ``retiring`` (published until the last token it signed has expired); the key ring
is :mod:`credenza.keyring`. Verification takes the algorithm from the key, never from the token,
so ``alg: none`` and HS256-with-the-public-key forgeries fail.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs
import click
import jwt

from credenza import metrics
from credenza.config import Section
from credenza.errors import BadRequest, Forbidden, InvalidScope, Unauthenticated, Unavailable
from credenza.jwtcheck import VerifiedTokens, check_size, checked_claims
from credenza.keyring import ALGORITHMS, Keyring, b64url
from credenza.markers import hookimpl
from credenza.models import (
    ACCESS_TOKEN_PROVIDER,
    EXTERNAL_CLAIM,
    PRINCIPAL_KINDS,
    REGISTERED_CLAIMS,
    SHORT_TOKEN_PREFIX,
    TOKEN_USE_CLAIM,
    IdentityRequest,
    IssuedToken,
    Principal,
    TokenRecord,
    TokenSpec,
    claim_audiences,
    utcnow,
)
from credenza.secrets import key_file, new_token_id
from credenza.settings import read, setting

NAME = "jwt"


def _audience_claim(audiences: Iterable[str]) -> str | list[str]:
    """One audience as a string (clients compare ``aud == client_id``), several as a list."""
    ordered = sorted(audiences)
    return ordered[0] if len(ordered) == 1 else ordered


@attrs.frozen
class Provider:
    """A credential provider: what its tokens may say and how long they live."""

    identifier: str
    issuers: tuple[str, ...]
    audiences: frozenset[str]
    default_lifetime: int
    max_lifetime: int
    algorithm: str
    identity: bool = False
    internal: bool = False

    @classmethod
    def from_settings(cls, identifier: str, settings: ProviderSettings, default_issuer: str,
                      section: Section) -> Provider:
        """A provider from its declared settings (``section``, its table, names errors)."""
        max_lifetime = settings.max_lifetime_seconds
        default_lifetime = settings.default_lifetime_seconds or min(3600, max_lifetime)
        if default_lifetime > max_lifetime:
            raise section.error("default_lifetime_seconds", f"expected an integer from 60 to "
                                f"{max_lifetime} (max_lifetime_seconds), got {default_lifetime}")
        provider = cls(
            identifier=identifier,
            issuers=settings.issuers or (default_issuer,),
            audiences=frozenset(settings.audiences),
            default_lifetime=default_lifetime,
            max_lifetime=max_lifetime,
            algorithm=settings.algorithm,
            identity=settings.identity,
            internal=settings.internal,
        )
        if provider.identity and not provider.audiences:
            raise section.error("identity", "an identity provider needs an audiences allowlist: "
                                "its tokens identify their subject on this broker")
        if provider.internal and (provider.identity or not provider.audiences):
            raise section.error("internal", "an internal provider needs an audiences allowlist "
                                "and cannot be an identity provider")
        return provider

    @property
    def kind(self) -> str:
        """``identity``, ``internal`` or ``""``: the kinds that own their audiences."""
        return "identity" if self.identity else "internal" if self.internal else ""


@attrs.frozen
class ProviderSettings:
    """``[plugins.jwt.providers.NAME]``: one credential provider."""

    issuers: tuple[str, ...] = setting("The issuers its tokens may name; the first is the "
                                       "default", (), default_text="[issuer]")
    audiences: tuple[str, ...] = setting("The audiences allowed (empty: any not reserved)", ())
    max_lifetime_seconds: int = setting("The longest lifetime a token may ask for", 86400,
                                        min=60, max=366 * 86400)
    default_lifetime_seconds: int | None = setting(
        "The lifetime of a token that asks for none", None, min=60, max=366 * 86400,
        default_text="3600, or max_lifetime_seconds when smaller")
    algorithm: str = setting("The signature algorithm", "ES256", choices=ALGORITHMS)
    identity: bool = setting("Its tokens identify their subject on this broker's API (needs "
                             "an audiences allowlist)", False)
    internal: bool = setting("Its tokens are signed only for the broker to present itself "
                             "(aws-sts web identity): the token APIs never issue them (needs "
                             "an audiences allowlist)", False)


@attrs.frozen
class KeyRotationSettings:
    """``[plugins.jwt.key_rotation.ALG]``: the schedule of one algorithm's signing keys (Vault's
    ``rotation_period`` and ``verification_ttl`` of a named key)."""

    rotation_period_seconds: int = setting(
        "How long a key signs before the next takes over (0: only `credenza jwt keys rotate` "
        "rotates)", 0, min=0, max=10 * 366 * 86400)
    verification_ttl_seconds: int | None = setting(
        "How long a replaced key stays in the JWKS, verifying what it signed (at least the "
        "longest token lifetime plus clock skew)", None, min=0, max=10 * 366 * 86400,
        default_text="the longest token lifetime plus clock skew")


@attrs.frozen
class JwtSettings:
    """``[plugins.jwt]``."""

    issuer: str = setting("This broker's issuer URL (access tokens; providers' default)",
                          "urn:credenza:broker")
    key_dir: Path | None = setting("Where signing keys are kept; replicas share it", None,
                                   default_text="DATA_DIR/jwt-keys")
    short_token_key: str | None = setting("The HMAC key of derived short tokens; replicas "
                                          "share it", None, secret=True,
                                          default_text="a key file in the data directory")
    api_audiences: tuple[str, ...] = setting(
        "Audiences of the access tokens /oauth2/token issues, accepted as bearer identity",
        ("urn:cloud:idaas:pam",))
    access_token_lifetime_seconds: int = setting("Lifetime of access tokens", 3600, min=60,
                                                 max=86400)
    reserved_audience_prefixes: tuple[str, ...] = setting(
        "Audiences providers may never issue for", ("urn:cloud:idaas",))
    clock_skew_seconds: int = setting("Leeway when checking exp and nbf", 30, min=0, max=300)
    trusted_issuers: Mapping[str, str] = setting(
        "External OIDC issuers whose tokens may be exchanged (RFC 8693): issuer URL -> JWKS "
        "URL", {})
    providers: Mapping[str, ProviderSettings] = setting("Credential providers by name", {})
    key_rotation: Mapping[str, KeyRotationSettings] = setting(
        "Scheduled rotation of the signing keys, by algorithm (ES256, RS256, EdDSA)", {})


class JwtIssuer:
    """Signs and verifies this broker's JWTs; derives and checks short tokens."""

    settings = JwtSettings

    def __init__(self, section: Section) -> None:
        settings = read(JwtSettings, section)
        self.issuer = settings.issuer
        key_dir = settings.key_dir or section.data_dir / "jwt-keys"
        configured = settings.short_token_key
        self._short_key_file = section.data_dir / "short-token.key"
        self._short_key: bytes | None = configured.encode() if configured else None
        self.api_audiences = frozenset(settings.api_audiences)
        self.access_lifetime = settings.access_token_lifetime_seconds
        self.reserved = settings.reserved_audience_prefixes
        self.leeway = settings.clock_skew_seconds
        self.trusted = {issuer: jwt.PyJWKClient(url, cache_keys=True, lifespan=600, timeout=5)
                        for issuer, url in settings.trusted_issuers.items()}
        providers = section.get_table("providers")  # names the errors below
        self.providers = {
            name: Provider.from_settings(name, provider, self.issuer, providers.get_table(name))
            for name, provider in settings.providers.items()
        }
        # audience -> the identity provider it belongs to
        self.identity_audiences = {audience: name for name, provider in self.providers.items()
                                   if provider.identity for audience in provider.audiences}
        # audience -> the identity or internal provider it belongs to: no other issues for it
        self.owned_audiences = {audience: name for name, provider in self.providers.items()
                                if provider.kind for audience in provider.audiences}
        for name, provider in self.providers.items():
            for audience in provider.audiences:
                if self._reserved(audience):
                    raise providers.error(name, f"audience {audience!r} uses a reserved prefix")
                if audience in self.api_audiences:
                    raise providers.error(name, f"audience {audience!r} is one of api_audiences, "
                                                "which only access tokens have")
                owner = self.owned_audiences.get(audience, name)
                if owner != name:
                    raise providers.error(name, f"audience {audience!r} belongs to "
                                                f"{self.providers[owner].kind} provider "
                                                f"{owner!r}")
        self.keyring = Keyring(key_dir, {p.algorithm for p in self.providers.values()}
                               | {"ES256"} | set(settings.key_rotation))
        self.rotation = self._schedules(section, settings.key_rotation)
        self.verified = VerifiedTokens()

    def _schedules(self, section: Section, rotation: Mapping[str, KeyRotationSettings]
                   ) -> dict[str, tuple[int, float]]:
        """algorithm -> (rotation period, verification time) of the scheduled ones."""
        tables = section.get_table("key_rotation")
        schedules = {}
        for alg, schedule in rotation.items():
            if alg not in ALGORITHMS:
                raise tables.error(alg, f"unknown algorithm (known: {', '.join(ALGORITHMS)})")
            needed = self.verification_seconds()
            verification = schedule.verification_ttl_seconds
            if verification is not None and verification < needed - Keyring.RELOAD_CHECK_SECONDS:
                raise tables.get_table(alg).error(
                    "verification_ttl_seconds", f"{verification} s would drop keys while tokens "
                    f"they signed live: at least {needed - Keyring.RELOAD_CHECK_SECONDS:.0f} "
                    "(the longest token lifetime plus clock skew)")
            if schedule.rotation_period_seconds:
                schedules[alg] = (schedule.rotation_period_seconds,
                                  max(needed, (verification or 0) + Keyring.RELOAD_CHECK_SECONDS))
        return schedules

    def verification_seconds(self) -> float:
        """How long a replaced key must stay published: the longest token lifetime, the clock
        skew allowed, and the time other processes may go on signing with it before they
        notice the rotation."""
        return self.max_lifetime() + self.leeway + Keyring.RELOAD_CHECK_SECONDS

    def _reserved(self, audience: str) -> bool:
        return any(audience.startswith(prefix) for prefix in self.reserved)

    # -- signing ------------------------------------------------------------------------------

    def _follow_schedules(self) -> None:
        for alg, (period, verification) in self.rotation.items():
            self.keyring.follow_schedule(alg, period, verification)

    def _sign(self, claims: Mapping[str, Any], alg: str) -> str:
        if alg in self.rotation:
            self.keyring.follow_schedule(alg, *self.rotation[alg])
        return self.keyring.active(alg).sign(claims)

    @property
    def short_key(self) -> bytes:
        if self._short_key is None:
            self._short_key = key_file(self._short_key_file)
        return self._short_key

    def short_token(self, token_id: str) -> str:
        """The derived short token of ``token_id``: it names the token and proves it, like the
        JWT, and is never stored."""
        mac = hmac.new(self.short_key, token_id.encode(), hashlib.sha256).digest()[:20]
        return f"{SHORT_TOKEN_PREFIX}{token_id}.{b64url(mac)}"

    def _spec_claims(self, principal: Principal, spec: TokenSpec,
                     provider: Provider) -> tuple[dict[str, Any], dt.datetime, dt.datetime]:
        if provider.identity and spec.subject != principal.name:
            raise Forbidden(f"{provider.identifier!r} is an identity provider: its tokens are "
                            "only issued to their subject")
        for audience in spec.audiences:
            if self._reserved(audience):
                raise BadRequest(f"audience {audience!r} uses a reserved prefix")
            if audience in self.api_audiences:
                raise BadRequest(f"audience {audience!r} is reserved for this broker's access "
                                 "tokens")
            owner = self.owned_audiences.get(audience, provider.identifier)
            if owner != provider.identifier:
                raise BadRequest(f"audience {audience!r} belongs to "
                                 f"{self.providers[owner].kind} provider {owner!r}")
            if provider.audiences and audience not in provider.audiences:
                raise BadRequest(f"audience {audience!r} is not allowed for provider "
                                 f"{provider.identifier!r}")
        if not spec.audiences:
            raise BadRequest("at least one audience is required")
        issuer = spec.issuer or provider.issuers[0]
        if issuer not in provider.issuers:
            raise BadRequest(f"issuer {issuer!r} is not allowed for provider "
                             f"{provider.identifier!r}")
        lifetime = int(spec.lifetime.total_seconds()) if spec.lifetime else \
            provider.default_lifetime
        if not 1 <= lifetime <= provider.max_lifetime:
            raise BadRequest(f"expiration must be from 1 to {provider.max_lifetime} seconds "
                             f"for provider {provider.identifier!r}, got {lifetime}")
        clashing = sorted(REGISTERED_CLAIMS & set(spec.custom_claims))
        if clashing:
            raise BadRequest(f"custom claims cannot set registered claims: {', '.join(clashing)}")
        issued = utcnow().replace(microsecond=0)
        expires = issued + dt.timedelta(seconds=lifetime)
        claims = {
            **spec.custom_claims,
            "iss": issuer, "sub": spec.subject, "aud": _audience_claim(spec.audiences),
            "iat": int(issued.timestamp()), "nbf": int(issued.timestamp()),
            "exp": int(expires.timestamp()),
        }
        return claims, issued, expires

    @hookimpl
    def credenza_issue_token(self, principal: Principal, spec: TokenSpec) -> IssuedToken | None:
        if spec.provider == ACCESS_TOKEN_PROVIDER:
            return self._access_token(principal, spec)
        provider = self.providers.get(spec.provider)
        if provider is None:
            return None
        if provider.internal != spec.internal:
            raise Forbidden(f"provider {provider.identifier!r} signs tokens only for the broker "
                            "itself" if provider.internal else
                            f"provider {provider.identifier!r} is not internal = true")
        claims, issued, expires = self._spec_claims(principal, spec, provider)
        token_id = new_token_id("at")
        claims["jti"] = token_id
        record = TokenRecord(
            token_id=token_id, token_type="jwt", provider=provider.identifier,
            consumer_type=spec.consumer_type, consumer_id=spec.consumer_id or principal.name,
            creator_type=principal.kind, creator_id=principal.name,
            issued_at=issued, expires_at=expires, claims=claims,
        )
        return IssuedToken(record, self._sign(claims, provider.algorithm),
                           self.short_token(token_id) if spec.include_short_token else None)

    def _access_token(self, principal: Principal, spec: TokenSpec) -> IssuedToken:
        unknown = sorted(spec.audiences - self.api_audiences)
        if unknown or not spec.audiences:
            asked = f"scope names {unknown[0]!r}" if unknown else "scope is required"
            raise InvalidScope(f"{asked}: this broker issues access tokens for "
                               f"{', '.join(sorted(self.api_audiences))}")
        issued = utcnow().replace(microsecond=0)
        expires = issued + dt.timedelta(seconds=self.access_lifetime)
        token_id = new_token_id("ac")
        extra = {k: v for k, v in spec.custom_claims.items() if k not in REGISTERED_CLAIMS}
        claims = {**extra, "iss": self.issuer, "sub": spec.subject,
                  "aud": _audience_claim(spec.audiences), "iat": int(issued.timestamp()),
                  "nbf": int(issued.timestamp()), "exp": int(expires.timestamp()),
                  "jti": token_id, TOKEN_USE_CLAIM: "access",
                  "scope": str(spec.custom_claims.get("scope", "")),
                  "client_kind": principal.kind}
        record = TokenRecord(
            token_id=token_id, token_type="oauth_access_token", provider=ACCESS_TOKEN_PROVIDER,
            consumer_type="application", consumer_id=spec.consumer_id or principal.name,
            creator_type=principal.kind, creator_id=principal.name,
            issued_at=issued, expires_at=expires, claims=claims,
        )
        return IssuedToken(record, self._sign(claims, "ES256"))

    @hookimpl
    def credenza_resign_token(self, record: TokenRecord) -> IssuedToken | None:
        if record.token_type != "jwt" or record.provider not in self.providers:
            return None
        value = self._sign(record.claims, self.providers[record.provider].algorithm)
        return IssuedToken(record, value, self.short_token(record.token_id))

    # -- verifying ----------------------------------------------------------------------------

    @hookimpl
    def credenza_verify_token(self, token: str) -> Mapping[str, Any] | None:
        if token.startswith(SHORT_TOKEN_PREFIX):
            token_id = token[len(SHORT_TOKEN_PREFIX):].rpartition(".")[0]
            if token_id and hmac.compare_digest(self.short_token(token_id), token):
                return {"jti": token_id, "derived_short_token": True}
            raise Unauthenticated("invalid derived short token")
        if token.count(".") != 2:
            return None  # not a JWT: another plugin's token, perhaps
        issuer = self._unverified_issuer(token)
        if issuer in self.trusted:
            return self.verify_external(token, issuer)
        return self.verify(token)

    @staticmethod
    def _unverified_issuer(token: str) -> str | None:
        """The ``iss`` a JWT claims, unchecked: it only chooses the keys that verify the token.
        (PyJWT's unverified decode checks the base64 alphabet byte by byte in Python: a tenth
        of a validate request, for a value that the verification checks anyway.)"""
        payload = token.split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, RecursionError):  # not base64 (binascii.Error), UTF-8 or JSON
            return None
        issuer = claims.get("iss") if isinstance(claims, dict) else None
        return issuer if isinstance(issuer, str) else None

    def verify_external(self, token: str, issuer: str) -> dict[str, Any]:
        """Claims of a token from a trusted external issuer, checked against its JWKS."""
        check_size(token)
        try:
            key = self.trusted[issuer].get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise Unavailable(f"cannot fetch the keys of trusted issuer {issuer}") from None
        except jwt.PyJWTError:
            raise Unauthenticated("token signed with a key its issuer does not publish") from None
        if key.algorithm_name not in ALGORITHMS:
            raise Unauthenticated(f"algorithm {key.algorithm_name} is not accepted")
        claims = checked_claims(token, key.key, key.algorithm_name, issuer=issuer,
                                audiences=sorted({self.issuer, *self.api_audiences}),
                                leeway=self.leeway, require=("exp", "iss", "sub"))
        return {**claims, EXTERNAL_CLAIM: True}

    def verify(self, token: str, audiences: Iterable[str] | None = None) -> dict[str, Any]:
        """The claims of a JWT this broker signed, checked in full.

        :raises Unauthenticated: saying what is wrong (nothing about the key material).
        """
        check_size(token)
        audiences = None if audiences is None else sorted(audiences)
        checks = "any audience" if audiences is None else "aud\0" + "\0".join(audiences)
        known = self.verified.get(token, checks, self.leeway)
        if known is not None and self.keyring.by_kid(known.kid) is not None:
            return dict(known.claims)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        kid = str(header.get("kid", ""))
        key = self.keyring.by_kid(kid)
        if key is None:
            raise Unauthenticated("token signed with an unknown key")
        claims = checked_claims(token, key.private.public_key(), key.alg, audiences=audiences,
                                leeway=self.leeway, require=("exp", "iat", "iss", "sub", "jti"))
        allowed_issuers = {self.issuer} | {i for p in self.providers.values() for i in p.issuers}
        if claims.get("iss") not in allowed_issuers:
            raise Unauthenticated("token has an unknown issuer")
        self.verified.put(token, checks, kid, claims)
        return dict(claims)

    @hookimpl
    def credenza_identify(self, request: IdentityRequest) -> Principal | None:
        """Bearer access tokens from ``/oauth2/token`` identify their client; tokens of an
        identity provider identify their subject (the broker refuses revoked ones of both)."""
        if request.bearer is None or request.bearer.count(".") != 2:
            return None
        claims = self.verify(request.bearer)
        audiences = claim_audiences(claims)
        if not audiences & (self.api_audiences | self.identity_audiences.keys()):
            raise Unauthenticated("this token identifies nobody here: its audience is neither "
                                  "this broker's API nor an identity provider's client")
        if not audiences & self.api_audiences:
            # Only the identity provider issues for its audiences (checked at issue and start).
            return Principal(claims["sub"], source=NAME, kind="user", token_id=claims["jti"])
        if claims.get(TOKEN_USE_CLAIM) != "access":
            raise Unauthenticated("this token is not an access token for this broker")
        kind = claims.get("client_kind", "client")
        return Principal(claims["sub"], source=NAME,
                         kind=kind if kind in PRINCIPAL_KINDS else "client",
                         attributes={"scope": claims.get("scope", "")}, token_id=claims["jti"])

    @hookimpl
    def credenza_issuer(self) -> str:
        return self.issuer

    @hookimpl
    def credenza_jwks(self) -> list[dict[str, Any]]:
        self._follow_schedules()  # clients poll the JWKS: the next key appears in time
        return [key.jwk() for key in self.keyring.published()]

    @hookimpl
    def credenza_metrics(self) -> None:
        self._follow_schedules()
        keys = self.keyring.published()
        now = time.time()
        for alg in {key.alg for key in keys}:
            for state in ("next", "active", "retiring"):
                metrics.SIGNING_KEYS.labels(alg, state).set(
                    sum(1 for key in keys if (key.alg, key.state) == (alg, state)))
            active = [key for key in keys if (key.alg, key.state) == (alg, "active")]
            if active:
                metrics.SIGNING_KEY_AGE.labels(alg).set(now - active[0].created_at)

    # -- key management -------------------------------------------------------------------------

    def max_lifetime(self) -> int:
        """The longest any token signed now can live: retiring keys stay published that long."""
        return max([self.access_lifetime, *(p.max_lifetime for p in self.providers.values())])

    @hookimpl
    def credenza_commands(self, cli: click.Group) -> None:
        @cli.group(name="jwt")
        def jwt_group() -> None:
            """JWT signing keys."""

        @jwt_group.command(name="keys")
        @click.argument("action", type=click.Choice(["list", "prepare", "rotate"]))
        @click.option("--algorithm", type=click.Choice(ALGORITHMS), default="ES256",
                      show_default=True)
        def keys(action: str, algorithm: str) -> None:
            """list the keys; prepare a next key (published, not signing); rotate (the next
            key signs, the active one retires once its tokens have expired)."""
            if action == "prepare":
                self.keyring.prepare(algorithm)
            elif action == "rotate":
                self.keyring.rotate(algorithm, time.time() + self.verification_seconds())
            for key in self.keyring.published():
                until = ""
                if key.retire_after:
                    moment = dt.datetime.fromtimestamp(key.retire_after, dt.UTC)
                    until = f" until {moment:%Y-%m-%dT%H:%M:%SZ}"
                click.echo(f"{key.kid}  {key.alg:<6} {key.state}{until}")
