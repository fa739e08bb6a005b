"""The models: validators for invariants, secrets never in repr, request parsing."""

from __future__ import annotations

import base64
import datetime as dt

import pytest

from credenza.models import (
    Account,
    AwsCredentials,
    BasicCredentials,
    Grant,
    IdentityRequest,
    IssuedToken,
    Principal,
    TokenRecord,
    utcnow,
)


def test_secrets_never_reach_repr() -> None:
    creds = AwsCredentials("ASIAEXAMPLE", "SECRETKEY", "SESSIONTOKEN", utcnow())
    basic = BasicCredentials("alice", "hunter2")
    request = IdentityRequest(environ={"HTTP_AUTHORIZATION": "x"}, bearer="BEARERTOKEN",
                              api_key="APIKEY", basic=basic)
    now = utcnow()
    record = TokenRecord("t1", "jwt", "p", "custom", "c", "user", "alice", now, now)
    token = IssuedToken(record, "JWTVALUE", "SHORTTOKEN")
    text = " ".join(repr(obj) for obj in (creds, basic, request, token))
    for secret in ("SECRETKEY", "SESSIONTOKEN", "hunter2", "BEARERTOKEN", "APIKEY", "JWTVALUE",
                   "SHORTTOKEN", "HTTP_AUTHORIZATION"):
        assert secret not in text
    assert "ASIAEXAMPLE" in text


@pytest.mark.parametrize("kwargs", [
    {"id": "12345"}, {"partition": "aws-mars"}, {"default_duration": 60},
    {"max_duration": 50000}, {"default_duration": 7200, "max_duration": 3600},
    {"role_path": "no-slashes"},
])
def test_account_invariants(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Account("prod", **kwargs)


def test_account_accepts_valid_values() -> None:
    account = Account("prod", id="123456789012", partition="aws-cn", role_path="/team/",
                      default_duration=3600, max_duration=43200)
    assert account.max_duration == 43200


def test_datetimes_must_be_aware_utc() -> None:
    with pytest.raises(ValueError, match="timezone-aware UTC"):
        AwsCredentials("A", "B", "C", dt.datetime(2030, 1, 1))
    cet = dt.timezone(dt.timedelta(hours=1))
    with pytest.raises(ValueError, match="timezone-aware UTC"):
        AwsCredentials("A", "B", "C", dt.datetime(2030, 1, 1, tzinfo=cet))


def test_grants() -> None:
    with pytest.raises(ValueError, match="needs a role"):
        Grant("aws", "prod")
    with pytest.raises(ValueError):
        Grant("Not A Kind", "x")
    wildcard = Grant.aws("prod", "*")
    assert wildcard.permits("aws", "prod", "admin")
    assert not wildcard.permits("aws", "dev", "admin")
    assert not wildcard.permits("token", "prod")
    # `via` explains, it does not distinguish
    assert Grant.aws("a", "r", via="x") == Grant.aws("a", "r", via="y")


def test_principal_groups_merge_and_a_lone_string_is_one_group() -> None:
    principal = Principal("alice", source="t", groups="ops")
    assert principal.groups == {"ops"}
    assert principal.with_groups(["dev"]).groups == {"ops", "dev"}
    with pytest.raises(ValueError):
        Principal("bad\nname", source="t")


def basic_header(raw: bytes) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.parametrize(("environ", "basic", "bearer", "api_key"), [
    (basic_header(b"alice:pa:ss"), ("alice", "pa:ss"), None, None),
    (basic_header("jörg:pw".encode()), ("jörg", "pw"), None, None),
    (basic_header(b"no-colon"), None, None, None),
    (basic_header(b":pw"), None, None, None),
    ({"HTTP_AUTHORIZATION": "Basic !!notbase64"}, None, None, None),
    ({"HTTP_AUTHORIZATION": "Bearer   abc.def  "}, None, "abc.def", None),
    ({"HTTP_AUTHORIZATION": "bearer"}, None, None, None),
    ({"HTTP_X_API_KEY": "k1"}, None, None, "k1"),
    ({}, None, None, None),
])
def test_identity_request_parsing(environ, basic, bearer, api_key) -> None:
    request = IdentityRequest.from_environ({**environ, "REMOTE_ADDR": "127.0.0.1"})
    got = (request.basic.username, request.basic.password) if request.basic else None
    assert (got, request.bearer, request.api_key) == (basic, bearer, api_key)
    assert request.remote_addr == "127.0.0.1"
