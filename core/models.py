"""The values that pass between hooks: small frozen attrs classes.

Every secret field has ``repr=False`` so that it never reaches a log line or a traceback. Datetimes
are timezone-aware UTC; mappings are read-only views so that a frozen object stays frozen.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import re
import types
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import attrs

from credenza import requestctx
from credenza.names import valid_role_name
from credenza.requestctx import RequestOrigin

UTC = dt.UTC


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (the only clock the models use)."""
    return dt.datetime.now(UTC)


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value or {}))


def _frozen_set(value: Iterable[str] | None) -> frozenset[str]:
    if isinstance(value, str):  # a lone string would become a set of its characters
        return frozenset([value])
    return frozenset(value or ())


def _aware_utc(_instance: object, attribute: attrs.Attribute, value: dt.datetime | None) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() != dt.timedelta(0)):
        raise ValueError(f"{attribute.name} must be a timezone-aware UTC datetime, got {value!r}")


# What no name or identifier may hold (a regular expression character class): control
# characters, zero-width and bidirectional formatting (which would disguise a log line), the
# Unicode line separators, and lone surrogates. The HTTP boundary declares the same rule.
UNPRINTABLE = r"\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff\ud800-\udfff"
_UNPRINTABLE = re.compile(f"[{UNPRINTABLE}]")


def printable(text: str) -> bool:
    """Whether ``text`` is a non-empty string with none of the :data:`UNPRINTABLE`."""
    return bool(text) and _UNPRINTABLE.search(text) is None


def _printable(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not isinstance(value, str) or not printable(value):
        raise ValueError(f"{attribute.name} must be a non-empty printable string, got {value!r}")


_KIND = re.compile(r"^[a-z][a-z0-9-]{0,31}$")


def _kind(_instance: object, attribute: attrs.Attribute, value: str) -> None:
    if not _KIND.match(value):
        raise ValueError(f"{attribute.name} must match {_KIND.pattern}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Identity
# --------------------------------------------------------------------------------------------


@attrs.frozen
class BasicCredentials:
    """A user name and password presented with HTTP Basic authentication."""

    username: str
    password: str = attrs.field(repr=False)


@attrs.frozen
class IdentityRequest:
    """What a caller presented, independent of the front end (WSGI, CLI, an embedding app).

    Identity plugins read the field they understand and leave the others alone.
    """

    environ: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, repr=False, eq=False
    )
    remote_addr: str | None = None
    basic: BasicCredentials | None = None
    bearer: str | None = attrs.field(default=None, repr=False)
    api_key: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any]) -> IdentityRequest:
        """Parse the credentials a WSGI request carries (Authorization and X-API-Key headers).

        A malformed Authorization header is kept as "nothing presented" for the scheme it names;
        identity plugins then answer 401, which is what the caller needs to hear.
        """
        basic = bearer = None
        api_key = environ.get("HTTP_X_API_KEY") or None
        authorization = environ.get("HTTP_AUTHORIZATION", "").strip()
        scheme, _, param = authorization.partition(" ")
        if scheme.lower() == "basic":
            basic = _parse_basic(param.strip())
        elif scheme.lower() == "bearer":
            bearer = param.strip() or None
        elif authorization and " " not in authorization and api_key is None:
            # A bare token, as AWS SDKs send AWS_CONTAINER_AUTHORIZATION_TOKEN: a JWT (a
            # workload's OIDC token, a token of this broker) is a bearer token, else an API key.
            if authorization.startswith("eyJ") and authorization.count(".") == 2:
                bearer = authorization
            else:
                api_key = authorization
        return cls(
            environ=environ,
            remote_addr=environ.get("REMOTE_ADDR"),
            basic=basic,
            bearer=bearer,
            api_key=api_key,
        )


    def each_credential(self) -> list[IdentityRequest]:
        """One request per credential presented (API key, HTTP Basic, bearer token, in that
        order), each with the environ; the request itself when it presents one or none."""
        if (self.api_key is not None) + (self.basic is not None) + (self.bearer is not None) < 2:
            return [self]  # the usual case: nothing to split (and no copies to make)
        parts = [attrs.evolve(self, basic=None, bearer=None) if self.api_key else None,
                 attrs.evolve(self, api_key=None, bearer=None) if self.basic else None,
                 attrs.evolve(self, api_key=None, basic=None) if self.bearer else None]
        present = [part for part in parts if part is not None]
        return present if len(present) > 1 else [self]

    @property
    def credential(self) -> str:
        """What the first credential presented is, as sign-in events name it (one of
        :data:`SIGN_IN_CREDENTIALS`): ``front-end`` when none is, the caller being named by
        the front end (``REMOTE_USER``) or its address."""
        if self.api_key:
            return "api-key"
        if self.basic:
            return "password"
        if self.bearer:
            return "bearer"
        return "front-end"

    @property
    def presented(self) -> str | None:
        """What kind of credential this request presents (the first, when several)."""
        if self.api_key:
            return "an API key"
        if self.basic:
            return "HTTP Basic credentials"
        return "a bearer token" if self.bearer else None


def _parse_basic(param: str) -> BasicCredentials | None:
    try:
        decoded = base64.b64decode(param, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return BasicCredentials(username, password) if sep and username else None


PRINCIPAL_KINDS = frozenset({"user", "machine", "client", "service"})


@attrs.frozen
class Principal:
    """Who is calling: the answer of the identity sources, enriched with groups by the broker.

    ``token_id`` is set when a token this broker issued and recorded identified the caller (an
    access token, an identity provider's JWT, an API key): the broker refuses the caller as soon
    as that token, or the API token it was exchanged for, is revoked.
    """

    name: str = attrs.field(validator=_printable)
    source: str = attrs.field(validator=_printable)
    kind: str = attrs.field(default="user", validator=attrs.validators.in_(PRINCIPAL_KINDS))
    groups: frozenset[str] = attrs.field(factory=frozenset, converter=_frozen_set)
    attributes: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    token_id: str | None = None

    def with_groups(self, groups: Iterable[str]) -> Principal:
        """A copy with ``groups`` added to the groups it already has."""
        return attrs.evolve(self, groups=self.groups | _frozen_set(groups))


# --------------------------------------------------------------------------------------------
# What a principal may obtain
# --------------------------------------------------------------------------------------------

WILDCARD = "*"


class GrantKind(enum.StrEnum):
    """The kinds of grant the broker checks; the value is ``Grant.kind``.

    A plugin may use kinds of its own (``Grant.kind`` is any lower-case word) for routes it
    adds; these are the ones credenza itself asks for.
    """

    #: target: an account name; role: the IAM role (``*``: any). Credentials and console URLs.
    AWS = "aws"
    #: target: a credential provider; audiences: the allowed ones (none: any). Its JWTs.
    TOKEN = "token"  # noqa: S105 - a kind of grant
    #: target: a managed upstream credential's identifier (oauth-upstream). Its value.
    API_KEY = "api-key"
    #: target: an upstream OAuth provider (oauth-upstream). Its access tokens.
    OAUTH = "oauth"
    #: target: an issuer URL. RFC 8693: exchange that issuer's tokens for access tokens.
    EXCHANGE = "exchange"
    #: target: a credential provider. List, revoke and reinstate anyone's tokens of it.
    ADMIN = "admin"


@attrs.frozen
class Grant:
    """One thing a principal may obtain.

    ``kind`` says what sort of thing (one of :class:`GrantKind` for what credenza checks);
    ``target`` names it (account name, provider identifier, key identifier, issuer); ``role`` is
    the AWS role for ``aws`` grants; ``audiences`` limits a ``token`` grant. ``*`` as target or
    role matches anything. ``via`` explains where the grant came from (a group, a file) and is not
    part of its identity.
    """

    # a plain str even when given a GrantKind (whose hash is not its value's)
    kind: str = attrs.field(converter=str, validator=_kind)
    target: str = attrs.field(validator=_printable)
    role: str | None = attrs.field(default=None)
    audiences: frozenset[str] = attrs.field(factory=frozenset, converter=_frozen_set)
    via: str = attrs.field(default="", eq=False)

    @role.validator
    def _role_for_aws(self, attribute: attrs.Attribute, value: str | None) -> None:
        if self.kind == GrantKind.AWS and not value:
            raise ValueError("an aws grant needs a role")
        if value is not None:
            _printable(self, attribute, value)

    @classmethod
    def aws(cls, account: str, role: str, via: str = "") -> Grant:
        """The right to credentials for ``role`` in ``account``."""
        return cls(GrantKind.AWS, account, role=role, via=via)

    def permits(self, kind: str, target: str, role: str | None = None,
                audiences: frozenset[str] = frozenset()) -> bool:
        """Whether this grant covers ``kind``/``target``/``role`` and every one of
        ``audiences`` (a grant without audiences allows any)."""
        return (
            self.kind == kind
            and self.target in (target, WILDCARD)
            and (role is None or self.role in (role, WILDCARD))
            and (not self.audiences or audiences <= self.audiences)
        )


PARTITIONS = frozenset({"aws", "aws-us-gov", "aws-cn"})
# ASCII only: look-alike letters, path separators and dot segments never name anything. Clients
# check names too, before they put them into a URL path.


_ACCOUNT_ID = re.compile(r"^\d{12}$")
_ROLE_PATH = re.compile(r"^/([\x21-\x7e]+/)*$")


@attrs.frozen
class Account:
    """An AWS account in the catalogue: a name people use and what STS needs."""

    name: str = attrs.field(validator=_printable)
    id: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.matches_re(_ACCOUNT_ID)),
    )
    partition: str = attrs.field(default="aws", validator=attrs.validators.in_(PARTITIONS))
    region: str | None = None
    default_duration: int = attrs.field(
        default=3600, validator=[attrs.validators.ge(900), attrs.validators.le(43200)]
    )
    max_duration: int = attrs.field(
        default=3600, validator=[attrs.validators.ge(900), attrs.validators.le(43200)]
    )
    role_path: str = attrs.field(default="/", validator=attrs.validators.matches_re(_ROLE_PATH))
    #: the roles it has, listed for a wildcard grant (``ACCOUNT/*``) in ``/account``
    roles: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    # The ExternalId the role's trust policy demands; not a secret, but not for display either.
    external_id: str | None = attrs.field(default=None, repr=False)

    @roles.validator
    def _role_names(self, _attribute: attrs.Attribute, value: tuple[str, ...]) -> None:
        for role in value:
            if not isinstance(role, str) or not valid_role_name(role):
                raise ValueError(f"roles: {role!r} is not an IAM role name")

    @max_duration.validator
    def _max_not_below_default(self, _attribute: attrs.Attribute, value: int) -> None:
        if value < self.default_duration:
            raise ValueError(
                f"max_duration ({value}) is below default_duration ({self.default_duration})"
            )


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


@attrs.frozen
class AwsOptions:
    """What the caller asked for beyond account and role."""

    duration: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.ge(900), attrs.validators.le(43200)]
        ),
    )
    # The least validity the caller needs; IMDS clients want 30 minutes
    # (docs/protocols/aws-clients.md).
    min_remaining: dt.timedelta = dt.timedelta(minutes=5)
    callback_url: str | None = None


AWS_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def aws_timestamp(moment: dt.datetime) -> str:
    """The timestamp format of AWS metadata, credential_process and afp-core."""
    return moment.astimezone(dt.UTC).strftime(AWS_TIMESTAMP_FORMAT)


def parse_aws_timestamp(text: str) -> dt.datetime:
    """The moment an :func:`aws_timestamp` names. :raises ValueError: for anything else."""
    return dt.datetime.strptime(text, AWS_TIMESTAMP_FORMAT).replace(tzinfo=dt.UTC)


@attrs.frozen
class AwsCredentials:
    """Temporary AWS credentials."""

    access_key_id: str = attrs.field(validator=_printable)
    secret_access_key: str = attrs.field(repr=False)
    session_token: str = attrs.field(repr=False)
    expiration: dt.datetime = attrs.field(validator=_aware_utc)
    account_id: str | None = None
    issued_at: dt.datetime = attrs.field(factory=utcnow, validator=_aware_utc)
    # Console sessions may outlast AssumeRole credentials, not GetFederationToken ones.
    from_assume_role: bool = True

    def remaining(self, now: dt.datetime | None = None) -> dt.timedelta:
        """How long the credentials stay valid."""
        return self.expiration - (now or utcnow())


@attrs.frozen
class TokenSpec:
    """A request for a token from a credential provider."""

    provider: str = attrs.field(validator=_printable)
    subject: str = attrs.field(validator=_printable)
    audiences: frozenset[str] = attrs.field(factory=frozenset, converter=_frozen_set)
    lifetime: dt.timedelta | None = None
    issuer: str | None = None
    custom_claims: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, hash=False
    )
    consumer_type: str = "custom"
    consumer_id: str | None = None
    include_short_token: bool = False
    #: for a provider whose tokens only the broker presents (``internal``), never set from a
    #: request: such a provider refuses every spec without it
    internal: bool = False


@attrs.frozen
class TokenRecord:
    """What the token store keeps of an issued token: metadata and claims, never the secret."""

    token_id: str = attrs.field(validator=_printable)
    # "jwt", "oauth_access_token", ...: the names the IDaaS API uses
    token_type: str = attrs.field(validator=attrs.validators.matches_re(r"^[a-z][a-z0-9_]{0,31}$"))
    provider: str = attrs.field(validator=_printable)
    consumer_type: str
    consumer_id: str
    creator_type: str
    creator_id: str
    issued_at: dt.datetime = attrs.field(validator=_aware_utc)
    expires_at: dt.datetime = attrs.field(validator=_aware_utc)
    claims: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping, hash=False)
    revoked: bool = False
    updated_at: dt.datetime | None = attrs.field(default=None, validator=_aware_utc)

    def expired(self, now: dt.datetime | None = None) -> bool:
        """Whether the token is past its expiry."""
        return self.expires_at <= (now or utcnow())

    def spec(self) -> TokenSpec:
        """A request for a new token like this signed one: the same provider, subject,
        audiences, issuer, custom claims and consumer."""
        return TokenSpec(self.provider, str(self.claims["sub"]), claim_audiences(self.claims),
                         issuer=str(self.claims["iss"]),
                         custom_claims={key: value for key, value in self.claims.items()
                                        if key not in REGISTERED_CLAIMS},
                         consumer_type=self.consumer_type, consumer_id=self.consumer_id)


@attrs.frozen
class IssuedToken:
    """A freshly issued token: its secret value(s), shown once, and the record the store keeps."""

    record: TokenRecord
    value: str = attrs.field(repr=False)
    short_token: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class UpstreamToken:
    """An access token fetched from an upstream OAuth provider for callers of this broker."""

    value: str = attrs.field(repr=False)
    token_type: str
    scope: str
    expires_at: dt.datetime = attrs.field(validator=_aware_utc)


@attrs.frozen
class Page:
    """One page of a keyset listing: ``after`` is the position the next page starts after
    (absent on the last page); front ends wrap it in page tokens of their API's form."""

    items: tuple[Any, ...] = attrs.field(converter=tuple)
    after: str | None = None
    total_count: int | None = None


# The JWT claims RFC 7519 registers: set by the issuer, never by a caller's custom claims.
REGISTERED_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


def claim_audiences(claims: Mapping[str, Any]) -> frozenset[str]:
    """The ``aud`` claim as a set, whether it is one string or a list."""
    aud = claims.get("aud") or ()
    return frozenset([aud] if isinstance(aud, str) else aud)

# Claims this broker sets on its own tokens, each with one meaning; a caller's custom claims may
# not set them (a token must not pass for another kind). These are claim names, not secrets.
#: set by credenza_verify_token on the claims of a trusted external issuer's token
EXTERNAL_CLAIM = "external"
#: "access": an access token for this broker's own API
TOKEN_USE_CLAIM = "token_use"  # noqa: S105
#: the grant family of OAuth access and refresh tokens
FAMILY_CLAIM = "family"
#: the API token a JWT was exchanged for
API_TOKEN_CLAIM = "api_token_id"  # noqa: S105
#: how the caller of the ICA API authenticated when the token was made
ORIGIN_CLAIM = "origin"
RESERVED_CLAIMS = frozenset({EXTERNAL_CLAIM, TOKEN_USE_CLAIM, FAMILY_CLAIM, API_TOKEN_CLAIM,
                             ORIGIN_CLAIM, "client_kind", "act", "subject_issuer", "scope"})

# Derived short tokens (IDaaS): "st_<token id>.<mac>", a secret standing for its JWT.
SHORT_TOKEN_PREFIX = "st_"  # noqa: S105 - a prefix, not a secret

# The provider name under which OAuth access tokens for this broker's own API are recorded.
ACCESS_TOKEN_PROVIDER = "credenza-access"  # noqa: S105 - a provider name


@attrs.frozen
class TokenQuery:
    """Which tokens a listing wants: one consumer's tokens of one provider (None: of every
    provider), optionally only the revoked (or unrevoked) and expired (or unexpired) ones."""

    consumer_id: str = attrs.field(validator=_printable)
    provider: str | None = attrs.field(default=None,
                                       validator=attrs.validators.optional(_printable))
    revoked: bool | None = None
    expired: bool | None = None


@runtime_checkable
class TokenStore(Protocol):
    """Where issued tokens are remembered: metadata and claims, never a secret (only hashes)."""

    def add(self, record: TokenRecord, secret_hashes: Iterable[bytes] = ()) -> None:
        """Store a new record, findable by each of ``secret_hashes``."""

    def get(self, token_id: str) -> TokenRecord | None:
        """The record with ``token_id``, or None."""

    def find(self, secret_hash: bytes) -> TokenRecord | None:
        """The record one of whose secrets hashes to ``secret_hash``, or None."""

    def list(self, query: TokenQuery, max_results: int, after: str | None,
             now: dt.datetime) -> tuple[list[TokenRecord], bool, int]:
        """Records matching ``query`` in token id order after ``after``: (page, more, total)."""

    def token_ids(self, consumer_id: str, provider: str) -> list[str]:
        """Every token id of one consumer for one provider."""

    def set_revoked(self, token_ids: Iterable[str], revoked: bool, at: dt.datetime) -> int:
        """Mark tokens revoked or not; returns how many changed."""

    def purge(self, expired_before: dt.datetime) -> int:
        """Delete records that expired before ``expired_before``; returns how many."""

    def ping(self) -> None:
        """Raise :class:`credenza.errors.Unavailable` when the store cannot be reached."""

    def close(self) -> None:
        """Release connections."""


@runtime_checkable
class SharedCache(Protocol):
    """Sealed values shared by every process using one store, each with a lease so that one
    process at a time fetches it (see :mod:`credenza.sharedcache`). A token store may implement
    it too; the ``sql`` plugin's does. Every method raises
    :class:`credenza.errors.Unavailable` when the store cannot be reached."""

    def cache_get(self, key: bytes) -> bytes | None:
        """The sealed value stored under ``key`` (32 bytes), or None."""

    def cache_lease(self, key: bytes, holder: str, until: dt.datetime,
                    now: dt.datetime) -> bool:
        """Take the lease on ``key`` for ``holder`` until ``until``, unless another holder's
        lease is still running at ``now``; True when ``holder`` has it. Atomic across
        processes."""

    def cache_put(self, key: bytes, value: bytes, expires_at: dt.datetime, holder: str) -> None:
        """Store ``value`` under ``key`` until ``expires_at``, and end ``holder``'s lease."""

    def cache_release(self, key: bytes, holder: str) -> None:
        """End ``holder``'s lease on ``key`` without storing anything."""


# --------------------------------------------------------------------------------------------
# Health and observer events
# --------------------------------------------------------------------------------------------


@attrs.frozen
class Health:
    """The state of one dependency a plugin relies on (a store, STS, a directory)."""

    component: str = attrs.field(validator=_printable)
    ok: bool
    detail: str = "OK"


@attrs.frozen
class IssuedEvent:
    """A credential was handed out. Carries identifiers, never the credential itself."""

    principal: Principal
    kind: str
    target: str
    role: str | None = None
    token_id: str | None = None
    expires_at: dt.datetime | None = None
    at: dt.datetime = attrs.field(factory=utcnow, validator=_aware_utc)
    #: the request it happened in (None outside one: the CLI, an embedding app)
    origin: RequestOrigin | None = attrs.field(factory=requestctx.current, eq=False)


@attrs.frozen
class DeniedEvent:
    """A request was refused: who (if known), for what, and why."""

    principal: Principal | None
    kind: str
    target: str
    reason: str
    role: str | None = None
    at: dt.datetime = attrs.field(factory=utcnow, validator=_aware_utc)
    #: the request it happened in (None outside one: the CLI, an embedding app)
    origin: RequestOrigin | None = attrs.field(factory=requestctx.current, eq=False)


@attrs.frozen
class RevokedEvent:
    """Tokens were revoked or (``reinstated=True``) reinstated by ``actor``."""

    actor: Principal
    token_ids: tuple[str, ...] = attrs.field(converter=tuple)
    reinstated: bool = False
    at: dt.datetime = attrs.field(factory=utcnow, validator=_aware_utc)
    #: the request it happened in (None outside one: the CLI, an embedding app)
    origin: RequestOrigin | None = attrs.field(factory=requestctx.current, eq=False)


#: how a caller can prove who it is (:attr:`SignedInEvent.credential`)
SIGN_IN_CREDENTIALS = ("api-key", "password", "bearer", "front-end")


@attrs.frozen
class SignedInEvent:
    """A caller proved who it is: a request identified its caller, by ``credential`` (one of
    :data:`SIGN_IN_CREDENTIALS`)."""

    principal: Principal
    credential: str = attrs.field(validator=attrs.validators.in_(SIGN_IN_CREDENTIALS))
    at: dt.datetime = attrs.field(factory=utcnow, validator=_aware_utc)
    #: the request it happened in (None outside one: the CLI, an embedding app)
    origin: RequestOrigin | None = attrs.field(factory=requestctx.current, eq=False)
