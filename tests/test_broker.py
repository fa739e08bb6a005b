"""The broker path: identify -> groups -> grants -> authorize -> issue -> observers."""

from __future__ import annotations

import datetime as dt

import pytest

from credenza import hookimpl
from credenza.broker import Broker
from credenza.errors import Forbidden, NotConfigured, NotFound, Unauthenticated
from credenza.models import (
    Account,
    AwsCredentials,
    AwsOptions,
    Grant,
    Health,
    IdentityRequest,
    Principal,
    utcnow,
)


class Directory:
    """An org's identity and grant source, as an embedding application would register it."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    @hookimpl
    def credenza_identify(self, request):
        user = request.environ.get("HTTP_X_USER")
        if user is None:
            return None
        if user == "mallory":
            raise Unauthenticated("mallory's badge is revoked")
        return Principal(user, source="directory", groups=["staff"])

    @hookimpl
    def credenza_principal_groups(self, principal):
        return ["ops"] if principal.name == "alice" else []

    @hookimpl
    def credenza_accounts(self):
        return [Account("prod", id="111111111111"), Account("dev", id="222222222222")]

    @hookimpl
    def credenza_grants(self, principal):
        if "ops" in principal.groups:
            yield Grant.aws("prod", "admin", via="group ops")
            yield Grant.aws("dev", "*", via="group ops")
        yield Grant.aws("dev", "reader", via="everyone")

    @hookimpl
    def credenza_issued(self, event):
        self.events.append(("issued", event))

    @hookimpl
    def credenza_denied(self, event):
        self.events.append(("denied", event))


class SecondSource:
    """Later in line: merged hooks add to the first, firstresult hooks are not reached."""

    @hookimpl
    def credenza_identify(self, request):
        return Principal("second", source="second")

    @hookimpl
    def credenza_grants(self, principal):
        return [Grant.aws("dev", "reader", via="duplicate"), Grant("token", "ci")]

    @hookimpl
    def credenza_accounts(self):
        return [Account("prod", id="999999999999")]  # the first plugin's prod wins


class Issuer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @hookimpl
    def credenza_issue_aws(self, principal, account, grant, options):
        self.calls.append((account.id, grant.role))
        return AwsCredentials(f"ASIA{principal.name.upper()}", "secret", "token",
                              utcnow() + dt.timedelta(hours=1), account_id=account.id)


class BrokenObserver:
    @hookimpl
    def credenza_issued(self, event):
        raise RuntimeError("audit sink down")


def broker(*plugins: object) -> Broker:
    return Broker.from_config({"credenza": {"plugins": []}}, plugins=plugins)


def request(user: str | None) -> IdentityRequest:
    return IdentityRequest(environ={"HTTP_X_USER": user} if user else {})


def test_identify_enriches_groups_from_every_source() -> None:
    alice = broker(Directory()).identify(request("alice"))
    assert (alice.name, alice.source, alice.groups) == ("alice", "directory", {"staff", "ops"})


def test_nobody_recognised_is_unauthenticated_with_challenges() -> None:
    with pytest.raises(Unauthenticated) as info:
        broker(Directory()).identify(request(None))
    challenge = info.value.headers()["WWW-Authenticate"]
    assert challenge == 'Basic realm="credenza", Bearer realm="credenza"'


def test_wrong_credentials_fail_closed_without_asking_further() -> None:
    directory = Directory()
    # SecondSource would identify anyone; the directory's refusal must stand.
    with pytest.raises(Unauthenticated, match="revoked"):
        broker(directory, SecondSource()).identify(request("mallory"))
    (kind, event), = directory.events
    assert (kind, event.principal, event.reason) == ("denied", None, "mallory's badge is revoked")


def test_grants_are_merged_and_deduplicated_in_plugin_order() -> None:
    b = broker(Directory(), SecondSource())
    grants = b.grants(b.identify(request("alice")))
    assert [(g.kind, g.target, g.role) for g in grants] == [
        ("aws", "prod", "admin"), ("aws", "dev", "*"), ("aws", "dev", "reader"),
        ("token", "ci", None),
    ]
    assert b.accounts()["prod"].id == "111111111111"


def test_issue_walks_the_whole_path() -> None:
    directory, issuer = Directory(), Issuer()
    b = broker(directory, issuer)
    alice = b.identify(request("alice"))
    account, creds = b.issue_aws(alice, "dev", "deployer", AwsOptions())  # via the dev/* grant
    assert (account.id, creds.access_key_id) == ("222222222222", "ASIAALICE")
    assert issuer.calls == [("222222222222", "deployer")]
    (kind, event), = directory.events
    assert (kind, event.principal.name, event.target, event.role) == ("issued", "alice", "dev",
                                                                       "deployer")
    assert event.expires_at == creds.expiration


def test_no_grant_is_forbidden_and_observed_and_issues_nothing() -> None:
    directory, issuer = Directory(), Issuer()
    b = broker(directory, issuer)
    bob = b.identify(request("bob"))
    with pytest.raises(Forbidden, match="bob has no grant for aws prod role admin"):
        b.issue_aws(bob, "prod", "admin", AwsOptions())
    assert issuer.calls == []
    assert [kind for kind, _ in directory.events] == ["denied"]


def test_unknown_account_and_missing_issuer() -> None:
    b = broker(Directory())
    alice = b.identify(request("alice"))
    with pytest.raises(NotFound, match="unknown account 'staging'"):
        b.issue_aws(alice, "staging", "admin", AwsOptions())
    with pytest.raises(NotConfigured, match="no enabled plugin issues AWS credentials"):
        b.issue_aws(alice, "prod", "admin", AwsOptions())


def test_a_failing_observer_neither_fails_the_request_nor_silences_others() -> None:
    directory = Directory()
    b = broker(BrokenObserver(), directory, Issuer())
    b.issue_aws(b.identify(request("alice")), "prod", "admin", AwsOptions())
    assert [kind for kind, _ in directory.events] == ["issued"]


def test_health_reports_each_check_and_a_crashing_one() -> None:
    class Healthy:
        @hookimpl
        def credenza_health(self):
            return [Health("store", ok=True), Health("sts", ok=False, detail="timed out")]

    class Crashing:
        @hookimpl
        def credenza_health(self):
            raise OSError("boom")

    report = broker(Healthy(), Crashing()).health()
    assert [(h.component, h.ok, h.detail) for h in report] == [
        ("store", True, "OK"), ("sts", False, "timed out"),
        ("app:Crashing", False, "health check raised OSError"),
    ]


def test_close_reaches_every_plugin() -> None:
    closed = []

    class Pool:
        @hookimpl
        def credenza_shutdown(self):
            closed.append(True)

    with broker(Pool(), Pool()):
        pass
    assert closed == [True, True]


class DeclaredRoles:
    """A catalogue whose accounts declare their roles, and wildcard grants."""

    @hookimpl
    def credenza_identify(self, request):
        return Principal(request.environ["HTTP_X_USER"], source="test")

    @hookimpl
    def credenza_accounts(self):
        return [Account("prod", id="111111111111", roles=("admin", "reader")),
                Account("dev", id="222222222222", roles=("deployer",)),
                Account("sandbox", id="333333333333")]

    @hookimpl
    def credenza_grants(self, principal):
        return {"alice": [Grant.aws("prod", "*")],
                "bob": [Grant.aws("*", "reader")],
                "carol": [Grant.aws("*", "*"), Grant.aws("sandbox", "tinker")]}[principal.name]


@pytest.mark.parametrize(("user", "listed"), [
    ("alice", {"prod": ["admin", "reader"]}),
    ("bob", {"dev": ["reader"], "prod": ["reader"], "sandbox": ["reader"]}),
    ("carol", {"dev": ["deployer"], "prod": ["admin", "reader"], "sandbox": ["tinker"]}),
])
def test_wildcard_grants_are_listed_by_the_roles_accounts_declare(user: str,
                                                                  listed: dict) -> None:
    b = broker(DeclaredRoles())
    assert b.aws_roles(b.identify(request(user))) == listed


def test_declared_roles_are_role_names() -> None:
    with pytest.raises(ValueError, match=r"'\.\./admin' is not an IAM role name"):
        Account("prod", roles=("../admin",))
