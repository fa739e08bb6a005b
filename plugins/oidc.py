"""Plugin ``oidc``: workload identity. CI jobs and pods sign in with their platform's OIDC token.

A GitHub Actions job, a GitLab CI job or a Kubernetes pod holds a short-lived JWT from its
platform's issuer. Presented as a bearer token (``Authorization: Bearer ...``, or bare as AWS
SDKs send ``AWS_CONTAINER_AUTHORIZATION_TOKEN``) on any endpoint, it identifies the job, and
grants follow from its claims (as Vault's JWT auth method binds claims to policies). The same
tokens may be exchanged for access tokens (RFC 8693) by a client with an ``exchange`` grant for
the issuer URL.

Settings (``[plugins.oidc]``; ``credenza config reference oidc`` lists every key):

``[plugins.oidc.issuers.NAME]``
    One trusted issuer: ``issuer`` (the ``iss`` claim, exactly; https, or http on a loopback
    address), ``audiences`` (a token must name one), ``max_age_seconds`` (by ``iat``),
    ``bound_claims`` (claim -> accepted values, glob patterns; every claim named must match),
    ``name`` (the principal's name, a template such as ``"github:{repository}"``), ``kind``,
    ``groups_claim``, ``attributes`` (attribute -> claim), ``jwks_url`` (default: from the
    discovery document at ``ISSUER/.well-known/openid-configuration``) and
    ``[plugins.oidc.issuers.NAME.grants.RULE]`` tables: ``claims`` (as ``bound_claims``) and
    what a token matching them is granted (``aws``, ``tokens``, ``exchange``).

A claim is named by its key (``repository``) or, inside nested claims, by a JSON pointer
(``/kubernetes.io/namespace``, RFC 6901). Keys: the JWKS is fetched when first needed, trusted
for ``jwks_cache_seconds``, and fetched again at once when a token names a key id it does not
hold (the issuer rotated), but at most once per ``jwks_min_refresh_seconds`` so that tokens with
made-up key ids cannot make the broker hammer the issuer. When a fetch fails the request is 503
with the reason: an unreachable issuer never leads to an acceptance.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
import jwt
import requests

from credenza.config import Section
from credenza.errors import ConfigError, Unauthenticated, Unavailable
from credenza.grantmap import parse_pair
from credenza.health import HealthProbe
from credenza.jwtcheck import check_size, checked_claims
from credenza.markers import hookimpl
from credenza.models import (
    EXTERNAL_CLAIM,
    PRINCIPAL_KINDS,
    Grant,
    Health,
    IdentityRequest,
    Principal,
)
from credenza.settings import read, setting

NAME = "oidc"
#: the algorithms a key may use (taken from the key, never from the token)
ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                        "ES256", "ES384", "ES512", "EdDSA"})
#: the principal attributes that carry what the token said, for grants
ISSUER_ATTRIBUTE, CLAIMS_ATTRIBUTE = "oidc_issuer", "oidc_claims"
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_MISSING = object()


# -- settings -------------------------------------------------------------------------------------


@attrs.frozen
class GrantRuleSettings:
    """``[plugins.oidc.issuers.NAME.grants.RULE]``: what tokens with these claims may use."""

    claims: Mapping[str, tuple[str, ...]] = setting(
        "Claim -> accepted values (glob patterns); every claim named must match (none: every "
        "token of the issuer)", {})
    aws: tuple[str, ...] = setting("ACCOUNT/ROLE pairs (\"*\" as role: every role)", ())
    tokens: Mapping[str, tuple[str, ...]] = setting(
        "Credential provider -> the audiences allowed (empty: any)", {})
    exchange: tuple[str, ...] = setting("Issuers whose tokens may be exchanged (RFC 8693)", ())


@attrs.frozen
class IssuerSettings:
    """``[plugins.oidc.issuers.NAME]``: one trusted issuer."""

    issuer: str = setting("The issuer URL, exactly as the iss claim says it (https, or http on "
                          "a loopback address)")
    audiences: tuple[str, ...] = setting("The audiences accepted: a token must name one")
    max_age_seconds: int = setting("The oldest token accepted, by its iat claim", 3600,
                                   min=1, max=86400)
    bound_claims: Mapping[str, tuple[str, ...]] = setting(
        "Claim -> accepted values (glob patterns): every token must match all of them", {})
    name: str | None = setting("The principal's name: a template of {claim} placeholders",
                               None, default_text="NAME:{sub}")
    kind: str = setting("The kind of principal its tokens identify", "machine",
                        choices=PRINCIPAL_KINDS)
    groups_claim: str | None = setting("A claim whose values (a string or an array) are the "
                                       "principal's groups", None)
    attributes: Mapping[str, str] = setting("Principal attribute -> the claim it is read from",
                                            {})
    jwks_url: str | None = setting("The JWKS URL", None,
                                   default_text="jwks_uri of the discovery document")
    grants: Mapping[str, GrantRuleSettings] = setting("Grants by claim patterns, by rule name",
                                                      {})


@attrs.frozen
class OidcSettings:
    """``[plugins.oidc]``."""

    issuers: Mapping[str, IssuerSettings] = setting("Trusted issuers, by name", {})
    timeout_seconds: int = setting("Timeout of each discovery and JWKS request", 5, min=1,
                                   max=60)
    jwks_cache_seconds: int = setting("How long fetched keys are trusted before they are "
                                      "fetched again", 600, min=10, max=86400)
    jwks_min_refresh_seconds: int = setting(
        "The least time between two fetches caused by an unknown key id", 30, min=1, max=3600)
    clock_skew_seconds: int = setting("Leeway when checking exp, nbf and iat", 30, min=0,
                                      max=300)


# -- claims ---------------------------------------------------------------------------------------


def claim_value(claims: Mapping[str, Any], path: str) -> Any:
    """The claim ``path`` names: a top-level key, or a JSON pointer (RFC 6901) when it starts
    with ``/``; :data:`_MISSING` when there is none."""
    if not path.startswith("/"):
        return claims.get(path, _MISSING)
    value: Any = claims
    for part in path[1:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _texts(value: Any) -> list[str]:
    """A claim's value as the strings patterns are matched against (JSON's spelling of
    booleans; each item of an array); nothing for objects."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, list):
        return [text for item in value if not isinstance(item, list | dict)
                for text in _texts(item)]
    return []


@attrs.frozen
class ClaimPatterns:
    """Claim -> accepted glob patterns; matched when every claim has a value one accepts."""

    patterns: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict, hash=False)

    def mismatch(self, claims: Mapping[str, Any]) -> str | None:
        """The first claim that does not match, in words; None when all do."""
        for path, accepted in self.patterns.items():
            value = claim_value(claims, path)
            if value is _MISSING:
                return f"claim {path} is missing"
            if not any(fnmatch.fnmatchcase(text, pattern)
                       for text in _texts(value) for pattern in accepted):
                return f"claim {path} ({', '.join(_texts(value))[:100]!r}) is not one of " \
                       f"{', '.join(accepted)}"
        return None


@attrs.frozen
class GrantRule:
    """Grants that tokens with matching claims have."""

    name: str
    claims: ClaimPatterns
    grants: tuple[Grant, ...]

    @classmethod
    def from_settings(cls, issuer: str, name: str, settings: GrantRuleSettings,
                      section: Section) -> GrantRule:
        via = f"oidc {issuer} grant {name}"
        aws = []
        for pair in settings.aws:
            try:
                aws.append(Grant.aws(*parse_pair(pair), via=via))
            except ValueError as exc:
                raise section.error("aws", str(exc)) from None
        return cls(name, ClaimPatterns(settings.claims), (
            *aws,
            *(Grant("token", provider, audiences=audiences, via=via)
              for provider, audiences in settings.tokens.items()),
            *(Grant("exchange", url, via=via) for url in settings.exchange)))


# -- keys -----------------------------------------------------------------------------------------


def check_url(url: str, what: str) -> str:
    """``url`` when it is https, or http on a loopback address; raises ValueError otherwise."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        try:
            loopback = ipaddress.ip_address(parts.hostname).is_loopback
        except ValueError:
            loopback = parts.hostname == "localhost"
        if loopback:
            return url
    raise ValueError(f"{what} must be an https URL (http only on a loopback address), "
                     f"got {url!r}")


class IssuerKeys:
    """The published keys of one issuer, fetched when needed (see the module's account)."""

    def __init__(self, name: str, issuer: str, jwks_url: str | None, *, timeout: int,
                 cache_seconds: int, min_refresh_seconds: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.issuer, self.jwks_url = name, issuer, jwks_url
        self.timeout, self.cache_seconds = timeout, cache_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self.clock = clock
        self.fetches = 0  # how many times the JWKS was fetched (for /status and the tests)
        self._keys: dict[str, jwt.PyJWK] | None = None
        self._fetched_at = 0.0
        self._refreshed_for_unknown_at: float | None = None
        self._lock = threading.Lock()
        self._http = requests.Session()
        # /status: fetches the keys only when none are cached; a failed fetch shows at once
        self.health = HealthProbe(f"oidc {name}", self.ensure)

    def key(self, kid: str) -> jwt.PyJWK:
        """The key ``kid`` names.

        :raises Unavailable: the keys had to be fetched and the issuer could not be reached.
        :raises Unauthenticated: the issuer does not publish ``kid``.
        """
        keys = self._keys
        if keys is None or self._expired() or kid not in keys:
            keys = self._refresh(kid)
        key = keys.get(kid)
        if key is None:
            raise Unauthenticated(f"token signed with key {kid[:64]!r}, which issuer "
                                  f"{self.name} does not publish")
        return key

    def ensure(self) -> None:
        """Fetch the keys when none are cached or they expired (the ``/status`` check)."""
        if self._keys is None or self._expired():
            self._refresh(None)

    def _expired(self) -> bool:
        return self.clock() - self._fetched_at >= self.cache_seconds

    def _refresh(self, kid: str | None) -> dict[str, jwt.PyJWK]:
        with self._lock:
            try:
                return self._refreshed(kid)
            except Unavailable as exc:
                self.health.failed(exc.detail)  # /status shows what this request ran into
                raise

    def _refreshed(self, kid: str | None) -> dict[str, jwt.PyJWK]:
        now = self.clock()
        if self._keys is None or self._expired():
            self._fetch(now)
        elif kid is not None and kid not in self._keys and (
                self._refreshed_for_unknown_at is None
                or now - self._refreshed_for_unknown_at >= self.min_refresh_seconds):
            self._refreshed_for_unknown_at = now
            self._fetch(now)
        assert self._keys is not None
        return self._keys

    def _fetch(self, now: float) -> None:
        url = self.jwks_url or self._discovered_jwks_url()
        data = self._get(url)
        found: dict[str, jwt.PyJWK] = {}
        for entry in data.get("keys", []) if isinstance(data.get("keys"), list) else []:
            if not isinstance(entry, dict) or not entry.get("kid") or entry.get("use") == "enc":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type this broker cannot use; the others still count
            if key.algorithm_name in ALGORITHMS:
                found[str(entry["kid"])] = key
        if not found:
            raise self._unavailable(f"{url} lists no usable signing key")
        self._keys, self._fetched_at = found, now
        self.fetches += 1

    def _discovered_jwks_url(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = self._get(url)
        if document.get("issuer") != self.issuer:
            raise self._unavailable(f"the discovery document at {url} names issuer "
                                    f"{document.get('issuer')!r}, not {self.issuer!r}")
        try:
            return check_url(str(document.get("jwks_uri", "")), "its jwks_uri")
        except ValueError as exc:
            raise self._unavailable(f"{url}: {exc}") from None

    def _get(self, url: str) -> dict[str, Any]:
        try:
            answer = self._http.get(url, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise self._unavailable(f"{url} did not answer within {self.timeout} s") from None
        except requests.RequestException as exc:
            reason = type(exc).__name__.replace("Error", " error").lower()
            raise self._unavailable(f"cannot reach {url} ({reason})") from None
        if answer.status_code != 200:
            raise self._unavailable(f"{url} answered HTTP {answer.status_code}")
        try:
            data = answer.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise self._unavailable(f"{url} did not answer a JSON object")
        return data

    def _unavailable(self, reason: str) -> Unavailable:
        return Unavailable(f"the keys of OIDC issuer {self.name} cannot be fetched: {reason}")


# -- issuers --------------------------------------------------------------------------------------


@attrs.frozen
class Issuer:
    """A trusted issuer: which of its tokens identify whom, and what they are granted."""

    name: str
    url: str
    audiences: frozenset[str]
    max_age: int
    bound: ClaimPatterns
    name_template: str
    kind: str
    groups_claim: str | None
    attributes: Mapping[str, str] = attrs.field(hash=False)
    rules: tuple[GrantRule, ...]
    keys: IssuerKeys = attrs.field(eq=False, hash=False, repr=False)

    def verified_claims(self, token: str, leeway: int) -> dict[str, Any]:
        """The claims of ``token`` once signature, times, audience and bound claims are
        checked. :raises Unauthenticated: or Unavailable (see :meth:`IssuerKeys.key`)."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no kid header")
        key = self.keys.key(kid)
        claims = checked_claims(token, key.key, key.algorithm_name, issuer=self.url,
                                audiences=self.audiences, leeway=leeway,
                                require=("iss", "aud", "exp", "iat"))
        age = time.time() - claims["iat"]  # a number, and not in the future: PyJWT checks
        if age > self.max_age + leeway:
            raise Unauthenticated(f"token was issued {int(age)} s ago; issuer {self.name} "
                                  f"accepts tokens up to {self.max_age} s old")
        mismatch = self.bound.mismatch(claims)
        if mismatch:
            raise Unauthenticated(f"{mismatch} (bound_claims of issuer {self.name})")
        return claims

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        """The caller the verified ``claims`` name, with its groups and attributes."""
        groups = _texts(claim_value(claims, self.groups_claim)) if self.groups_claim else []
        attributes = {attribute: value for attribute, path in self.attributes.items()
                      if (value := claim_value(claims, path)) is not _MISSING}
        return Principal(self.render_name(claims), source=NAME, kind=self.kind, groups=groups,
                         attributes={**attributes, ISSUER_ATTRIBUTE: self.name,
                                     CLAIMS_ATTRIBUTE: claims})

    def render_name(self, claims: Mapping[str, Any]) -> str:
        """``name_template`` with each ``{claim}`` replaced by that claim's value."""
        def value(match: re.Match[str]) -> str:
            found = claim_value(claims, match.group(1))
            if not isinstance(found, str | int) or isinstance(found, bool) or found == "":
                raise Unauthenticated(f"claim {match.group(1)}, which names the caller, is "
                                      "missing or not a string")
            return str(found)
        name = _PLACEHOLDER.sub(value, self.name_template)
        if not name.isprintable():
            raise Unauthenticated("the caller's name made from the token is not printable")
        return name

    def grants(self, claims: Mapping[str, Any]) -> Iterable[Grant]:
        """The grants of every rule whose claims match."""
        for rule in self.rules:
            if rule.claims.mismatch(claims) is None:
                yield from rule.grants


def _issuer(name: str, settings: IssuerSettings, plugin: OidcSettings,
            section: Section) -> Issuer:
    checked = {}
    for key in ("issuer", "jwks_url"):
        value = getattr(settings, key)
        try:
            checked[key] = check_url(value, key) if value else None
        except ValueError as exc:
            raise section.error(key, str(exc)) from None
    url, jwks_url = str(checked["issuer"]), checked["jwks_url"]
    if not settings.audiences:
        raise section.error("audiences", "at least one audience is required: a token meant for "
                            "another service must not identify anyone here")
    template = settings.name or f"{name}:{{sub}}"
    if "{" in _PLACEHOLDER.sub("", template) or "}" in _PLACEHOLDER.sub("", template):
        raise section.error("name", f"unbalanced braces in {template!r}")
    rules = section.get_table("grants")
    return Issuer(
        name=name, url=url, audiences=frozenset(settings.audiences),
        max_age=settings.max_age_seconds, bound=ClaimPatterns(settings.bound_claims),
        name_template=template, kind=settings.kind, groups_claim=settings.groups_claim,
        attributes=settings.attributes,
        rules=tuple(GrantRule.from_settings(name, rule, grant, rules.get_table(rule))
                    for rule, grant in settings.grants.items()),
        keys=IssuerKeys(name, url, jwks_url, timeout=plugin.timeout_seconds,
                        cache_seconds=plugin.jwks_cache_seconds,
                        min_refresh_seconds=plugin.jwks_min_refresh_seconds),
    )


class OidcIdentity:
    """Identity and grants from the OIDC tokens of trusted workload issuers."""

    settings = OidcSettings

    def __init__(self, section: Section) -> None:
        settings = read(OidcSettings, section)
        self.leeway = settings.clock_skew_seconds
        issuers = section.get_table("issuers")
        self.issuers = {name: _issuer(name, issuer, settings, issuers.get_table(name))
                        for name, issuer in settings.issuers.items()}
        self.by_url: dict[str, Issuer] = {}
        for issuer in self.issuers.values():
            if issuer.url in self.by_url:
                raise ConfigError(f"{section.source}: [{issuers.name}] {issuer.name}: issuer "
                                  f"{issuer.url} is also {self.by_url[issuer.url].name}")
            self.by_url[issuer.url] = issuer

    def _issuer_of(self, token: str | None) -> Issuer | None:
        """The trusted issuer ``token`` names (unverified), or None: not a token of ours."""
        if not token or token.count(".") != 2:
            return None
        check_size(token)
        try:
            issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.PyJWTError:
            return None
        return self.by_url.get(issuer) if isinstance(issuer, str) else None

    # Asked before the jwt plugin, which refuses every JWT it did not sign.
    @hookimpl(tryfirst=True)
    def credenza_identify(self, request: IdentityRequest) -> Principal | None:
        issuer = self._issuer_of(request.bearer)
        if issuer is None:
            return None
        assert request.bearer is not None
        return issuer.principal(issuer.verified_claims(request.bearer, self.leeway))

    @hookimpl(tryfirst=True)
    def credenza_verify_token(self, token: str) -> Mapping[str, Any] | None:
        issuer = self._issuer_of(token)
        if issuer is None:
            return None
        return {**issuer.verified_claims(token, self.leeway), EXTERNAL_CLAIM: True}

    @hookimpl
    def credenza_health(self) -> list[Health]:
        return [issuer.keys.health() for issuer in self.issuers.values()]

    @hookimpl
    def credenza_grants(self, principal: Principal) -> list[Grant]:
        if principal.source != NAME:
            return []
        issuer = self.issuers.get(str(principal.attributes.get(ISSUER_ATTRIBUTE)))
        claims = principal.attributes.get(CLAIMS_ATTRIBUTE)
        if issuer is None or not isinstance(claims, Mapping):
            return []
        return list(issuer.grants(claims))
