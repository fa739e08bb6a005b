"""JWTs: verifiable by plain PyJWT from the published JWKS, rotation, and the attacks that must
fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.test import Client

from credenza import hookimpl
from credenza.broker import Broker
from credenza.errors import BadRequest, ConfigError, Conflict, Forbidden, Unauthenticated
from credenza.jwtcheck import VerifiedTokens
from credenza.models import Grant, Principal, TokenSpec
from credenza.plugins.sql import tokens
from credenza.wsgi import make_app

AUDIENCE = "https://api.example.com"
ISSUER = "https://credenza.test"


class Grants:
    @hookimpl
    def credenza_grants(self, principal):
        grants = [Grant("token", "build-bot"), Grant("token", "rsa-bot"),
                  Grant("token", "ed-bot")]
        if principal.name == "root":
            grants.append(Grant("admin", "*"))
        return grants


def make_broker(tmp_path: Path) -> Broker:
    providers = {name: {"audiences": [AUDIENCE], "algorithm": alg, "max_lifetime_seconds": 600}
                 for name, alg in (("build-bot", "ES256"), ("rsa-bot", "RS256"),
                                   ("ed-bot", "EdDSA"))}
    return Broker.from_config({
        "credenza": {"plugins": ["jwt", "sql"], "data_dir": str(tmp_path / "data")},
        "plugins": {"jwt": {"issuer": ISSUER, "providers": providers}, "sql": {}},
    }, plugins=[Grants()])


@pytest.fixture
def broker(tmp_path: Path) -> Broker:
    return make_broker(tmp_path)


def issuer_of(broker: Broker) -> Any:
    return broker.plugin_manager.get_plugin("jwt")


CI = Principal("ci", source="test", kind="client")


def issue(broker: Broker, provider: str = "build-bot", **kwargs: Any):
    return broker.issue_token(CI, TokenSpec(provider, "job", [AUDIENCE], **kwargs))


def verify_with_jwks_only(client: Client, token: str) -> dict[str, Any]:
    """What any relying party does: fetch the JWKS, pick the key by kid, verify."""
    jwks = pyjwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").get_json())
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    return pyjwt.decode(token, key.key, algorithms=[key.algorithm_name], audience=AUDIENCE,
                        issuer=ISSUER)


@pytest.mark.parametrize(("provider", "alg"), [("build-bot", "ES256"), ("rsa-bot", "RS256"),
                                                ("ed-bot", "EdDSA")])
def test_plain_pyjwt_verifies_with_the_published_jwks(broker: Broker, provider: str,
                                                      alg: str) -> None:
    token = issue(broker, provider)
    header = pyjwt.get_unverified_header(token.value)
    assert header == {"alg": alg, "kid": header["kid"], "typ": "JWT"}
    claims = verify_with_jwks_only(Client(make_app(broker)), token.value)
    assert claims["jti"] == token.record.token_id and claims["sub"] == "job"


def test_rotation_keeps_older_tokens_valid_until_their_key_retires(broker: Broker,
                                                                   tmp_path: Path) -> None:
    client = Client(make_app(broker))
    keyring = issuer_of(broker).keyring
    keyring.RELOAD_CHECK_SECONDS = 0
    before = issue(broker)
    old_kid = pyjwt.get_unverified_header(before.value)["kid"]
    prepared = keyring.prepare("ES256")
    kids = {k["kid"] for k in client.get("/.well-known/jwks.json").get_json()["keys"]}
    assert {old_kid, prepared.kid} <= kids  # published before it signs anything
    assert pyjwt.get_unverified_header(issue(broker).value)["kid"] == old_kid
    keyring.rotate("ES256", retire_after=time.time() + 600)
    after = issue(broker)
    assert pyjwt.get_unverified_header(after.value)["kid"] == prepared.kid
    assert broker.tokens.validate(before.value)
    assert verify_with_jwks_only(client, before.value)["jti"] == before.record.token_id
    # Another process sharing the key directory sees the rotation.
    other = make_broker(tmp_path)
    assert other.tokens.validate(after.value) and other.tokens.validate(before.value)
    # Once the retiring key's time is up (here: its retire_after moved into the past, as time
    # passing would), it is gone from the JWKS and verifies nothing.
    index = json.loads(keyring.index.read_text())
    index[old_kid]["retire_after"] = time.time() - 1
    keyring.index.write_text(json.dumps(index))
    os.utime(keyring.index, (time.time() + 5, time.time() + 5))
    assert old_kid not in {k["kid"] for k in client.get("/.well-known/jwks.json")
                           .get_json()["keys"]}
    assert not broker.tokens.validate(before.value)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def test_forgeries_and_invalid_tokens_are_rejected(broker: Broker) -> None:
    jwt_plugin = issuer_of(broker)
    real = issue(broker)
    header = pyjwt.get_unverified_header(real.value)
    claims = pyjwt.decode(real.value, options={"verify_signature": False})
    active = jwt_plugin.keyring.active("ES256")
    public_pem = active.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    signing_input = real.value.rsplit(".", 1)[0].encode()
    now = int(time.time())
    stranger = ec.generate_private_key(ec.SECP256R1())

    def signed(**changes: Any) -> str:
        return pyjwt.encode({**claims, **changes}, active.private, algorithm="ES256",
                            headers={"kid": active.kid})

    head, _body, sig = real.value.split(".")
    tampered_body = _b64(json.dumps({**claims, "sub": "root"}).encode())
    attacks = {
        "alg none": _forge({"alg": "none", "kid": active.kid, "typ": "JWT"}, claims),
        "HS256 with the public key": _forge(
            {**header, "alg": "HS256"}, claims,
            hmac.new(public_pem, signing_input, hashlib.sha256).digest()),
        "unknown kid": pyjwt.encode(claims, stranger, algorithm="ES256",
                                    headers={"kid": "not-a-key"}),
        "right kid, wrong key": pyjwt.encode(claims, stranger, algorithm="ES256",
                                             headers={"kid": active.kid}),
        "tampered payload": f"{head}.{tampered_body}.{sig}",
        "expired": signed(exp=now - 120, iat=now - 720, nbf=now - 720),
        "not yet valid": signed(nbf=now + 600, exp=now + 1200),
        "unknown issuer": signed(iss="https://evil.test"),
        "oversized": signed(padding="x" * 9000),
        "garbage": "a.b.c",
        "issuer not a string": _forge(header, {**claims, "iss": ["https://evil.test"]}),
        "payload not an object": f"{head}.{_b64(b'[1, 2]')}.{sig}",
        "payload nested too deep": f"{head}.{_b64(b'[' * 5000)}.{sig}",
    }
    expected = {
        "alg none": "invalid token: InvalidAlgorithmError",
        "expired": "token has expired", "not yet valid": "token is not valid yet",
        "unknown issuer": "token has an unknown issuer", "oversized": "longer than 8192 bytes",
        "unknown kid": "unknown key", "garbage": "malformed token",
    }
    for name, token in attacks.items():
        assert not broker.tokens.validate(token), name
        with pytest.raises(Unauthenticated) as info:
            jwt_plugin.verify(token)
        if name in expected:
            assert expected[name] in info.value.detail, (name, info.value.detail)
    with pytest.raises(Unauthenticated, match="not meant for this audience"):
        jwt_plugin.verify(real.value, audiences=["https://other.example.com"])
    assert broker.tokens.validate(real.value)  # the genuine one still is


def test_registered_claims_cannot_be_overridden(broker: Broker) -> None:
    from credenza.errors import BadRequest

    for claim in ("iss", "sub", "aud", "exp", "nbf", "iat", "jti"):
        with pytest.raises(BadRequest, match=f"cannot set registered claims: {claim}"):
            issue(broker, custom_claims={claim: "x"})


def test_custom_claims_keep_their_values_in_the_token_and_the_store(broker: Broker) -> None:
    claims = {"team": "Zürich ☃", "big": 2**70, "nested": {"list": [1, 2.5, None, True]}}
    token = issue(broker, custom_claims=claims)
    verified = verify_with_jwks_only(Client(make_app(broker)), token.value)
    assert {key: verified[key] for key in claims} == claims
    stored = broker.tokens.store.get(token.record.token_id)
    assert {key: stored.claims[key] for key in claims} == claims


def test_short_tokens_stand_for_their_token_and_cannot_be_guessed(broker: Broker) -> None:
    token = issue(broker, include_short_token=True)
    short = token.short_token
    assert broker.tokens.validate(short)
    assert broker.tokens.obtain_by_short_token(short).record.token_id == token.record.token_id
    token_id, mac = short[3:].rsplit(".", 1)
    other_last = "B" if mac[-1] == "A" else "A"  # always a different character
    for forged in (f"st_{token_id}.{mac[:-1]}{other_last}", f"st_{token_id}x.{mac}", "st_",
                   "st_.x"):
        assert not broker.tokens.validate(forged)
        with pytest.raises(Unauthenticated, match="invalid derived short token"):
            broker.tokens.obtain_by_short_token(forged)


def test_a_revoked_access_token_no_longer_identifies(broker: Broker) -> None:
    access = broker.oauth.issue_access_token(CI, frozenset({"urn:cloud:idaas:pam"}), "x")
    client = Client(make_app(broker))
    auth = {"Authorization": f"Bearer {access.value}"}
    assert client.get("/v1/whoami", headers=auth).get_json()["name"] == "ci"
    broker.tokens.revoke(Principal("root", source="test"), access.value)
    refused = client.get("/v1/whoami", headers=auth)
    assert refused.status_code == 401
    assert refused.get_json()["detail"] == "the access token has been revoked"
    provider_token = issue(broker)  # a provider JWT is not an access token for this broker
    assert client.get("/v1/whoami", headers={
        "Authorization": f"Bearer {provider_token.value}"}).status_code == 401


def test_key_files_are_private(broker: Broker, tmp_path: Path) -> None:
    issue(broker, include_short_token=True)  # the short-token key is made on first use
    key_dir = tmp_path / "data" / "jwt-keys"
    pems = list(key_dir.glob("*.pem"))
    assert len(pems) == 3  # one per algorithm in use
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in pems)
    assert (key_dir / "keys.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "data" / "short-token.key").stat().st_mode & 0o777 == 0o600


def test_revocation_and_reinstatement_are_audited(tmp_path: Path) -> None:
    heard: list[Any] = []

    class Audit:
        @hookimpl
        def credenza_revoked(self, event):
            heard.append(event)

    providers = {"build-bot": {"audiences": [AUDIENCE]}}
    broker = Broker.from_config({
        "credenza": {"plugins": ["jwt", "sql"], "data_dir": str(tmp_path / "data")},
        "plugins": {"jwt": {"issuer": ISSUER, "providers": providers}, "sql": {}},
    }, plugins=[Grants(), Audit()])
    token = issue(broker)
    root = Principal("root", source="test")
    broker.tokens.revoke(CI, token.value)
    broker.tokens.reinstate(root, token.value)
    assert [(e.actor.name, e.token_ids, e.reinstated) for e in heard] == [
        ("ci", (token.record.token_id,), False), ("root", (token.record.token_id,), True)]
    with pytest.raises(Forbidden, match="ci has no grant for admin build-bot"):
        broker.tokens.reinstate(CI, token.value)  # reinstating is for admins only
    # The JWT still verifies; its record says it expired (as time passing would make it).
    expired = issue(broker)
    broker.tokens.revoke(CI, expired.value)
    with broker.tokens.store.engine.begin() as conn:
        conn.execute(tokens.update().values(expires_at=0)
                     .where(tokens.c.token_id == expired.record.token_id))
    with pytest.raises(Conflict, match="has expired and cannot be reinstated"):
        broker.tokens.reinstate(root, expired.value)
    # expired ones stay revoked
    assert broker.tokens.reinstate_consumer(root, "ci", "build-bot") == 0


CLI_CLIENT = "credenza-cli"
API = "https://broker.example.com"  # access tokens' audience, outside the reserved prefixes


def identity_broker(tmp_path: Path, **providers: dict[str, Any]) -> Broker:
    return Broker.from_config({
        "credenza": {"plugins": ["jwt", "sql"], "data_dir": str(tmp_path / "data")},
        "plugins": {"jwt": {"issuer": ISSUER, "api_audiences": [API], "providers": {
            "cli": {"audiences": [CLI_CLIENT], "identity": True},
            "build-bot": {}, **providers}}, "sql": {}},
    }, plugins=[Grants(), IdentityGrants()])


class IdentityGrants:
    @hookimpl
    def credenza_grants(self, principal):
        return [Grant("token", "cli")]


def test_identity_provider_tokens_identify_their_subject_until_revoked(tmp_path: Path) -> None:
    broker = identity_broker(tmp_path)
    client = Client(make_app(broker))
    alice = Principal("alice", source="test")
    issued = broker.issue_token(alice, TokenSpec("cli", "alice", [CLI_CLIENT],
                                                 custom_claims={"groups": ["admins"]}))
    auth = {"Authorization": f"Bearer {issued.value}"}
    me = client.get("/v1/whoami", headers=auth).get_json()
    # the subject, as a user; the groups claim is the token holder's word and counts for nothing
    assert (me["name"], me["kind"], me["groups"]) == ("alice", "user", [])
    broker.tokens.revoke(alice, issued.value)
    refused = client.get("/v1/whoami", headers=auth)
    assert refused.status_code == 401 and "revoked" in refused.get_json()["detail"]
    # Tokens of an ordinary provider identify nobody, whatever their audience.
    other = broker.issue_token(alice, TokenSpec("build-bot", "alice", ["elsewhere"]))
    refused = client.get("/v1/whoami", headers={"Authorization": f"Bearer {other.value}"})
    assert refused.status_code == 401
    assert refused.get_json()["detail"].startswith("this token identifies nobody here")


def test_identity_tokens_are_only_issued_to_their_subject(tmp_path: Path) -> None:
    broker = identity_broker(tmp_path)
    alice = Principal("alice", source="test")
    with pytest.raises(Forbidden, match="only issued to their subject"):
        broker.issue_token(alice, TokenSpec("cli", "root", [CLI_CLIENT]))
    # Nor can a provider with an open audience list mint a token that would pass for one.
    with pytest.raises(BadRequest, match="belongs to identity provider 'cli'"):
        broker.issue_token(CI, TokenSpec("build-bot", "root", [CLI_CLIENT]))
    with pytest.raises(BadRequest, match="reserved for this broker's access tokens"):
        broker.issue_token(CI, TokenSpec("build-bot", "root", [API],
                                         custom_claims={"token_use": "access"}))


@pytest.mark.parametrize(("providers", "error"), [
    ({"cli": {"identity": True}}, "needs an audiences allowlist"),
    ({"copy": {"audiences": [CLI_CLIENT]}}, "belongs to identity provider 'cli'"),
    ({"api": {"audiences": [API]}}, "is one of api_audiences"),
])
def test_identity_audiences_belong_to_one_provider(tmp_path: Path, providers: dict[str, Any],
                                                   error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        identity_broker(tmp_path, **providers)


def test_discovery_names_this_issuer_and_its_endpoints(broker: Broker) -> None:
    discovery = Client(make_app(broker)).get("/.well-known/openid-configuration",
                                             base_url="https://credenza.example").get_json()
    assert discovery["issuer"] == ISSUER
    # under the issuer, not the URL the request came in on (a proxy may have rewritten it)
    assert discovery["jwks_uri"] == f"{ISSUER}/.well-known/jwks.json"
    assert discovery["token_endpoint"] == f"{ISSUER}/oauth2/token"
    assert discovery["grant_types_supported"] == sorted(
        ["client_credentials", "refresh_token",
         "urn:ietf:params:oauth:grant-type:token-exchange"])


def test_the_key_commands_run_in_process(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    """``credenza jwt keys`` comes from the plugin's credenza_commands hook."""
    from credenza.cli import main

    config = tmp_path / "credenza.toml"
    config.write_text(f'[credenza]\nplugins = ["jwt"]\ndata_dir = "{tmp_path / "data"}"\n')
    with pytest.raises(SystemExit) as done:
        main(["--config", str(config), "jwt", "keys", "prepare"])
    assert done.value.code == 0
    states = sorted(line.split()[2] for line in capsys.readouterr().out.splitlines())
    assert states == ["active", "next"]


def test_a_verified_token_is_reused_only_under_the_same_checks(broker: Broker) -> None:
    plugin = issuer_of(broker)
    token = issue(broker).value
    claims = plugin.verify(token, [AUDIENCE])
    assert plugin.verify(token, [AUDIENCE]) == claims  # the second time from the cache
    with pytest.raises(Unauthenticated, match="not meant for this audience"):
        plugin.verify(token, ["https://other.example.com"])  # other checks: verified afresh
    header, payload, signature = token.split(".")
    with pytest.raises(Unauthenticated):
        plugin.verify(f"{header}.{payload}.{signature[:-4]}AAAA", [AUDIENCE])


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_verified_tokens_are_forgotten_when_they_expire_or_after_the_ttl() -> None:
    clock = FakeClock(1000.0)
    cache = VerifiedTokens(size=4, ttl=60, clock=clock)
    cache.put("token", "checks", "kid-1", {"exp": 1030})
    assert cache.get("token", "checks", leeway=0).kid == "kid-1"
    assert cache.get("token", "other checks", leeway=0) is None
    clock.now = 1029.5
    assert cache.get("token", "checks", leeway=0) is not None
    clock.now = 1030
    assert cache.get("token", "checks", leeway=0) is None  # the token has expired
    cache.put("long-lived", "checks", "kid-1", {"exp": 99_999})
    clock.now += 60
    assert cache.get("long-lived", "checks", leeway=0) is None  # the ttl has passed
    for number in range(9):
        cache.put(f"token-{number}", "checks", "kid-1", {"exp": 99_999})
    assert sum(cache.get(f"token-{n}", "checks", 0) is not None for n in range(9)) <= 4
    assert cache.get("token-8", "checks", 0) is not None  # the newest stays
