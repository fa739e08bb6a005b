"""Plugin ``ldap``: identity by LDAP bind, groups from the directory, grants from groups.

Settings (``[plugins.ldap]``):

``url``
    ``ldap://HOST[:PORT]`` or ``ldaps://HOST[:PORT]``.
``start_tls``, ``ca_file``, ``tls_verify``
    StartTLS on ``ldap://``; the CA bundle for either (default: the system's); certificate
    checking (default true; turning it off is for throwaway tests only).
``bind_dn``, ``bind_password``
    The service account used to find users and groups (``env:``/``file:`` references); without
    it, searches are anonymous.
``user_dn_template``
    ``uid={user},ou=people,dc=example,dc=com``: the DN to bind as, no search needed; or
``user_base``, ``user_filter``
    Where and how to search for the user (default filter ``(uid={user})``).
``group_base``, ``group_kinds``, ``group_name_attribute``, ``nested_groups``
    Where groups are; which memberships count: ``groupOfNames`` (member),
    ``groupOfUniqueNames`` (uniqueMember), ``posixGroup`` (memberUid), ``memberOf`` (the
    user's own attribute, as Active Directory keeps it); the attribute that names a group
    (``cn``); whether groups inside groups count (default false).
``group_patterns``, ``[plugins.ldap.group_grants]``
    Group name -> grants: afp-core's regex with named groups ``account`` and ``role``, and/or an
    explicit table ``group = ["ACCOUNT/ROLE", ...]``.
``authoritative``
    Whether a user this directory does not know is refused here (default true) rather than left
    to later plugins; either way the answer does not reveal whether the user exists.
``cache_ttl_seconds``, ``timeout_seconds``, ``pool_size``
    How long groups and successful binds are remembered (60); network timeout (5); pooled
    service connections (4).

Every value put into a filter is escaped, every value put into a DN is escaped as an RDN value.
When the directory cannot be reached the answer is 503, never "no groups"; pooled connections
that broke are replaced, so the plugin recovers by itself when the directory comes back.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

from credenza import metrics
from credenza.config import Section
from credenza.errors import Unauthenticated, Unavailable
from credenza.expiring import ExpiringMap
from credenza.grantmap import GroupGrantMap
from credenza.health import HealthProbe
from credenza.markers import hookimpl
from credenza.models import Grant, Health, IdentityRequest, Principal
from credenza.secrets import VerifiedCache
from credenza.settings import read, setting

try:
    import ldap3
    from ldap3.core import exceptions as ldap_errors
    from ldap3.utils.conv import escape_filter_chars
    from ldap3.utils.dn import escape_rdn, parse_dn
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(f"plugin ldap needs ldap3: pip install 'credenza[ldap]' ({exc})") from exc

NAME = "ldap"
GROUP_KINDS = {
    "groupOfNames": "member",
    "groupOfUniqueNames": "uniqueMember",
    "posixGroup": "memberUid",
    "memberOf": "memberOf",
}
MAX_NESTING = 8
# A bind the directory refused (ldap3 says so one way or the other depending on settings).
BIND_REFUSED = (ldap_errors.LDAPBindError, ldap_errors.LDAPInvalidCredentialsResult)
_T = TypeVar("_T")

# What a broken or unreachable directory raises; anything here is a 503, never "no groups".
UNREACHABLE = (ldap_errors.LDAPCommunicationError, ldap_errors.LDAPSocketOpenError,
               ldap_errors.LDAPSessionTerminatedByServerError, ldap_errors.LDAPStartTLSError,
               ldap_errors.LDAPSSLConfigurationError, ldap_errors.LDAPSocketReceiveError,
               ldap_errors.LDAPSocketSendError, ldap_errors.LDAPResponseTimeoutError,
               ldap_errors.LDAPBusyResult, ldap_errors.LDAPUnavailableResult)


class TtlCache:
    """Values by key for ``ttl`` seconds, bounded (0: none kept)."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self._entries: ExpiringMap[str, Any] = ExpiringMap(max_entries)

    def get_or_load(self, key: str, load: Callable[[], _T]) -> _T:
        found = self._entries.get(key)
        if found is not None:
            return found  # type: ignore[no-any-return]
        value = load()  # failures propagate and are not cached
        if self.ttl > 0:
            self._entries.put(key, value, time.monotonic() + self.ttl)
        return value


class ConnectionPool:
    """Bound service connections, reused. A connection that failed is dropped, not returned,
    and so are the idle ones: they were opened to the same directory, which has gone away or
    restarted, so they are as stale (a retry then opens a new one)."""

    def __init__(self, connect: Callable[[], Any], size: int, timeout: float) -> None:
        self.connect = connect
        self.timeout = timeout
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)
        self.size = size

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        if not self._slots.acquire(timeout=self.timeout):
            raise Unavailable(f"all {self.size} directory connections are busy", retry_after=2)
        try:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = self.connect()
            try:
                yield conn
            except UNREACHABLE:
                with contextlib.suppress(Exception):
                    conn.unbind()
                self.close()
                raise
            self._idle.put(conn)
        finally:
            self._slots.release()

    def close(self) -> None:
        """Unbind every idle connection (those in use are dropped when they fail or return)."""
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                conn.unbind()


@attrs.frozen
class LdapSettings:
    """``[plugins.ldap]``."""

    url: str = setting("The directory: ldap://HOST[:PORT] or ldaps://HOST[:PORT]")
    start_tls: bool = setting("StartTLS on an ldap:// URL", False)
    ca_file: Path | None = setting("The CA certificates (PEM) that sign the directory's", None,
                                   default_text="the system's")
    tls_verify: bool = setting("Verify the directory's certificate", True)
    bind_dn: str | None = setting("The service account that searches (with bind_password)",
                                  None, default_text="anonymous searches")
    bind_password: str | None = setting("The service account's password", None, secret=True)
    user_dn_template: str | None = setting(
        "A user's DN, e.g. uid={user},ou=people,dc=example,dc=com: bind without searching",
        None)
    user_base: str | None = setting("Where to search for users (with user_filter)", None)
    user_filter: str = setting("The user search filter; {user} is the escaped name",
                               "(uid={user})")
    group_base: str | None = setting("Where to search for groups", None)
    group_kinds: tuple[str, ...] = setting(
        f"How membership is recorded: {', '.join(GROUP_KINDS)}", tuple(GROUP_KINDS))
    group_name_attribute: str = setting("The attribute that names a group", "cn")
    nested_groups: bool = setting("Follow groups that are members of groups", False)
    authoritative: bool = setting("A wrong password here is final (401), not a fall-through",
                                  True)
    group_patterns: tuple[str, ...] = setting(
        "Regular expressions with named groups account and role, applied to group names", ())
    group_grants: Mapping[str, tuple[str, ...]] = setting(
        "Group name -> ACCOUNT/ROLE grants", {})
    cache_ttl_seconds: int = setting("How long groups and successful binds are cached (0: "
                                     "never)", 60, min=0, max=3600)
    timeout_seconds: int = setting("Connect and operation timeout", 5, min=1, max=60)
    pool_size: int = setting("Pooled service connections", 4, min=1, max=64)


class LdapDirectory:
    """Users and groups from an LDAP directory."""

    settings = LdapSettings

    def __init__(self, section: Section) -> None:
        settings = read(LdapSettings, section)
        self.url = settings.url
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
            raise section.error("url", f"expected ldap://HOST[:PORT] or ldaps://HOST[:PORT], "
                                f"got {self.url!r}")
        ldaps = parts.scheme == "ldaps"
        self.start_tls = settings.start_tls
        if ldaps and self.start_tls:
            raise section.error("start_tls", "StartTLS is for ldap:// URLs; ldaps:// is TLS "
                                "already")
        ca_file, verify = settings.ca_file, settings.tls_verify
        self.bind_dn = settings.bind_dn
        self._bind_password = settings.bind_password
        if (self.bind_dn is None) != (self._bind_password is None):
            raise section.error("bind_dn", "give both bind_dn and bind_password, or neither")
        self.user_dn_template = settings.user_dn_template
        self.user_base = settings.user_base
        self.user_filter = settings.user_filter
        if self.user_dn_template is None and self.user_base is None:
            raise section.error("user_base", "give user_base (to search for users) or "
                                "user_dn_template (to bind without searching)")
        if self.user_dn_template is not None and "{user}" not in self.user_dn_template:
            raise section.error("user_dn_template", "must contain {user}")
        if "{user}" not in self.user_filter:
            raise section.error("user_filter", "must contain {user}")
        self.group_base = settings.group_base
        self.group_kinds = settings.group_kinds
        unknown = sorted(set(self.group_kinds) - GROUP_KINDS.keys())
        if unknown:
            raise section.error("group_kinds", f"unknown kind {unknown[0]!r} (known: "
                                f"{', '.join(GROUP_KINDS)})")
        searched = [kind for kind in self.group_kinds if kind != "memberOf"]
        if searched and self.group_base is None:
            raise section.error("group_base", f"is required for group kinds {searched}")
        self.group_name_attribute = settings.group_name_attribute
        self.nested = settings.nested_groups
        self.authoritative = settings.authoritative
        self.grant_map = GroupGrantMap.build(settings.group_patterns, settings.group_grants,
                                             section)
        ttl = settings.cache_ttl_seconds
        self.timeout = settings.timeout_seconds
        pool_size = settings.pool_size

        tls = None
        if ldaps or self.start_tls:
            tls = ldap3.Tls(validate=ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
                            ca_certs_file=str(ca_file) if ca_file else None,
                            version=ssl.PROTOCOL_TLS_CLIENT)
        self.server = ldap3.Server(parts.hostname, port=parts.port or (636 if ldaps else 389),
                                   use_ssl=ldaps, tls=tls, get_info=ldap3.NONE,
                                   connect_timeout=self.timeout)
        self.pool = ConnectionPool(lambda: self._connect(self.bind_dn, self._bind_password),
                                   pool_size, self.timeout)
        self.groups_cache = TtlCache(ttl)
        self.verified = VerifiedCache(ttl)
        self.health = HealthProbe("ldap", self._ping)

    # -- connections --------------------------------------------------------------------------

    def _connect(self, user: str | None, password: str | None) -> Any:
        """A bound connection; raises the ldap3 error of the failure."""
        auto_bind = (ldap3.AUTO_BIND_TLS_BEFORE_BIND if self.start_tls
                     else ldap3.AUTO_BIND_NO_TLS)
        # ldap3 shuns an address that failed for a few seconds; with one server there is no
        # other to try, and the directory may be back already: always try it.
        self.server.reset_availability()
        outcome = "ok"
        try:
            with metrics.timed(metrics.LDAP_DURATION):
                return ldap3.Connection(self.server, user=user, password=password,
                                        auto_bind=auto_bind, raise_exceptions=True,
                                        receive_timeout=self.timeout, read_only=True)
        except BIND_REFUSED:
            outcome = "refused"
            raise
        except Exception:
            outcome = "error"
            raise
        finally:
            metrics.LDAP_BINDS.labels(outcome).inc()

    def _unavailable(self, exc: Exception) -> Unavailable:
        error = Unavailable(f"cannot reach the directory at {self.url}: {type(exc).__name__}",
                            retry_after=5)
        self.health.failed(error.detail)
        return error

    def _service(self, operation: Callable[[Any], _T]) -> _T:
        """Run ``operation`` on a pooled service connection; one retry on a fresh connection if
        the pooled one was broken (the directory restarted), then 503."""
        for attempt in (1, 2):
            try:
                with self.pool.connection() as conn:
                    return operation(conn)
            except UNREACHABLE as exc:
                if attempt == 2:
                    raise self._unavailable(exc) from None
            except BIND_REFUSED:
                raise Unavailable("the directory refused the service account's bind "
                                  f"({self.bind_dn})", retry_after=30) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _ping(self) -> None:
        self._service(lambda conn: conn.search(self.user_base or self.group_base or "",
                                               "(objectClass=*)", search_scope=ldap3.BASE,
                                               attributes=[]))

    # -- users --------------------------------------------------------------------------------

    def _user_entry(self, name: str) -> tuple[str, dict[str, list[str]]] | None:
        """(DN, attributes) of the user called ``name``, or None."""
        attributes = ["uid", "cn", "mail", "memberOf"]
        if self.user_dn_template is not None:
            dn = self.user_dn_template.format(user=escape_rdn(name))
            base, scope, search = dn, ldap3.BASE, "(objectClass=*)"
        else:
            base, scope = self.user_base, ldap3.SUBTREE
            search = self.user_filter.format(user=escape_filter_chars(name))

        def find(conn: Any) -> list[Any]:
            try:
                conn.search(base, search, search_scope=scope, attributes=attributes,
                            size_limit=2)
            except (ldap_errors.LDAPNoSuchObjectResult, ldap_errors.LDAPInvalidDNSyntaxResult):
                return []
            except ldap_errors.LDAPSizeLimitExceededResult:
                return [None, None]
            return list(conn.response or [])

        entries = [e for e in self._service(find) if e is None or e.get("type") == "searchResEntry"]
        if len(entries) != 1 or entries[0] is None:
            return None  # unknown, or ambiguous: never guess which entry was meant
        return entries[0]["dn"], dict(entries[0]["attributes"])

    @hookimpl
    def credenza_identify(self, request: IdentityRequest) -> Principal | None:
        if request.basic is None:
            return None
        username, password = request.basic.username, request.basic.password
        principal = self.verified.obtain(lambda: self._bind(username, password),
                                         username, password)
        return principal if isinstance(principal, Principal) else None

    def _bind(self, username: str, password: str) -> Principal | None:
        """The principal whose entry ``username`` names, if ``password`` binds as it."""
        refused = Unauthenticated("invalid user name or password")
        entry = self._user_entry(username)
        if entry is None:
            if self.authoritative:
                raise refused
            return None
        if not password:
            raise refused  # an empty password would be an anonymous bind, which "succeeds"
        dn, attributes = entry
        try:
            self._connect(dn, password).unbind()
        except BIND_REFUSED:
            raise refused from None
        except UNREACHABLE as exc:
            raise self._unavailable(exc) from None
        # The directory's own spelling: "ALICE " and "alice" are one LDAP user, so one principal.
        canonical = (attributes.get("uid") or [username])[0]
        return Principal(canonical, source=NAME, attributes={
            "dn": dn,
            **{key: values[0] for key, values in (("email", attributes.get("mail")),
                                                  ("display_name", attributes.get("cn")))
               if values},
        })

    # -- groups and grants --------------------------------------------------------------------

    @hookimpl
    def credenza_principal_groups(self, principal: Principal) -> list[str]:
        return self.groups_cache.get_or_load(principal.name, lambda: self._groups(principal.name))

    def _groups(self, name: str) -> list[str]:
        entry = self._user_entry(name)
        if entry is None:
            return []
        dn, attributes = entry
        uid = (attributes.get("uid") or [name])[0]
        found: dict[str, str] = {}  # group DN -> name
        if "memberOf" in self.group_kinds:
            for group_dn in attributes.get("memberOf", []):
                found[group_dn] = _first_rdn_value(group_dn)
        clauses = [f"(&(objectClass={kind})({GROUP_KINDS[kind]}="
                   f"{escape_filter_chars(uid if kind == 'posixGroup' else dn)}))"
                   for kind in self.group_kinds if kind != "memberOf"]
        self._search_groups(clauses, found)
        frontier = list(found)  # every group found so far, by search or by memberOf
        depth = 0
        while self.nested and frontier and depth < MAX_NESTING:
            depth += 1
            clauses = [f"(&(objectClass={kind})({GROUP_KINDS[kind]}={escape_filter_chars(g)}))"
                       for g in frontier for kind in ("groupOfNames", "groupOfUniqueNames")
                       if kind in self.group_kinds]
            frontier = self._search_groups(clauses, found)
        return sorted(set(found.values()))

    def _search_groups(self, clauses: list[str], found: dict[str, str]) -> list[str]:
        """Add the groups matching any clause to ``found``; return the DNs new to it."""
        if not clauses or self.group_base is None:
            return []
        search = clauses[0] if len(clauses) == 1 else f"(|{''.join(clauses)})"

        def run(conn: Any) -> list[Any]:
            conn.search(self.group_base, search, search_scope=ldap3.SUBTREE,
                        attributes=[self.group_name_attribute])
            return list(conn.response or [])

        new = []
        for entry in self._service(run):
            if entry.get("type") != "searchResEntry" or entry["dn"] in found:
                continue
            names = entry["attributes"].get(self.group_name_attribute) or []
            found[entry["dn"]] = names[0] if names else _first_rdn_value(entry["dn"])
            new.append(entry["dn"])
        return new

    @hookimpl
    def credenza_grants(self, principal: Principal) -> list[Grant]:
        return self.grant_map.grants(principal.groups)

    # -- operations ---------------------------------------------------------------------------

    @hookimpl
    def credenza_health(self) -> list[Health]:
        return [self.health()]

    @hookimpl
    def credenza_shutdown(self) -> None:
        self.pool.close()


def _first_rdn_value(dn: str) -> str:
    """``cn=ops,ou=groups,...`` -> ``ops`` (the DN itself if it does not parse)."""
    try:
        return str(parse_dn(dn)[0][1])
    except (ldap_errors.LDAPInvalidDnError, IndexError):
        return dn
