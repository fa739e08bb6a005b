"""The static plugin's files, secrets and group mapping; afp-core's legacy configuration."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from werkzeug.test import Client

from credenza import hookimpl
from credenza.broker import Broker
from credenza.config import Config
from credenza.errors import ConfigError, Unauthenticated
from credenza.legacy import afp_config, configure_afp_logging
from credenza.models import BasicCredentials, IdentityRequest, Principal
from credenza.secrets import sha256_hex, verify_password
from credenza.wsgi import LazyApplication


def broker_for(tmp_path: Path, yaml_text: str, *extra: object, **static: object) -> Broker:
    (tmp_path / "static.yaml").write_text(yaml_text)
    return Broker.from_config({"credenza": {"plugins": ["static"]},
                               "plugins": {"static": {"files": [str(tmp_path / "static.yaml")],
                                                      **static}}}, plugins=extra)


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("users: {alice: {password: hunter2}}",
     "users.alice.password: expected a hash from `credenza hash-password` (plain passwords are "
     "not accepted)"),
    ("users: {alice: {pasword: x}}", "users.alice: unknown key 'pasword' (known: admin, "
                                     "attributes, credentials, exchange, grants, groups, kind, "
                                     "oauth, password, tokens)"),
    ("users: {alice: {tokens: [p]}}", "users.alice.tokens: expected a mapping of provider -> "
                                      "audiences"),
    ("oauth_clients: {app: {sha256: abc}}", "oauth_clients.app.sha256: expected 64 hex digits"),
    ("users: {alice: {grants: [prod]}}", "users.alice.grants: expected ACCOUNT/ROLE, got 'prod'"),
    ("users: {alice: {groups: ops}}", "users.alice.groups: expected a list of strings"),
    ("users: {alice: {kind: robot}}", "users.alice.kind: expected one of client, machine, "
                                      "service, user"),
    ("api_keys: {ci: {sha256: abc}}", "api_keys.ci.sha256: expected 64 hex digits"),
    ("api_keys: {ci: {principal: x}}", "api_keys.ci.sha256: expected 64 hex digits"),
    ("api_keys: {'bad id': {sha256: x}}", "api_keys.bad id: a key id must match"),
    ("accounts: {prod: {id: '12'}}", "accounts.prod: 'id' must match regex"),
    ("accounts: {prod: {region: x, colour: red}}", "accounts.prod: unknown key 'colour'"),
    ("accounts: {prod: {default_duration: 60}}", "accounts.prod: 'default_duration' must be >= "
                                                 "900"),
    ("groups: {ops: {members: [a]}}", "groups.ops: only 'grants' is allowed"),
    ("userz: {}", "unknown top-level key 'userz' (known: accounts, api_keys, groups, "
                  "oauth_clients, users)"),
    ("users: [alice]", "users: expected a mapping"),
    ("users: {alice: {password: [", "not valid YAML"),
])
def test_file_errors_name_the_file_and_the_entry(tmp_path: Path, yaml_text: str,
                                                 expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        broker_for(tmp_path, yaml_text)
    assert str(tmp_path / "static.yaml") in str(info.value)
    assert expected in str(info.value)


def test_a_bad_group_pattern_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        broker_for(tmp_path, "{}", group_patterns=[r"aws-(?P<acc>\w+)"])
    assert "[plugins.static] group_patterns: 'aws-(?P<acc>\\\\w+)' needs the named groups " \
           "(?P<account>...) and (?P<role>...)" in str(info.value)


def test_directories_merge_in_lexical_order(tmp_path: Path, password_hash: str) -> None:
    folder = tmp_path / "static.d"
    folder.mkdir()
    (folder / "20-grants.yaml").write_text("users: {alice: {grants: ['dev/reader']}}\n"
                                           "accounts: {dev: {id: 222222222222}}\n")
    (folder / "10-users.yaml").write_text(f"users: {{alice: {{password: '{password_hash}', "
                                          "grants: ['prod/admin']}}\n")
    (folder / "30-ignored.txt").write_text("not yaml: [")
    broker = Broker.from_config({"credenza": {"plugins": ["static"]},
                                 "plugins": {"static": {"files": [str(folder)]}}})
    alice = broker.identify(IdentityRequest(basic=_basic("alice", "PASSWORD")))
    assert [(g.target, g.role) for g in broker.grants(alice)] == [("prod", "admin"),
                                                                  ("dev", "reader")]
    assert broker.accounts()["dev"].id == "222222222222"  # an unquoted id stays 12 digits


def _basic(user: str, password: str):
    from credenza.models import BasicCredentials
    return BasicCredentials(user, password)


def test_passwords_api_keys_and_users_without_password(tmp_path: Path, password_hash: str) -> None:
    broker = broker_for(tmp_path, f"""
users:
  alice: {{password: "{password_hash}"}}
  sso-user: {{grants: ["prod/admin"]}}
api_keys:
  ci: {{sha256: "{sha256_hex('s3cret')}", principal: ci-bot, grants: ["prod/deployer"]}}
""")
    alice = broker.identify(IdentityRequest(basic=_basic("alice", "PASSWORD")))
    assert (alice.name, alice.source, alice.kind) == ("alice", "static", "user")
    for _ in range(2):  # the second check may come from the verified cache: still refused
        with pytest.raises(Unauthenticated, match="invalid user name or password"):
            broker.identify(IdentityRequest(basic=_basic("alice", "password")))
    with pytest.raises(Unauthenticated, match="invalid credentials"):
        broker.identify(IdentityRequest(basic=_basic("sso-user", "anything")))
    bot = broker.identify(IdentityRequest(api_key="ci.s3cret"))
    assert (bot.name, bot.kind, bot.attributes["api_key_id"]) == ("ci-bot", "machine", "ci")
    assert [(g.target, g.role) for g in broker.grants(bot)] == [("prod", "deployer")]
    with pytest.raises(Unauthenticated, match="invalid API key"):
        broker.identify(IdentityRequest(api_key="ci.wrong"))
    with pytest.raises(Unauthenticated, match="invalid credentials"):
        broker.identify(IdentityRequest(api_key="other.s3cret"))


def test_a_burst_of_one_users_requests_checks_the_password_once(
        tmp_path: Path, password_hash: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests presenting the same password while its check (scrypt, ~50 ms of CPU) is under
    way wait for that check: a burst on a fresh worker ran it once per thread. A wrong
    password is refused to every caller of the burst."""
    broker = broker_for(tmp_path, f'users:\n  alice: {{password: "{password_hash}"}}\n')
    checks: list[str] = []

    def counted(password: str, stored: str) -> bool:
        checks.append(password)
        return verify_password(password, stored)

    monkeypatch.setattr("credenza.plugins.static.verify_password", counted)

    def burst(password: str) -> list[object]:
        start, answers = threading.Barrier(16), []

        def identify() -> None:
            start.wait(10)
            try:
                answers.append(broker.identify(IdentityRequest(basic=_basic("alice", password))))
            except Unauthenticated as exc:
                answers.append(exc)

        threads = [threading.Thread(target=identify) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        return answers

    assert [answer.name for answer in burst("PASSWORD")] == ["alice"] * 16
    assert checks == ["PASSWORD"]
    refused = burst("wrong")
    assert len(refused) == 16 and all(isinstance(a, Unauthenticated) for a in refused)


class DirectoryGroups:
    """Groups from elsewhere (a directory), mapped by the static plugin's patterns."""

    @hookimpl
    def credenza_identify(self, request):
        user = request.environ.get("REMOTE_USER")
        return Principal(user, source="apache") if user else None

    @hookimpl
    def credenza_principal_groups(self, principal):
        return ["aws-prod-admin", "aws-dev-reader", "unrelated", "aws-broken"]


def test_group_patterns_apply_to_groups_from_any_source(tmp_path: Path) -> None:
    broker = broker_for(tmp_path, "groups: {unrelated: {grants: ['dev/auditor']}}",
                        DirectoryGroups(),
                        group_patterns=[r"aws-(?P<account>[a-z]+)-(?P<role>[a-z]+)"])
    carol = broker.identify(IdentityRequest(environ={"REMOTE_USER": "carol"}))
    assert [(g.target, g.role, g.via) for g in broker.grants(carol)] == [
        ("dev", "reader", "group aws-dev-reader (pattern)"),
        ("prod", "admin", "group aws-prod-admin (pattern)"),
        ("dev", "auditor", "group unrelated"),
    ]


def write_legacy(tmp_path: Path, provider: str = "") -> dict[str, str]:
    config_dir = tmp_path / "config"
    accounts_dir = tmp_path / "accounts"
    config_dir.mkdir()
    accounts_dir.mkdir()
    (config_dir / "10-api.yaml").write_text(
        "api: {user_identification: {environment_field: REMOTE_USER}}\n"
        "aws: {access_key: AKIAEXAMPLE, secret_key: legacysecret}\n"
        "log_level: warning\n")
    (config_dir / "20-provider.yaml").write_text(provider)
    (accounts_dir / "prod.yaml").write_text("prod-account: {id: '123456789012'}\n")
    (accounts_dir / "test.yaml").write_text("test-account: {id: 210987654321, comment: x}\n")
    return {"CONFIG_PATH": str(config_dir), "ACCOUNT_CONFIG_PATH": str(accounts_dir)}


LDAP_PROVIDER = """
provider:
  module: afp_core.provider.ldap_provider
  class: Provider
  regex: '^aws-(?P<account>[\\w-]+?)-(?P<role>\\w+)$'
  ldap_uri: ldap://ldap.example.com
  ldap_base_users: ou=people,dc=example,dc=com
  ldap_base_groups: ou=groups,dc=example,dc=com
  ldap_bind_dn: cn=afp,dc=example,dc=com
  ldap_bind_password: secret
"""


def test_legacy_configuration_translates_unchanged(tmp_path: Path) -> None:
    config = afp_config(write_legacy(tmp_path, LDAP_PROVIDER))
    assert config.plugins == ("environ", "static", "ldap", "aws-sts")
    assert config.log_level == "WARNING"
    assert dict(config.section("environ").values) == {"field": "REMOTE_USER", "kind": "user"}
    assert config.section("static").values["group_patterns"] == [
        r"^aws-(?P<account>[\w-]+?)-(?P<role>\w+)$"]
    assert dict(config.section("ldap").values) == {
        "url": "ldap://ldap.example.com", "user_base": "ou=people,dc=example,dc=com",
        "group_base": "ou=groups,dc=example,dc=com", "bind_dn": "cn=afp,dc=example,dc=com",
        "bind_password": "secret"}
    assert dict(config.section("aws-sts").values) == {"access_key_id": "AKIAEXAMPLE",
                                                      "secret_access_key": "legacysecret"}


def test_legacy_errors(tmp_path: Path) -> None:
    settings = write_legacy(tmp_path, "provider: {module: afp_core.provider.crowd}\n")
    with pytest.raises(ConfigError, match=r"provider.module: 'afp_core.provider.crowd' is not "
                                          "supported"):
        afp_config(settings)
    with pytest.raises(ConfigError, match="ACCOUNT_CONFIG_PATH must be too"):
        afp_config({"CONFIG_PATH": settings["CONFIG_PATH"]})


class LegacyGroups:
    @hookimpl
    def credenza_principal_groups(self, principal):
        return ["aws-prod-account-admin", "aws-test-account-viewer"]


def test_legacy_regex_and_accounts_drive_grants(tmp_path: Path) -> None:
    settings = write_legacy(tmp_path, "provider: {regex: '^aws-(?P<account>[\\w-]+?)-"
                                      "(?P<role>\\w+)$'}\n")
    broker = Broker.from_config(afp_config(settings), plugins=[LegacyGroups()])
    dave = broker.identify(IdentityRequest(environ={"REMOTE_USER": "dave"}))
    assert broker.aws_roles(dave) == {"prod-account": ["admin"], "test-account": ["viewer"]}
    assert broker.accounts()["test-account"].id == "210987654321"


def test_legacy_environ_of_apache_setenv_reaches_the_lazy_application(tmp_path: Path) -> None:
    settings = write_legacy(tmp_path)
    client = Client(LazyApplication())
    response = client.get("/account", environ_base={**settings, "REMOTE_USER": "erin"})
    assert response.status_code == 200
    assert response.headers["X-Username"] == "erin"
    assert response.get_json() == {}
    unauthenticated = client.get("/account")  # same process, same loaded configuration
    assert unauthenticated.status_code == 401
    assert unauthenticated.get_json()["message"] == "no valid credentials were presented"


def test_legacy_logging_handler(tmp_path: Path) -> None:
    settings = write_legacy(tmp_path)
    log_file = tmp_path / "afp.log"
    (Path(settings["CONFIG_PATH"]) / "30-logging.yaml").write_text(
        f"logging_handler: {{module: logging, class: FileHandler, args: ['{log_file}']}}\n"
        "log_format: 'afp %(levelname)s %(message)s'\n")
    root = logging.getLogger()
    before, level = list(root.handlers), root.level
    try:
        configure_afp_logging(settings)
        logging.getLogger("credenza.test").warning("hello")
    finally:
        for handler in set(root.handlers) - set(before):
            handler.close()
            root.removeHandler(handler)
        root.setLevel(level)
    assert log_file.read_text() == "afp WARNING hello\n"


def test_hash_commands(tmp_path: Path) -> None:
    hashed = subprocess.run([sys.executable, "-m", "credenza", "hash-password"],
                            input="correct horse\n", capture_output=True, text=True,
                            check=True, timeout=60).stdout.strip()
    assert verify_password("correct horse", hashed)
    assert not verify_password("wrong", hashed)
    made = subprocess.run([sys.executable, "-m", "credenza", "hash-api-key", "deploy-bot"],
                          capture_output=True, text=True, check=True, timeout=60)
    key = made.stderr.split(": ")[-1].strip()
    assert key.startswith("deploy-bot.")
    (tmp_path / "keys.yaml").write_text(made.stdout)
    broker = Broker.from_config(Config.from_mapping({"credenza": {"plugins": ["static"]},
                                                     "plugins": {"static": {"files": [
                                                         str(tmp_path / "keys.yaml")]}}}))
    assert broker.identify(IdentityRequest(api_key=key)).name == "deploy-bot"
    client = subprocess.run([sys.executable, "-m", "credenza", "hash-api-key", "pam-app",
                             "--client"], capture_output=True, text=True, check=True,
                            timeout=60)
    assert client.stdout.startswith("oauth_clients:\n  pam-app:\n")
    secret = client.stderr.split(": ")[-1].strip()
    (tmp_path / "keys.yaml").write_text(client.stdout)
    broker = Broker.from_config(Config.from_mapping({"credenza": {"plugins": ["static"]},
                                                     "plugins": {"static": {"files": [
                                                         str(tmp_path / "keys.yaml")]}}}))
    principal = broker.identify(IdentityRequest(basic=BasicCredentials("pam-app", secret)))
    assert (principal.name, principal.kind) == ("pam-app", "client")


def test_a_missing_file_names_the_setting_that_points_at_it(tmp_path: Path) -> None:
    config = tmp_path / "credenza.toml"
    config.write_text("[credenza]\nplugins = ['static']\n[plugins.static]\nfiles = ['nope.yaml']\n")
    with pytest.raises(ConfigError) as info:
        Broker.from_config(config)
    assert str(info.value) == (f"{config}: [plugins.static] files: {tmp_path / 'nope.yaml'}: "
                               "no such file or directory")


def test_accounts_may_declare_their_roles(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("accounts:\n  prod: {id: '111111111111', roles: [admin]}\n"
                                     "  dev: {id: '222222222222', roles: [../x]}\n")
    config = tmp_path / "c.toml"
    config.write_text(f"[credenza]\nplugins = ['static']\n[plugins.static]\n"
                      f"files = ['{tmp_path / 's.yaml'}']\n")
    with pytest.raises(ConfigError, match=r"accounts\.dev: roles: '\.\./x' is not an IAM role"):
        Broker.from_config(config)
