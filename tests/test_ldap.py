"""The ldap plugin against a real slapd: binds, every kind of group, mapping, injection attempts,
TLS, and the directory going away and coming back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.errors import Unauthenticated, Unavailable
from credenza.legacy import afp_config
from credenza.models import BasicCredentials, IdentityRequest, Principal
from credenza.wsgi import make_app
from tests.ldap_fixtures import PASSWORDS, SERVICE_DN, SUFFIX, Slapd, running_slapd

PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"


def ldap_settings(slapd: Slapd, **overrides: Any) -> dict[str, Any]:
    settings = {"url": slapd.url, "bind_dn": SERVICE_DN, "bind_password": PASSWORDS["service"],
                "user_base": PEOPLE, "group_base": GROUPS,
                "group_patterns": [r"aws-(?P<account>[a-z]+)-(?P<role>[a-z]+)"]}
    settings.update(overrides)
    return {key: value for key, value in settings.items() if value is not None}


def broker(slapd: Slapd, **overrides: Any) -> Broker:
    return Broker.from_config({"credenza": {"plugins": ["ldap"]},
                               "plugins": {"ldap": ldap_settings(slapd, **overrides)}})


def basic(user: str, password: str) -> IdentityRequest:
    return IdentityRequest(basic=BasicCredentials(user, password))


def plugin(b: Broker) -> Any:
    return b.plugin_manager.get_plugin("ldap")


@pytest.mark.parametrize("mode", [{}, {"user_dn_template": f"uid={{user}},{PEOPLE}",
                                       "user_base": None}])
def test_bind_succeeds_with_the_right_password(slapd: Slapd, mode: dict[str, Any]) -> None:
    alice = broker(slapd, **mode).identify(basic("alice", "alice-pw"))
    assert (alice.name, alice.source) == ("alice", "ldap")
    assert alice.attributes["email"] == "alice@example.com"
    assert alice.attributes["dn"] == f"uid=alice,{PEOPLE}"


@pytest.mark.parametrize(("user", "password"), [
    ("alice", "wrong"), ("alice", ""), ("nobody", "alice-pw"), ("ALICE ", "wrong"),
])
def test_wrong_password_and_unknown_user_look_the_same(slapd: Slapd, user: str,
                                                       password: str) -> None:
    with pytest.raises(Unauthenticated) as info:
        broker(slapd).identify(basic(user, password))
    assert info.value.detail == "invalid user name or password"


def test_the_principal_carries_the_directorys_spelling_of_the_name(slapd: Slapd) -> None:
    # LDAP matches uid without regard to case or surrounding spaces; grants, session names and
    # caches must see one name for one user.
    assert broker(slapd).identify(basic(" ALICE", "alice-pw")).name == "alice"


@pytest.mark.parametrize("user", ["*)(uid=*", "alice)(|(cn=*", "*", "alice*", "al*ce",
                                  "alice)(uid=bob", "\\2a", "alice\x00", "uid=alice,ou=people"])
@pytest.mark.parametrize("mode", [{}, {"user_dn_template": f"uid={{user}},{PEOPLE}",
                                       "user_base": None}])
def test_filter_and_dn_injection_finds_nobody(slapd: Slapd, user: str,
                                              mode: dict[str, Any]) -> None:
    b = broker(slapd, **mode)
    for password in ("alice-pw", "bob-pw"):
        with pytest.raises(Unauthenticated, match="invalid user name or password"):
            b.identify(basic(user, password))
    if user.isprintable():  # a principal can never be named with a NUL in the first place
        assert b.enrich(Principal(user, source="apache")).groups == frozenset()


def test_every_kind_of_group(slapd: Slapd) -> None:
    b = broker(slapd)

    def groups(name: str) -> set[str]:
        return set(b.enrich(Principal(name, source="apache")).groups)

    assert groups("alice") == {"aws-prod-admin", "ops"}          # groupOfNames (+ memberOf)
    assert groups("bob") == {"aws-dev-reader"}                   # posixGroup memberUid
    assert groups("carol") == {"aws-prod-viewer"}                # groupOfUniqueNames
    assert groups("dave") == {"aws-dev-deployer"}                # memberOf only (elsewhere)
    assert groups("erin") == set()
    assert groups("nobody") == set()
    nested = broker(slapd, nested_groups=True)
    assert set(nested.enrich(Principal("alice", source="x")).groups) == {
        "aws-prod-admin", "ops", "platform"}
    only_posix = broker(slapd, group_kinds=["posixGroup"])
    assert only_posix.enrich(Principal("alice", source="x")).groups == frozenset()


def test_groups_map_to_grants_by_pattern_and_table(slapd: Slapd) -> None:
    b = broker(slapd, group_grants={"ops": ["dev/admin"], "platform": ["shared/*"]},
               nested_groups=True)
    alice = b.identify(basic("alice", "alice-pw"))
    assert [(g.target, g.role, g.via) for g in b.grants(alice)] == [
        ("prod", "admin", "group aws-prod-admin (pattern)"),
        ("dev", "admin", "group ops"),
        ("shared", "*", "group platform"),
    ]


def test_http_basic_through_the_app(slapd: Slapd) -> None:
    client = Client(make_app(broker(slapd)))
    me = client.get("/v1/whoami", auth=("carol", "carol-pw")).get_json()
    assert (me["name"], me["source"], me["groups"]) == ("carol", "ldap", ["aws-prod-viewer"])
    refused = client.get("/v1/whoami", auth=("carol", "nope"))
    assert refused.status_code == 401
    assert refused.get_json()["detail"] == "invalid user name or password"


def test_service_connections_are_pooled_and_groups_cached(slapd: Slapd) -> None:
    b = broker(slapd, cache_ttl_seconds=0, pool_size=2)
    pool = plugin(b).pool
    connects = []
    original = pool.connect
    pool.connect = lambda: connects.append(1) or original()
    for _ in range(20):
        b.enrich(Principal("bob", source="x"))
    assert len(connects) == 1  # one bind of the service account for twenty lookups


def test_tls_ldaps_and_starttls(slapd: Slapd) -> None:
    for settings in ({"url": slapd.ldaps_url, "ca_file": str(slapd.ca)},
                     {"start_tls": True, "ca_file": str(slapd.ca)}):
        assert broker(slapd, **settings).identify(basic("bob", "bob-pw")).name == "bob"
    untrusted = broker(slapd, url=slapd.ldaps_url)  # the system CAs do not know the test CA
    with pytest.raises(Unavailable, match=f"cannot reach the directory at {slapd.ldaps_url}"):
        untrusted.identify(basic("bob", "bob-pw"))


def test_a_refused_service_account_is_503(slapd: Slapd) -> None:
    with pytest.raises(Unavailable, match=f"refused the service account's bind \\({SERVICE_DN}"):
        broker(slapd, bind_password="wrong").identify(basic("bob", "bob-pw"))


def test_directory_down_fails_closed_and_recovers_without_restart(tmp_path: Path) -> None:
    with running_slapd(tmp_path) as own:
        b = broker(own, cache_ttl_seconds=0, timeout_seconds=2)
        client = Client(make_app(b))
        assert b.identify(basic("alice", "alice-pw")).name == "alice"
        assert client.get("/status").status_code == 200
        own.stop()
        with pytest.raises(Unavailable, match=f"cannot reach the directory at {own.url}"):
            b.identify(basic("alice", "alice-pw"))
        with pytest.raises(Unavailable):
            b.enrich(Principal("alice", source="apache"))  # never "no groups"
        plugin(b).health.interval = plugin(b).health.retry_interval = 0
        down = client.get("/v1/whoami", auth=("alice", "alice-pw"))
        assert down.status_code == 503 and "Retry-After" in down.headers
        status = client.get("/status")
        assert status.status_code == 503
        assert status.get_json()["message"].startswith(f"ldap: cannot reach the directory at "
                                                       f"{own.url}")
        own.start()
        assert b.identify(basic("alice", "alice-pw")).name == "alice"
        assert b.enrich(Principal("bob", source="x")).groups == {"aws-dev-reader"}
        assert client.get("/status").status_code == 200


def test_cached_groups_and_binds_answer_within_their_ttl(tmp_path: Path) -> None:
    with running_slapd(tmp_path) as own:
        b = broker(own, cache_ttl_seconds=60)
        alice = b.identify(basic("alice", "alice-pw"))
        groups = b.enrich(alice).groups
        own.stop()
        assert b.identify(basic("alice", "alice-pw")).name == "alice"
        assert b.enrich(alice).groups == groups
        with pytest.raises(Unavailable):  # a wrong password is never answered from the cache
            b.identify(basic("alice", "other"))


def test_legacy_afp_ldap_provider_works_unchanged(slapd: Slapd, tmp_path: Path) -> None:
    config_dir, accounts_dir = tmp_path / "config", tmp_path / "accounts"
    config_dir.mkdir()
    accounts_dir.mkdir()
    (config_dir / "config.yaml").write_text(f"""
api: {{user_identification: {{environment_field: REMOTE_USER}}}}
provider:
  module: afp_core.provider.ldap_provider
  class: Provider
  regex: '^aws-(?P<account>\\w+)-(?P<role>\\w+)$'
  ldap_uri: {slapd.url}
  ldap_base_users: {PEOPLE}
  ldap_base_groups: {GROUPS}
  ldap_bind_dn: {SERVICE_DN}
  ldap_bind_password: {PASSWORDS["service"]}
""")
    (accounts_dir / "accounts.yaml").write_text("prod: {id: '111111111111'}\n"
                                                "dev: {id: '222222222222'}\n")
    config = afp_config({"CONFIG_PATH": str(config_dir), "ACCOUNT_CONFIG_PATH": str(accounts_dir)})
    client = Client(make_app(Broker.from_config(config)))
    for user, expected in (("alice", {"prod": ["admin"]}), ("bob", {"dev": ["reader"]}),
                           ("carol", {"prod": ["viewer"]}), ("erin", {})):
        response = client.get("/account", environ_base={"REMOTE_USER": user})
        assert response.status_code == 200
        assert response.get_json() == expected, user
        assert response.headers["X-Username"] == user


def test_after_a_directory_restart_no_request_fails(tmp_path: Path) -> None:
    """Every pooled connection died with the directory: the first broken one found drops the
    idle ones, and the retry runs on a new connection (no burst of false 503s)."""
    with running_slapd(tmp_path) as own:
        b = broker(own, cache_ttl_seconds=0, pool_size=4)
        alice = b.identify(basic("alice", "alice-pw"))
        pool = plugin(b).pool
        with pool.connection(), pool.connection(), pool.connection():
            pass  # three idle service connections
        assert b.enrich(alice).groups
        own.stop()
        own.start()
        for _ in range(3):
            assert b.enrich(alice).groups  # each of these once burned two stale connections


def test_status_shows_at_once_what_a_request_ran_into(tmp_path: Path) -> None:
    with running_slapd(tmp_path) as own:
        b = broker(own, cache_ttl_seconds=0)
        client = Client(make_app(b))
        alice = b.identify(basic("alice", "alice-pw"))
        assert client.get("/status").status_code == 200  # healthy, and cached as such
        own.stop()
        with pytest.raises(Unavailable):
            b.enrich(alice)
        status = client.get("/status")
        assert status.status_code == 503  # not the healthy answer of a moment ago
        assert "cannot reach the directory" in status.get_json()["message"]
        own.start()
        assert b.enrich(alice).groups
        plugin(b).health.retry_interval = 0  # a failed state is asked again, not kept 15 s
        assert client.get("/status").status_code == 200
