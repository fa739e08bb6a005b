"""Plugin ``oauth-upstream``: upstream OAuth access tokens and managed API keys for callers.

Settings (``[plugins.oauth-upstream]``):

``encryption_key``
    A Fernet key (``env:``/``file:``) that decrypts the managed API keys below; make one with
    ``credenza upstream new-key`` and encrypt values with ``credenza upstream encrypt``.
``refresh_before_seconds``
    Fetch a new upstream token this long before the cached one expires (default 60).
``cache_key``
    base64 of 32 random bytes sealing the upstream tokens shared through the token store
    (default: a key generated into ``DATA_DIR/upstream-cache.key``; replicas need the same).
``[plugins.oauth-upstream.providers.NAME]``
    ``token_url``, ``client_id``, ``client_secret`` (``env:``/``file:``), ``scope`` (default
    scope), ``auth_method`` (``client_secret_basic``, default, or ``client_secret_post``).
``[plugins.oauth-upstream.api_keys]``
    identifier -> ciphertext (the managed credential, encrypted with ``encryption_key``).

Tokens are fetched with the client-credentials grant and shared by every permitted caller until
shortly before they expire: by every worker and replica when the token store is a shared cache
(the ``sql`` plugin's; sealed, see :mod:`credenza.sharedcache`), one fetch at a time per provider
and scope. While the upstream endpoint is down, a cached token with at least half of
``refresh_before_seconds`` left is still served. Callers need an ``oauth`` grant for the provider
(or an ``api-key`` grant for a managed key): the broker checks it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs
import click
import urllib3
from cryptography.fernet import Fernet, InvalidToken

from credenza.config import Section
from credenza.errors import ConfigError, Unavailable
from credenza.markers import hookimpl
from credenza.models import SharedCache, UpstreamToken, utcnow
from credenza.secrets import configured_key
from credenza.settings import read, setting
from credenza.sharedcache import Codec, TieredCache

if TYPE_CHECKING:
    from credenza.broker import Broker

#: upstream tokens kept per process (a few per provider and scope)
CACHE_SIZE = 1024
#: seconds to connect to and to read from an upstream token endpoint
CONNECT_TIMEOUT, READ_TIMEOUT = 5, 10


def _dump_token(token: UpstreamToken) -> bytes:
    return json.dumps({"value": token.value, "token_type": token.token_type,
                       "scope": token.scope, "expires_at": token.expires_at.isoformat()}).encode()


def _load_token(data: bytes) -> UpstreamToken:
    fields = json.loads(data)
    return UpstreamToken(fields["value"], fields["token_type"], fields["scope"],
                         dt.datetime.fromisoformat(fields["expires_at"]))


#: how upstream tokens are kept in the shared cache (sealed: see credenza.sharedcache)
TOKENS = Codec(_dump_token, _load_token, lambda token: token.expires_at)


@attrs.frozen
class UpstreamProvider:
    """One upstream token endpoint and the broker's client there."""

    name: str
    token_url: str
    client_id: str
    client_secret: str = attrs.field(repr=False)
    scope: str | None
    auth_method: str

    @classmethod
    def from_settings(cls, name: str, settings: UpstreamSettings,
                      section: Section) -> UpstreamProvider:
        """A provider from its declared settings (``section``, its table, names errors)."""
        if not settings.token_url.startswith(("https://", "http://127.", "http://localhost")):
            raise section.error("token_url", "must be https (plain http only to loopback)")
        return cls(name, settings.token_url, settings.client_id, settings.client_secret,
                   settings.scope, settings.auth_method)


@attrs.frozen
class UpstreamSettings:
    """``[plugins.oauth-upstream.providers.NAME]``: one upstream token endpoint."""

    token_url: str = setting("The upstream token endpoint (https; http only to loopback)")
    client_id: str = setting("This broker's client id there")
    client_secret: str = setting("This broker's client secret there", secret=True)
    scope: str | None = setting("The scope asked for when a caller names none", None)
    auth_method: str = setting("How this broker authenticates there", "client_secret_basic",
                               choices=("client_secret_basic", "client_secret_post"))


@attrs.frozen
class OAuthUpstreamSettings:
    """``[plugins.oauth-upstream]``."""

    encryption_key: str | None = setting(
        "The Fernet key of the managed API keys (credenza upstream new-key)", None, secret=True)
    refresh_before_seconds: int = setting("Fetch a new upstream token this long before the "
                                          "cached one expires", 60, min=0, max=3600)
    cache_key: str | None = setting(
        "base64 of 32 random bytes sealing the upstream tokens shared through the token store "
        "(AES-256-GCM); every replica needs the same", None, secret=True,
        default_text="a key generated into DATA_DIR/upstream-cache.key")
    providers: Mapping[str, UpstreamSettings] = setting("Upstream OAuth providers by name", {})
    api_keys: Mapping[str, str] = setting(
        "Managed API keys: identifier -> ciphertext (credenza upstream encrypt)", {})


class OAuthUpstream:
    """Fetches and caches upstream tokens; decrypts managed API keys."""

    settings = OAuthUpstreamSettings

    def __init__(self, section: Section) -> None:
        settings = read(OAuthUpstreamSettings, section)
        key = settings.encryption_key
        try:
            self.fernet = Fernet(key.encode()) if key else None
        except ValueError:
            raise section.error("encryption_key", "not a Fernet key (credenza upstream "
                                "new-key makes one)") from None
        # Fetched anew refresh_before ahead of expiry; while upstream is down, served on
        # until half of that is left.
        self.need = dt.timedelta(seconds=settings.refresh_before_seconds / 2)
        self.margin = dt.timedelta(seconds=settings.refresh_before_seconds) - self.need
        self._cache_key = configured_key(section, "cache_key", settings.cache_key,
                                         "upstream-cache.key")
        providers = section.get_table("providers")  # names the errors below
        self.providers = {name: UpstreamProvider.from_settings(name, provider,
                                                               providers.get_table(name))
                          for name, provider in settings.providers.items()}
        keys = section.get_table("api_keys")
        self.api_keys = dict(settings.api_keys)
        if self.api_keys and self.fernet is None:
            raise section.error("api_keys", "managed API keys need encryption_key")
        for identifier, ciphertext in self.api_keys.items():
            if self._decrypt(ciphertext) is None:
                raise keys.error(identifier, "cannot be decrypted with encryption_key")
        self.http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT), retries=False)
        self.cache = TieredCache(CACHE_SIZE, TOKENS, lease=CONNECT_TIMEOUT + READ_TIMEOUT + 5)

    @hookimpl
    def credenza_startup(self, broker: Broker) -> None:
        store = broker.tokens.store if broker.tokens.enabled else None
        if isinstance(store, SharedCache):
            self.cache.share(store, self._cache_key())

    def _decrypt(self, ciphertext: str) -> str | None:
        """The plaintext, or None when this key cannot decrypt it."""
        if self.fernet is None:
            return None
        try:
            return self.fernet.decrypt(ciphertext.encode()).decode()
        except (InvalidToken, ValueError):
            return None

    @hookimpl
    def credenza_managed_credential(self, identifier: str) -> str | None:
        ciphertext = self.api_keys.get(identifier)
        if ciphertext is None:
            return None
        value = self._decrypt(ciphertext)
        if value is None:  # checked at start: only a changed key file gets here
            raise Unavailable(f"managed credential {identifier!r} cannot be decrypted")
        return value

    @hookimpl
    def credenza_upstream_token(self, provider: str, scope: str | None,
                                force: bool) -> UpstreamToken | None:
        upstream = self.providers.get(provider)
        if upstream is None:
            return None
        scope = scope or upstream.scope
        return self.cache.obtain(("upstream", provider, scope or ""), self.need, self.margin,
                                 lambda: self._fetch(upstream, scope), renew=force)

    def _fetch(self, upstream: UpstreamProvider, scope: str | None) -> UpstreamToken:
        fields = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
        headers = {"Accept": "application/json"}
        if upstream.auth_method == "client_secret_basic":
            headers.update(urllib3.make_headers(
                basic_auth=f"{upstream.client_id}:{upstream.client_secret}"))
        else:
            fields.update(client_id=upstream.client_id, client_secret=upstream.client_secret)
        try:
            response = self.http.request("POST", upstream.token_url, fields=fields,
                                         headers=headers, encode_multipart=False)
        except urllib3.exceptions.HTTPError as exc:
            raise Unavailable(f"cannot reach upstream provider {upstream.name}: "
                              f"{type(exc).__name__}", retry_after=10) from None
        if response.status != 200:
            raise Unavailable(f"upstream provider {upstream.name} answered HTTP "
                              f"{response.status}", retry_after=10)
        try:
            body = json.loads(response.data)
            value = str(body["access_token"])
            lifetime = int(body.get("expires_in", 300))
        except (ValueError, KeyError, TypeError):
            raise Unavailable(f"upstream provider {upstream.name} answered without a usable "
                              "access_token") from None
        return UpstreamToken(value, str(body.get("token_type", "Bearer")),
                             str(body.get("scope", scope or "")),
                             utcnow() + dt.timedelta(seconds=lifetime))

    @hookimpl
    def credenza_commands(self, cli: click.Group) -> None:
        @cli.group(name="upstream")
        def upstream() -> None:
            """Upstream OAuth tokens and managed API keys."""

        @upstream.command(name="new-key")
        def new_key() -> None:
            """Print a new encryption_key (keep it secret, e.g. in a file: reference)."""
            click.echo(Fernet.generate_key().decode())

        @upstream.command(name="encrypt")
        def encrypt() -> None:
            """Encrypt a credential read from standard input with encryption_key."""
            if self.fernet is None:
                raise ConfigError("[plugins.oauth-upstream] encryption_key is not set")
            click.echo(self.fernet.encrypt(click.get_text_stream("stdin").read()
                                           .strip().encode()).decode())

        @upstream.command(name="token")
        @click.argument("provider")
        @click.option("--scope")
        def token(provider: str, scope: str | None) -> None:
            """Print an access token of PROVIDER (local administration)."""
            found = self.credenza_upstream_token(provider, scope, force=False)
            if found is None:
                raise click.BadParameter(f"unknown provider {provider!r}")
            click.echo(found.value)

    @hookimpl
    def credenza_shutdown(self) -> None:
        self.http.clear()
