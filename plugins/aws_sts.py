"""Plugin ``aws-sts``: AWS credentials from STS, and console sign-in URLs.

Two modes: ``assume-role`` calls AssumeRole with the broker's own AWS credentials;
``web-identity`` calls AssumeRoleWithWebIdentity with a token the broker signs for the caller
(the jwt plugin's ``internal`` provider), holding no AWS keys: IAM trusts the broker as an OIDC
provider (docs/aws.md has the IAM side).

Settings (``[plugins.aws-sts]``):

``mode``, ``web_identity_provider``, ``web_identity_audience``
    ``assume-role`` (default) or ``web-identity``; the jwt provider that signs web identity
    tokens (default ``aws``) and their audience (default ``sts.amazonaws.com``).

``region``, ``endpoint_url``
    Where STS is (default ``us-east-1`` and the regional endpoint).
``access_key_id``, ``secret_access_key``
    The broker's own credentials (``env:``/``file:`` references); without them, boto3's default
    chain (environment, profile, instance role). Not in web-identity mode.
``source_identity``
    Set SourceIdentity to the caller's name (sanitised like the session name); default false.
``[plugins.aws-sts.session_tags]``
    Session tag key -> principal attribute name, e.g. ``Department = "department"``.
``cache_size``, ``cache_key``
    Credentials each process keeps in memory (default 10000; 0 disables caching); with a token
    store that is a :class:`~credenza.models.SharedCache`, they are shared through it, sealed
    with ``cache_key`` (default: a key generated into the data directory).
``refresh_before_seconds``
    Refresh cached credentials this long before they no longer satisfy a caller (default 900;
    a quarter of their duration when that is shorter).
``max_attempts``, ``timeout_seconds``
    STS retries (botocore's standard mode: backoff with jitter on throttling and 5xx) and
    connect/read timeout per attempt.
``signin_url``, ``console_destination``
    The federation endpoint and console URL; by default those of the account's partition.
``callback_urls``
    URL prefixes a ``callbackurl`` may start with to become the console's Issuer. Anything else is
    refused with 400: an unvalidated Issuer is an open redirect.

The RoleSessionName is the caller's name when it is valid for STS (``[A-Za-z0-9_+,.@-]{2,64}``);
otherwise it is a sanitised prefix, ``=`` and a hash of the full name. Valid names never contain
``=`` and derived ones always do, so two different callers never share a session name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from credenza import metrics
from credenza.config import Section
from credenza.errors import (
    BadRequest,
    CredenzaError,
    Forbidden,
    NotConfigured,
    NotFound,
    Unavailable,
)
from credenza.health import HealthProbe
from credenza.logsafety import drop_credential_debug_logs
from credenza.markers import hookimpl
from credenza.models import (
    Account,
    AwsCredentials,
    AwsOptions,
    Grant,
    Health,
    Principal,
    SharedCache,
    TokenSpec,
)
from credenza.secrets import configured_key
from credenza.settings import read, setting
from credenza.sharedcache import Codec, TieredCache

try:
    import boto3
    import botocore.config
    import botocore.exceptions
    import urllib3
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"plugin aws-sts needs boto3: pip install 'credenza[aws]' ({exc})") from exc

if TYPE_CHECKING:
    from credenza.broker import Broker
    from credenza.tokens import TokenLifecycle

NAME = "aws-sts"

PARTITION_HOSTS = {
    "aws": ("https://signin.aws.amazon.com/federation", "https://console.aws.amazon.com/"),
    "aws-us-gov": ("https://signin.amazonaws-us-gov.com/federation",
                   "https://console.amazonaws-us-gov.com/"),
    "aws-cn": ("https://signin.amazonaws.cn/federation", "https://console.amazonaws.cn/"),
}

_SESSION_NAME = re.compile(r"^[A-Za-z0-9_+,.@-]{2,64}$")
_SESSION_CHAR = re.compile(r"[^A-Za-z0-9_+,.@-]")
_TAG_VALUE_CHAR = re.compile(r"[^\w .:/=+\-@]", re.ASCII)

UNAVAILABLE_CODES = frozenset({
    "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequestsException",
    "ServiceUnavailable", "InternalFailure", "InternalError", "RequestTimeout",
})
BROKER_CREDENTIAL_CODES = frozenset({
    "InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "UnrecognizedClientException",
    "IncompleteSignature", "MissingAuthenticationToken",
})
REQUEST_CODES = frozenset({
    "ValidationError", "MalformedPolicyDocument", "PackedPolicyTooLarge",
    "RegionDisabledException", "InvalidParameterValue",
})


def session_name(name: str) -> str:
    """A RoleSessionName (or SourceIdentity) for ``name``: deterministic, valid, collision-free."""
    if _SESSION_NAME.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return f"{_SESSION_CHAR.sub('-', name)[:47]}={digest}"


def role_arn(account: Account, role: str) -> str:
    """The ARN of ``role`` in ``account`` (partition and role path included)."""
    if account.id is None:
        raise NotConfigured(f"account {account.name!r} has no AWS account id configured")
    return f"arn:{account.partition}:iam::{account.id}:role{account.role_path}{role}"


def _dump_credentials(credentials: AwsCredentials) -> bytes:
    return json.dumps({
        "access_key_id": credentials.access_key_id,
        "secret_access_key": credentials.secret_access_key,
        "session_token": credentials.session_token,
        "expiration": credentials.expiration.isoformat(),
        "issued_at": credentials.issued_at.isoformat(),
        "account_id": credentials.account_id,
    }).encode()


def _load_credentials(data: bytes) -> AwsCredentials:
    fields = json.loads(data)
    return AwsCredentials(**{**fields, "expiration": dt.datetime.fromisoformat(
        fields["expiration"]), "issued_at": dt.datetime.fromisoformat(fields["issued_at"])})


#: how AWS credentials are kept in the shared cache (sealed: see credenza.sharedcache)
CREDENTIALS = Codec(_dump_credentials, _load_credentials, lambda creds: creds.expiration)


@attrs.frozen
class CallbackAllowlist:
    """URL prefixes a console callback may start with (https only, no user info)."""

    prefixes: tuple[urllib.parse.SplitResult, ...]

    @classmethod
    def from_urls(cls, urls: Iterable[str], section: Section,
                  key: str = "callback_urls") -> CallbackAllowlist:
        """Check the allowlist (errors name ``key`` of ``section``)."""
        prefixes = []
        for url in urls:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme != "https" or not parts.hostname or parts.username or parts.query:
                raise section.error(key, f"expected https://HOST/PATH prefixes, got {url!r}")
            prefixes.append(parts)
        return cls(tuple(prefixes))

    def check(self, url: str) -> str:
        """``url``, normalised, if it is allowed.

        Unreserved characters that were percent-encoded are decoded first (RFC 3986 6.2.2.2),
        so ``%2e%2e`` is ``..``; then a path that still has a dot segment, a backslash (which
        browsers read as ``/``) or an encoded slash is refused rather than resolved: a prefix
        match on ``/aws/../admin`` would pass what a browser opens outside ``/aws/``.

        :raises BadRequest: naming the URL when it is not allowed.
        """
        refused = BadRequest(f"callbackurl {url!r} is not an allowed callback URL")
        if any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch == "\\" for ch in url):
            raise refused
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError:
            raise refused from None
        path = _UNRESERVED_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), parts.path)
        if any(segment in (".", "..") for segment in path.split("/")) or \
                re.search(r"%(2f|5c)", path, re.IGNORECASE):
            raise refused
        for allowed in self.prefixes:
            base = allowed.path if allowed.path.endswith("/") else allowed.path + "/"
            if (parts.scheme == "https" and parts.username is None and parts.password is None
                    and parts.hostname == allowed.hostname and port == allowed.port
                    and (path == allowed.path or path.startswith(base))):
                return urllib.parse.urlunsplit(parts._replace(path=path))
        raise refused


# %XX of an unreserved character (ALPHA, DIGIT, "-", ".", "_", "~"): the same character.
_UNRESERVED_ESCAPE = re.compile(r"%(4[1-9A-Fa-f]|5[0-9Aa]|6[1-9A-Fa-f]|7[0-9Aa]|3[0-9]|2[dDeE]|"
                                r"5[fF]|7[eE])")


@attrs.frozen
class AwsStsSettings:
    """``[plugins.aws-sts]``."""

    region: str = setting("The STS region", "us-east-1")
    endpoint_url: str | None = setting("Where STS is (moto, a VPC endpoint)", None,
                                       default_text="the regional endpoint")
    access_key_id: str | None = setting(
        "The broker's own AWS key id; without it, boto3's default chain (environment, profile, "
        "instance role)", None, secret=True)
    secret_access_key: str | None = setting("The secret of access_key_id", None, secret=True)
    source_identity: bool = setting("Set SourceIdentity to the caller's name (sanitised like "
                                    "the session name)", False)
    session_tags: Mapping[str, str] = setting(
        "Session tag key -> principal attribute name, e.g. Department = \"department\"", {})
    cache_size: int = setting("Credentials each process keeps in memory, per principal/"
                              "account/role/duration (0 turns caching off, shared tier too)",
                              10_000, min=0, max=1_000_000)
    cache_key: str | None = setting(
        "base64 of 32 random bytes sealing the credentials shared through the token store "
        "(AES-256-GCM); every replica needs the same", None, secret=True,
        default_text="a key generated into DATA_DIR/aws-cache.key")
    refresh_before_seconds: int = setting("Refresh cached credentials this long before they "
                                          "no longer satisfy a caller (at most a quarter of "
                                          "their duration)", 900, min=0, max=3600)
    max_attempts: int = setting("STS tries per request (backoff with jitter on throttling and "
                                "5xx)", 4, min=1, max=10)
    timeout_seconds: int = setting("Connect and read timeout of each STS attempt", 5, min=1,
                                   max=60)
    signin_url: str | None = setting("The federation (sign-in) endpoint", None,
                                     default_text="the account's partition's")
    console_destination: str | None = setting("The console URL signed in to", None,
                                              default_text="the account's partition's")
    callback_urls: tuple[str, ...] = setting(
        "https URL prefixes a callbackurl may start with to become the console's Issuer "
        "(anything else is 400)", ())
    mode: str = setting("assume-role: AssumeRole with the broker's own AWS credentials; "
                        "web-identity: AssumeRoleWithWebIdentity with a token the broker signs "
                        "for the caller (no AWS keys in the broker)", "assume-role",
                        choices=("assume-role", "web-identity"))
    web_identity_provider: str = setting("The jwt plugin's provider (internal = true) that "
                                         "signs the web identity tokens", "aws")
    web_identity_audience: str = setting("Their aud: a client ID of the OIDC provider in IAM",
                                         "sts.amazonaws.com")


class WebIdentity:
    """The tokens of web-identity mode: signed by the jwt plugin's internal provider, for STS.

    IAM trusts the broker as an OIDC provider: it fetches the discovery document at the token's
    ``iss`` over https, then the JWKS it names, and checks ``aud`` against the provider's client
    IDs; the role's trust policy decides which ``sub`` (caller) may assume it.
    """

    def __init__(self, section: Section, provider: str, audience: str) -> None:
        self.section = section
        self.provider = provider
        self.audience = audience
        self.issuer = ""
        self._tokens: TokenLifecycle | None = None

    def start(self, tokens: TokenLifecycle) -> None:
        """Check, by signing a throwaway token, that every call will get its token.

        :raises ConfigError: naming ``web_identity_provider`` and what is missing.
        """
        self.issuer = tokens.issuer() or ""
        if not self.issuer.startswith("https://"):
            raise self.section.error("web_identity_provider", "IAM fetches the discovery "
                                     "document of the token's issuer over https: set [plugins."
                                     f"jwt] issuer to this broker's https URL, not {self.issuer!r}")
        self._tokens = tokens
        try:
            self.token(Principal("credenza-startup-check", source=NAME), {}, None)
        except NotFound:
            raise self.section.error(
                "web_identity_provider", f"the jwt plugin has no provider {self.provider!r}: "
                f"declare [plugins.jwt.providers.{self.provider}] with internal = true and "
                f"audiences = [\"{self.audience}\"]") from None
        except CredenzaError as exc:
            raise self.section.error(
                "web_identity_provider", f"provider {self.provider!r} cannot sign tokens for "
                f"{self.audience!r} with issuer {self.issuer!r}: {exc.detail}") from None

    def token(self, principal: Principal, tags: Mapping[str, str],
              source_identity: str | None) -> str:
        """A web identity token for ``principal``, with session tags and source identity in
        the claims where IAM reads them."""
        assert self._tokens is not None, "started by credenza_startup"
        claims: dict[str, Any] = {}
        if tags:
            claims[TAGS_CLAIM] = {"principal_tags": {key: [value] for key, value in tags.items()},
                                  "transitive_tag_keys": []}
        if source_identity:
            claims[SOURCE_IDENTITY_CLAIM] = source_identity
        spec = TokenSpec(self.provider, principal.name, {self.audience}, issuer=self.issuer,
                         custom_claims=claims, consumer_type=principal.kind,
                         consumer_id=principal.name, internal=True)
        return self._tokens.sign(principal, spec).value


#: where IAM reads session tags and the source identity in a web identity token
TAGS_CLAIM = "https://aws.amazon.com/tags"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"


class AwsSts:
    """Issues AWS credentials through STS (AssumeRole, or AssumeRoleWithWebIdentity with a token
    the broker signs) and makes console sign-in URLs."""

    settings = AwsStsSettings

    def __init__(self, section: Section) -> None:
        drop_credential_debug_logs()
        settings = read(AwsStsSettings, section)
        region = settings.region
        self.endpoint_url = settings.endpoint_url
        access_key, secret_key = settings.access_key_id, settings.secret_access_key
        if (access_key is None) != (secret_key is None):
            raise section.error("access_key_id", "give both access_key_id and "
                                "secret_access_key, or neither (boto3's default chain)")
        self.web_identity = WebIdentity(section, settings.web_identity_provider,
                                        settings.web_identity_audience) \
            if settings.mode == "web-identity" else None
        if self.web_identity and access_key:
            raise section.error("access_key_id", "not used in web-identity mode: the broker "
                                "signs a token for each call instead of holding AWS keys")
        self.source_identity = settings.source_identity
        self.session_tags = dict(settings.session_tags)
        self.max_attempts = settings.max_attempts
        timeout = settings.timeout_seconds
        # A lease outlasts every attempt's connect and read timeouts and botocore's backoff.
        self.cache = TieredCache(settings.cache_size, CREDENTIALS,
                                 lease=self.max_attempts * (2 * timeout + 5))
        self.refresh_margin = dt.timedelta(seconds=settings.refresh_before_seconds)
        self._cache_key = configured_key(section, "cache_key", settings.cache_key,
                                         "aws-cache.key")
        self.signin_url = settings.signin_url
        self.console_destination = settings.console_destination
        self.callbacks = CallbackAllowlist.from_urls(settings.callback_urls, section)
        session = boto3.session.Session(aws_access_key_id=access_key,
                                        aws_secret_access_key=secret_key, region_name=region)
        retrying = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": self.max_attempts},
            connect_timeout=timeout, read_timeout=timeout,
            # AssumeRoleWithWebIdentity is the one call that needs no AWS signature.
            signature_version=botocore.UNSIGNED if self.web_identity else None,
        )
        self.sts = session.client("sts", endpoint_url=self.endpoint_url, config=retrying)
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=timeout, read=timeout),
                                        retries=False)
        self.health = HealthProbe("sts", self._reach_sts if self.web_identity else
                                  lambda: self._call("GetCallerIdentity",
                                                     self.sts.get_caller_identity))

    @hookimpl
    def credenza_startup(self, broker: Broker) -> None:
        store = broker.tokens.store if broker.tokens.enabled else None
        if isinstance(store, SharedCache) and self.cache.size:
            self.cache.share(store, self._cache_key())
        if self.web_identity:
            self.web_identity.start(broker.tokens)

    def _reach_sts(self) -> None:
        """Without AWS keys there is nothing to ask STS: check that it answers at all."""
        try:
            self.http.request("GET", self.sts.meta.endpoint_url)
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(f"cannot reach STS: {type(exc).__name__}", retry_after=10) from None

    # -- credentials ----------------------------------------------------------------------------

    @hookimpl
    def credenza_issue_aws(self, principal: Principal, account: Account, grant: Grant,
                           options: AwsOptions) -> AwsCredentials:
        duration = options.duration or account.default_duration
        if duration > account.max_duration:
            raise BadRequest(f"a duration of {duration} s exceeds the maximum of "
                             f"{account.max_duration} s for account {account.name!r}")
        arn = role_arn(account, grant.role or "")
        key = ("aws-sts", principal.source, principal.name, arn, str(duration))
        # Credentials shorter than the margin would never be served twice: refresh those when
        # a quarter of their life is left.
        margin = min(self.refresh_margin, dt.timedelta(seconds=duration) / 4)
        return self.cache.obtain(key, options.min_remaining, margin,
                                 lambda: self._assume_role(principal, account, arn, duration))

    def _assume_role(self, principal: Principal, account: Account, arn: str,
                     duration: int) -> AwsCredentials:
        params: dict[str, Any] = {"RoleArn": arn, "RoleSessionName": session_name(principal.name),
                                  "DurationSeconds": duration}
        if account.external_id and not self.web_identity:
            params["ExternalId"] = account.external_id
        if self.source_identity:
            params["SourceIdentity"] = session_name(principal.name)
        tags = {key: _TAG_VALUE_CHAR.sub("-", str(value))[:256]
                for key, attribute in sorted(self.session_tags.items())
                if (value := principal.attributes.get(attribute)) not in (None, "")}
        if self.web_identity:
            if account.external_id:
                raise NotConfigured(f"account {account.name!r} has an external_id, which "
                                    "AssumeRoleWithWebIdentity cannot send: remove it, and name "
                                    "the callers in the role's trust policy (sub) instead")
            params["WebIdentityToken"] = self.web_identity.token(
                principal, tags, params.pop("SourceIdentity", None))
            call, action = self.sts.assume_role_with_web_identity, "AssumeRoleWithWebIdentity"
        else:
            if tags:
                params["Tags"] = [{"Key": key, "Value": value} for key, value in tags.items()]
            call, action = self.sts.assume_role, "AssumeRole"
        try:
            response = self._call(f"{action} {arn}", lambda: call(**params))
        except Unavailable as exc:
            self.health.failed(exc.detail)  # /status shows what this request ran into
            raise
        creds = response["Credentials"]
        return AwsCredentials(
            access_key_id=creds["AccessKeyId"], secret_access_key=creds["SecretAccessKey"],
            session_token=creds["SessionToken"],
            expiration=creds["Expiration"].astimezone(dt.UTC), account_id=account.id,
        )

    def _call(self, what: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Call STS, counted and timed by operation and outcome (the first word of ``what``)."""
        operation, outcome = what.split()[0], "ok"
        try:
            with metrics.timed(metrics.STS_DURATION.labels(operation)):
                return self._checked_call(what, call)
        except CredenzaError as exc:
            outcome = exc.slug
            raise
        finally:
            metrics.STS_CALLS.labels(operation, outcome).inc()

    def _checked_call(self, what: str, call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Call STS; turn every failure into the error a caller should see."""
        try:
            return call()
        except botocore.exceptions.ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "Unknown"), error.get("Message", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            if code == "AccessDenied":
                raise Forbidden(f"AWS denied {what}: {message}") from None
            if code in REQUEST_CODES:
                raise BadRequest(f"STS refused {what}: {code}: {message}") from None
            if code in BROKER_CREDENTIAL_CODES:
                raise Unavailable(f"STS rejected the broker's own AWS credentials ({code})",
                                  retry_after=60) from None
            if code in UNAVAILABLE_CODES or status >= 500:
                raise Unavailable(f"STS is unavailable ({code}) after {self.max_attempts} "
                                  "attempts", retry_after=10) from None
            raise Unavailable(f"STS failed {what}: {code}: {message}") from None
        except botocore.exceptions.NoCredentialsError:
            raise Unavailable("the broker has no AWS credentials of its own to call STS with",
                              retry_after=60) from None
        except (botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.ConnectionClosedError) as exc:
            raise Unavailable(f"cannot reach STS: {type(exc).__name__}", retry_after=10) from None

    # -- console ------------------------------------------------------------------------------

    @hookimpl
    def credenza_console_callback(self, url: str) -> str:
        return self.callbacks.check(url)

    @hookimpl
    def credenza_console_url(self, principal: Principal, account: Account,
                             credentials: AwsCredentials, options: AwsOptions) -> str:
        issuer = self.callbacks.check(options.callback_url) if options.callback_url else None
        signin, destination = PARTITION_HOSTS[account.partition]
        signin = self.signin_url or signin
        session = json.dumps({"sessionId": credentials.access_key_id,
                              "sessionKey": credentials.secret_access_key,
                              "sessionToken": credentials.session_token})
        query = {"Action": "getSigninToken", "Session": session}
        if credentials.from_assume_role:
            query["SessionDuration"] = str(options.duration or account.default_duration)
        token = self._signin_token(signin, query)
        login = {"Action": "login", "Destination": self.console_destination or destination,
                 "SigninToken": token}
        if issuer:
            login["Issuer"] = issuer
        return f"{signin}?{urllib.parse.urlencode(login)}"

    def _signin_token(self, signin: str, query: dict[str, str]) -> str:
        # The URL carries the credentials: it must never be logged (urllib3 logs no URLs at INFO).
        try:
            response = self.http.request("GET", signin, fields=query)
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(f"cannot reach the AWS sign-in endpoint: {type(exc).__name__}",
                              retry_after=10) from None
        if response.status != 200:
            raise Unavailable(f"the AWS sign-in endpoint answered HTTP {response.status}",
                              retry_after=10)
        try:
            return str(json.loads(response.data)["SigninToken"])
        except (ValueError, KeyError, TypeError):
            raise Unavailable("the AWS sign-in endpoint answered without a SigninToken") from None

    # -- operations ---------------------------------------------------------------------------

    @hookimpl
    def credenza_health(self) -> list[Health]:
        return [self.health()]

    @hookimpl
    def credenza_shutdown(self) -> None:
        self.http.clear()

