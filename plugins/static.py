"""Plugin ``static``: users, API keys, groups, grants and accounts from YAML files.

Settings (``[plugins.static]``):

``files``
    YAML files or directories of ``*.yaml`` (merged in lexical order), in this format::

        users:
          alice:
            password: "$scrypt$..."      # `credenza hash-password`; no password: no Basic login
            groups: [ops]
            grants: ["dev/reader"]       # ACCOUNT/ROLE; "*" as role grants every role
            attributes: {email: alice@example.com}
        oauth_clients:
          pam-app:                       # client_id; `hash-api-key pam-app --client` prints the
            sha256: "..."                # client secret (pam-app.SECRET) and this hash
            tokens: {build-bot: [https://api.example.com]}   # provider -> audiences ([] any)
            admin: [build-bot]           # lifecycle rights over everyone's tokens of it
            exchange: [https://idp.example.com]   # RFC 8693: tokens of these issuers
            oauth: [github]              # upstream OAuth providers' tokens (oauth-upstream)
            credentials: [vendor-key]    # managed upstream API keys (oauth-upstream)
        api_keys:
          ci-deploy:                     # the key id; the key is "ci-deploy.SECRET"
            sha256: "..."                # `credenza hash-api-key ci-deploy`
            principal: ci-bot
            kind: machine
            grants: ["prod/deployer"]
        groups:
          ops:
            grants: ["prod/admin"]
        accounts:
          prod: {id: "123456789012", partition: aws, region: eu-west-1,
                 default_duration: 3600, max_duration: 43200, role_path: /,
                 external_id: "...", roles: [admin, reader]}   # roles: listed for "prod/*"

``afp_accounts``
    afp-core's ACCOUNT_CONFIG_PATH (a file or a directory): ``alias: {id: "123456789012"}``.
``group_patterns``
    afp-core's ``provider.regex``: regular expressions with named groups ``account`` and ``role``
    applied to every group name of a principal, whatever source the groups came from.

Static users' groups and grants apply to a principal of that name whoever identified it, so the
file can add grants to users that Apache or a directory authenticates.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from credenza.config import Section
from credenza.errors import ConfigError, Unauthenticated
from credenza.grantmap import GroupGrantMap, compile_patterns, parse_pair
from credenza.markers import hookimpl
from credenza.models import PRINCIPAL_KINDS, Account, Grant, IdentityRequest, Principal
from credenza.opaque import kind_of
from credenza.secrets import (
    API_KEY_ID,
    VerifiedCache,
    hash_password,
    is_password_hash,
    same_secret,
    split_api_key,
    verify_password,
)
from credenza.settings import read, setting
from credenza.yamltree import load_tree, merge

NAME = "static"
VERIFIED_TTL = 300.0  # seconds a verified password is remembered (scrypt costs ~50 ms)
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))


@attrs.frozen
class Entry:
    """A user or an API key of the file: who it is and what it grants."""

    principal: str
    kind: str
    groups: frozenset[str]
    grants: tuple[Grant, ...]
    attributes: Mapping[str, Any] = attrs.field(hash=False)
    secret: str | None = attrs.field(repr=False)  # scrypt hash (users) or SHA-256 hex (keys)


@attrs.frozen
class Directory:
    """The parsed content of the YAML files."""

    users: Mapping[str, Entry]
    api_keys: Mapping[str, Entry]
    clients: Mapping[str, Entry]
    group_grants: GroupGrantMap
    accounts: tuple[Account, ...]


@attrs.frozen
class StaticSettings:
    """``[plugins.static]``."""

    files: tuple[str, ...] = setting(
        "YAML files or directories of *.yaml (merged in lexical order): users, oauth_clients, "
        "api_keys, groups, accounts", ())
    afp_accounts: Path | None = setting(
        "afp-core's ACCOUNT_CONFIG_PATH (a file or directory): alias -> {id}", None)
    group_patterns: tuple[str, ...] = setting(
        "afp-core's provider.regex: regular expressions with named groups account and role, "
        "applied to every group name of a principal", ())


class StaticDirectory:
    """Identity, groups, grants and accounts from YAML files."""

    settings = StaticSettings

    def __init__(self, section: Section) -> None:
        settings = read(StaticSettings, section)
        files, afp_accounts = settings.files, settings.afp_accounts
        patterns = compile_patterns(settings.group_patterns, section)
        data: dict[str, Any] = {}
        for name in files:
            path = section.base_dir / name
            if not path.exists():  # name the setting that points there, not only the path
                raise section.error("files", f"{path}: no such file or directory")
            merge(data, load_tree(path))
        source = ", ".join(str(section.base_dir / name) for name in files) or section.source
        self.directory = parse_directory(data, source, patterns)
        if afp_accounts is not None:
            if not afp_accounts.exists():
                raise section.error("afp_accounts", f"{afp_accounts}: no such file or directory")
            legacy = afp_account_catalogue(load_tree(afp_accounts), str(afp_accounts))
            self.directory = attrs.evolve(self.directory,
                                          accounts=self.directory.accounts + legacy)
        self._verified = VerifiedCache(VERIFIED_TTL)

    # -- identity ---------------------------------------------------------------------------

    @hookimpl
    def credenza_identify(self, request: IdentityRequest) -> Principal | None:
        if request.api_key is not None:
            return self._by_api_key(request.api_key)
        if request.basic is not None:
            return self._by_password(request.basic.username, request.basic.password)
        return None

    def _by_api_key(self, key: str) -> Principal | None:
        parts = split_api_key(key)
        entry = self.directory.api_keys.get(parts[0]) if parts else None
        if entry is None:
            return None  # not one of ours: another plugin may know it
        if entry.secret is None or not same_secret(parts[1], entry.secret):
            raise Unauthenticated("invalid API key")
        return Principal(entry.principal, source=NAME, kind=entry.kind, groups=entry.groups,
                         attributes={**entry.attributes, "api_key_id": parts[0]})

    def _by_password(self, username: str, password: str) -> Principal | None:
        client = self.directory.clients.get(username)
        if client is not None and username not in self.directory.users:
            # OAuth client authentication (client_secret_basic / _post). The client secret is the
            # key `credenza hash-api-key CLIENT_ID` printed: CLIENT_ID.SECRET.
            parts = split_api_key(password)
            if (parts is None or parts[0] != username or client.secret is None
                    or not same_secret(parts[1], client.secret)):
                raise Unauthenticated("invalid client credentials")
            return Principal(username, source=NAME, kind=client.kind, groups=client.groups,
                             attributes={**client.attributes, "oauth_client": username})
        entry = self.directory.users.get(username)
        if entry is None or entry.secret is None:
            # Same cost either way, so timing does not tell which user names exist here.
            verify_password(password, _DUMMY_HASH)
            return None
        secret = entry.secret

        def check() -> bool:
            if not verify_password(password, secret):
                raise Unauthenticated("invalid user name or password")
            return True

        self._verified.obtain(check, username, secret, password)
        return Principal(entry.principal, source=NAME, kind=entry.kind, groups=entry.groups,
                         attributes=entry.attributes)

    @hookimpl
    def credenza_principal_attributes(self, principal: Principal) -> Mapping[str, Any]:
        entry = self.directory.users.get(principal.name)
        return entry.attributes if entry else {}

    @hookimpl
    def credenza_principal_groups(self, principal: Principal) -> Iterable[str]:
        entry = self.directory.users.get(principal.name)
        return entry.groups if entry else ()

    # -- grants and accounts ------------------------------------------------------------------

    @hookimpl
    def credenza_grants(self, principal: Principal) -> list[Grant]:
        grants: list[Grant] = []
        user = self.directory.users.get(principal.name)
        if user is not None:
            grants.extend(user.grants)
        key_id = principal.attributes.get("api_key_id") if principal.source == NAME else None
        if key_id in self.directory.api_keys:
            grants.extend(self.directory.api_keys[key_id].grants)
        # A client keeps its grants when it comes back with the access token it was given.
        client = self.directory.clients.get(principal.name)
        if client is not None and principal.kind == "client":
            grants.extend(client.grants)
        grants.extend(self.directory.group_grants.grants(principal.groups))
        return grants

    @hookimpl
    def credenza_accounts(self) -> tuple[Account, ...]:
        return self.directory.accounts


# -- parsing ------------------------------------------------------------------------------------


def _expect(value: Any, kind: type, where: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ConfigError(f"{where}: expected {what}, got {value!r}")
    return value


def _strings(value: Any, where: str) -> list[str]:
    items = _expect(value if value is not None else [], list, where, "a list of strings")
    return [_expect(item, str, where, "a list of strings") for item in items]


def _grants(value: Any, where: str, via: str) -> tuple[Grant, ...]:
    grants = []
    for pair in _strings(value, where):
        try:
            account, role = parse_pair(pair)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        grants.append(Grant.aws(account, role, via=via))
    return tuple(grants)


_GRANT_KEYS = frozenset({"groups", "grants", "tokens", "admin", "exchange", "oauth",
                         "credentials", "attributes", "kind"})
_USER_KEYS = _GRANT_KEYS | {"password"}
_KEY_KEYS = _GRANT_KEYS | {"sha256", "principal"}
_CLIENT_KEYS = _GRANT_KEYS | {"sha256"}
_ACCOUNT_KEYS = frozenset({"id", "partition", "region", "default_duration", "max_duration",
                           "role_path", "external_id", "roles"})


def _entry(name: str, raw: Any, where: str, allowed: frozenset[str], secret_field: str,
           default_kind: str, via: str) -> Entry:
    raw = _expect(raw if raw is not None else {}, dict, where, "a mapping")
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} "
                          f"(known: {', '.join(sorted(allowed))})")
    kind = raw.get("kind", default_kind)
    if kind not in PRINCIPAL_KINDS:
        raise ConfigError(f"{where}.kind: expected one of {', '.join(sorted(PRINCIPAL_KINDS))}")
    secret = raw.get(secret_field)
    if secret is not None:
        _expect(secret, str, f"{where}.{secret_field}", "a string")
    attributes = _expect(raw.get("attributes", {}), dict, f"{where}.attributes", "a mapping")
    tokens = _expect(raw.get("tokens") or {}, dict, f"{where}.tokens",
                     "a mapping of provider -> audiences")
    grants = (*_grants(raw.get("grants"), f"{where}.grants", via),
              *(Grant("token", str(provider),
                      audiences=_strings(audiences, f"{where}.tokens.{provider}"), via=via)
                for provider, audiences in tokens.items()),
              *(Grant("admin", provider, via=via)
                for provider in _strings(raw.get("admin"), f"{where}.admin")),
              *(Grant("exchange", issuer, via=via)
                for issuer in _strings(raw.get("exchange"), f"{where}.exchange")),
              *(Grant("oauth", provider, via=via)
                for provider in _strings(raw.get("oauth"), f"{where}.oauth")),
              *(Grant("api-key", identifier, via=via)
                for identifier in _strings(raw.get("credentials"), f"{where}.credentials")))
    return Entry(
        principal=_expect(raw.get("principal", name), str, f"{where}.principal", "a string"),
        kind=kind,
        groups=frozenset(_strings(raw.get("groups"), f"{where}.groups")),
        grants=grants,
        attributes=attributes,
        secret=secret,
    )


def _user(name: str, raw: Any, where: str) -> Entry:
    entry = _entry(name, raw, where, _USER_KEYS, "password", "user", f"user {name}")
    if entry.secret is not None and not is_password_hash(entry.secret):
        raise ConfigError(f"{where}.password: expected a hash from `credenza hash-password` "
                          "(plain passwords are not accepted)")
    return entry


def _hashed(entry: Entry, where: str) -> Entry:
    digest = entry.secret or ""
    if len(digest) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise ConfigError(f"{where}.sha256: expected 64 hex digits from `credenza hash-api-key`")
    return entry


def _api_key(key_id: str, raw: Any, where: str) -> Entry:
    if not API_KEY_ID.match(key_id):
        raise ConfigError(f"{where}: a key id must match {API_KEY_ID.pattern}")
    if kind_of(key_id) is not None:
        raise ConfigError(f"{where}: key ids starting with {key_id[:3]!r} are reserved for the "
                          "token store's keys")
    return _hashed(_entry(key_id, raw, where, _KEY_KEYS, "sha256", "machine",
                          f"API key {key_id}"), where)


def _client(client_id: str, raw: Any, where: str) -> Entry:
    return _hashed(_entry(client_id, raw, where, _CLIENT_KEYS, "sha256", "client",
                          f"OAuth client {client_id}"), where)


def parse_directory(data: Mapping[str, Any], source: str,
                    patterns: tuple[Any, ...] = ()) -> Directory:
    """Check and parse the merged YAML; every error names the file(s) and the entry."""
    unknown = sorted(set(data) - {"users", "api_keys", "oauth_clients", "groups", "accounts"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key {unknown[0]!r} "
                          "(known: accounts, api_keys, groups, oauth_clients, users)")
    raw_users = _expect(data.get("users", {}), dict, f"{source}: users", "a mapping")
    users = {str(name): _user(str(name), raw, f"{source}: users.{name}")
             for name, raw in raw_users.items()}
    raw_keys = _expect(data.get("api_keys", {}), dict, f"{source}: api_keys", "a mapping")
    api_keys = {str(key_id): _api_key(str(key_id), raw, f"{source}: api_keys.{key_id}")
                for key_id, raw in raw_keys.items()}
    raw_clients = _expect(data.get("oauth_clients", {}), dict, f"{source}: oauth_clients",
                          "a mapping")
    clients = {str(client_id): _client(str(client_id), raw, f"{source}: oauth_clients.{client_id}")
               for client_id, raw in raw_clients.items()}
    table = {}
    for group, raw in _expect(data.get("groups", {}), dict, f"{source}: groups",
                              "a mapping").items():
        raw = _expect(raw if raw is not None else {}, dict, f"{source}: groups.{group}",
                      "a mapping")
        if set(raw) - {"grants"}:
            raise ConfigError(f"{source}: groups.{group}: only 'grants' is allowed")
        table[str(group)] = tuple(
            (grant.target, grant.role)
            for grant in _grants(raw.get("grants"), f"{source}: groups.{group}.grants", "")
        )
    accounts = tuple(
        account_from(name, raw, f"{source}: accounts.{name}")
        for name, raw in _expect(data.get("accounts", {}), dict, f"{source}: accounts",
                                 "a mapping").items()
    )
    return Directory(users, api_keys, clients, GroupGrantMap(patterns, table), accounts)


def account_from(name: Any, raw: Any, where: str) -> Account:
    """An Account from its YAML mapping, with a clear error for any bad value."""
    raw = _expect(raw if raw is not None else {}, dict, where, "a mapping")
    unknown = sorted(set(raw) - _ACCOUNT_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} "
                          f"(known: {', '.join(sorted(_ACCOUNT_KEYS))})")
    values = dict(raw)
    if isinstance(values.get("id"), int):  # YAML reads an unquoted account id as a number
        values["id"] = f"{values['id']:012d}"
    if "roles" in values:
        values["roles"] = _strings(values["roles"], f"{where}.roles")
    if "max_duration" not in values and "default_duration" in values:
        values["max_duration"] = max(values["default_duration"], 3600)
    try:
        return Account(str(name), **values)
    except (TypeError, ValueError) as exc:
        # attrs' validators put the message first and the attribute and value after it
        message = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
        raise ConfigError(f"{where}: {message}") from None


def afp_account_catalogue(data: Mapping[str, Any], source: str) -> tuple[Account, ...]:
    """afp-core's account configuration: ``alias: {id: "123456789012"}`` (other keys ignored,
    as afp-core ignored them)."""
    accounts = []
    for alias, raw in data.items():
        raw = _expect(raw if raw is not None else {}, dict, f"{source}: {alias}", "a mapping")
        accounts.append(account_from(alias, {"id": raw.get("id")}, f"{source}: {alias}"))
    return tuple(accounts)

