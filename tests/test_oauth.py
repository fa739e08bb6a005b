"""The OAuth 2.0 endpoints: client credentials, rotating refresh tokens with reuse detection,
RFC 7662 introspection and RFC 7009 revocation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.secrets import new_api_key
from credenza.wsgi import make_app
from tests.conftest import QuietHandler, serve_on_loopback

SCOPE = "urn:cloud:idaas:pam|.all"


@pytest.fixture
def oauth(tmp_path: Path) -> dict[str, Any]:
    secrets = {name: new_api_key(name) for name in ("rotator", "plain", "ops")}
    (tmp_path / "static.yaml").write_text(f"""
oauth_clients:
  rotator: {{sha256: "{secrets['rotator'][1]}", attributes: {{refresh_tokens: rotate}}}}
  plain: {{sha256: "{secrets['plain'][1]}"}}
  ops: {{sha256: "{secrets['ops'][1]}", admin: ["*"]}}
""")
    broker = Broker.from_config({
        "credenza": {"plugins": ["static", "jwt", "sql"], "data_dir": str(tmp_path / "data")},
        "plugins": {"static": {"files": [str(tmp_path / "static.yaml")]}, "jwt": {}, "sql": {}},
    })
    return {"client": Client(make_app(broker)),
            "auth": {name: (name, key) for name, (key, _) in secrets.items()}}


def post(oauth: dict[str, Any], path: str, who: str | None, **form: str):
    return oauth["client"].post(path, data=form, auth=oauth["auth"][who] if who else None)


def grant(oauth: dict[str, Any], who: str, **form: str) -> dict[str, Any]:
    response = post(oauth, "/oauth2/token", who, **form)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def introspect(oauth: dict[str, Any], who: str, token: str) -> dict[str, Any]:
    return post(oauth, "/oauth2/introspect", who, token=token).get_json()


def test_client_credentials_and_refresh_rotation(oauth: dict[str, Any]) -> None:
    plain = grant(oauth, "plain", grant_type="client_credentials", scope=SCOPE)
    assert "refresh_token" not in plain and plain["token_type"] == "Bearer"
    assert plain["expires_in"] == 3600 and plain["expires_at"] > 0
    first = grant(oauth, "rotator", grant_type="client_credentials", scope=SCOPE)
    second = grant(oauth, "rotator", grant_type="refresh_token",
                   refresh_token=first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    assert second["scope"] == SCOPE
    third = grant(oauth, "rotator", grant_type="refresh_token",
                  refresh_token=second["refresh_token"])
    assert introspect(oauth, "rotator", third["access_token"])["active"] is True


def test_reusing_a_refresh_token_revokes_its_family(oauth: dict[str, Any]) -> None:
    first = grant(oauth, "rotator", grant_type="client_credentials", scope=SCOPE)
    second = grant(oauth, "rotator", grant_type="refresh_token",
                   refresh_token=first["refresh_token"])
    unrelated = grant(oauth, "rotator", grant_type="client_credentials", scope=SCOPE)
    reused = post(oauth, "/oauth2/token", "rotator", grant_type="refresh_token",
                  refresh_token=first["refresh_token"])
    assert reused.status_code == 400
    body = reused.get_json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"] == ("the refresh token was already used: its family "
                                         "(4 tokens) is revoked")
    assert set(body) == {"error", "error_description", "request_id"}
    # Everything descended from that grant is dead: the newest refresh and access tokens too.
    again = post(oauth, "/oauth2/token", "rotator", grant_type="refresh_token",
                 refresh_token=second["refresh_token"])
    assert again.get_json()["error"] == "invalid_grant"
    for token in (first["access_token"], second["access_token"]):
        assert introspect(oauth, "rotator", token) == {"active": False}
    bearer = oauth["client"].get("/v1/whoami",
                                 headers={"Authorization": f"Bearer {second['access_token']}"})
    assert bearer.status_code == 401
    # Another grant of the same client is untouched.
    assert introspect(oauth, "rotator", unrelated["access_token"])["active"] is True
    assert grant(oauth, "rotator", grant_type="refresh_token",
                 refresh_token=unrelated["refresh_token"])["access_token"]


def test_a_refresh_token_works_only_for_its_client(oauth: dict[str, Any]) -> None:
    issued = grant(oauth, "rotator", grant_type="client_credentials", scope=SCOPE)
    stolen = post(oauth, "/oauth2/token", "plain", grant_type="refresh_token",
                  refresh_token=issued["refresh_token"])
    assert stolen.get_json()["error"] == "invalid_grant"
    for fake in ("rt_nope.x", "garbage"):
        assert post(oauth, "/oauth2/token", "rotator", grant_type="refresh_token",
                    refresh_token=fake).get_json()["error"] == "invalid_grant"


def test_introspection(oauth: dict[str, Any]) -> None:
    issued = grant(oauth, "rotator", grant_type="client_credentials", scope=SCOPE)
    seen = introspect(oauth, "rotator", issued["access_token"])
    assert seen["active"] is True and seen["client_id"] == "rotator" and seen["sub"] == "rotator"
    assert seen["scope"] == SCOPE and seen["aud"] == "urn:cloud:idaas:pam"  # one: a string
    assert introspect(oauth, "rotator", issued["refresh_token"])["token_type"] == "refresh_token"
    assert introspect(oauth, "plain", issued["access_token"]) == {"active": False}
    assert introspect(oauth, "ops", issued["access_token"])["active"] is True  # admin
    assert introspect(oauth, "rotator", "not.a.token") == {"active": False}
    anonymous = post(oauth, "/oauth2/introspect", None, token=issued["access_token"])
    assert anonymous.status_code == 401 and anonymous.get_json()["error"] == "invalid_client"


def test_revocation(oauth: dict[str, Any]) -> None:
    issued = grant(oauth, "rotator", grant_type="client_credentials", scope=SCOPE)
    other = grant(oauth, "plain", grant_type="client_credentials", scope=SCOPE)
    refused = post(oauth, "/oauth2/revoke", "rotator", token=other["access_token"])
    assert refused.status_code == 400 and refused.get_json()["error"] == "unauthorized_client"
    assert post(oauth, "/oauth2/revoke", "rotator", token="unknown").status_code == 200
    assert post(oauth, "/oauth2/revoke", "rotator",
                token=issued["access_token"]).status_code == 200
    assert introspect(oauth, "rotator", issued["access_token"]) == {"active": False}
    assert post(oauth, "/oauth2/revoke", "rotator",
                token=issued["refresh_token"]).status_code == 200
    assert post(oauth, "/oauth2/token", "rotator", grant_type="refresh_token",
                refresh_token=issued["refresh_token"]).get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(("form", "auth", "status", "error"), [
    ({"grant_type": "password"}, "plain", 400, "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": "https://elsewhere"}, "plain", 400,
     "invalid_scope"),
    ({"grant_type": "client_credentials"}, "plain", 400, "invalid_scope"),
    ({"grant_type": "refresh_token"}, "plain", 400, "invalid_request"),
    ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
    ({"grant_type": "client_credentials", "client_id": "plain", "client_secret": "plain.bad"},
     None, 401, "invalid_client"),
])
def test_token_endpoint_errors(oauth: dict[str, Any], form: dict[str, str], auth: str | None,
                               status: int, error: str) -> None:
    response = post(oauth, "/oauth2/token", auth, **form)
    assert response.status_code == status
    assert response.get_json()["error"] == error
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Basic realm="credenza"'


def test_malformed_requests(oauth: dict[str, Any]) -> None:
    client = oauth["client"]
    as_json = client.post("/oauth2/token", json={"grant_type": "client_credentials"},
                          auth=oauth["auth"]["plain"])
    assert as_json.status_code == 400
    assert "application/x-www-form-urlencoded" in as_json.get_json()["error_description"]
    twice = client.post("/oauth2/token", data="grant_type=client_credentials&grant_type=x",
                        content_type="application/x-www-form-urlencoded",
                        auth=oauth["auth"]["plain"])
    assert twice.get_json()["error_description"] == "parameter 'grant_type' is given more than once"
    posted = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                "client_id": "plain",
                                                "client_secret": oauth["auth"]["plain"][1],
                                                "scope": SCOPE})
    assert posted.status_code == 200  # client_secret_post


class FakeIdentityProvider:
    """An external OIDC issuer: its JWKS on loopback, and tokens signed with its own key."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = ec.generate_private_key(ec.SECP256R1())
        jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(self.key.public_key()))
        body = json.dumps({"keys": [{**jwk, "kid": "idp-1", "alg": "ES256", "use": "sig"}]})

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                self.reply(200, body.encode())

        self.server, self.issuer = serve_on_loopback(Handler)

    def token(self, key: object = None, **claims: object) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "sub": "erin@idp", "aud": "urn:credenza:broker",
                   "iat": now, "exp": now + 300, **claims}
        return pyjwt.encode(payload, key or self.key, algorithm="ES256",
                            headers={"kid": "idp-1"})


EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@pytest.fixture
def exchange(tmp_path: Path) -> Iterator[dict[str, Any]]:
    idp = FakeIdentityProvider()
    secrets = {name: new_api_key(name) for name in ("gateway", "stranger", "ops")}
    (tmp_path / "static.yaml").write_text(f"""
oauth_clients:
  gateway: {{sha256: "{secrets['gateway'][1]}", exchange: ["{idp.issuer}", "urn:credenza:broker"]}}
  stranger: {{sha256: "{secrets['stranger'][1]}"}}
  ops: {{sha256: "{secrets['ops'][1]}", admin: ["*"]}}
""")
    broker = Broker.from_config({
        "credenza": {"plugins": ["static", "jwt", "sql"], "data_dir": str(tmp_path / "data")},
        "plugins": {"static": {"files": [str(tmp_path / "static.yaml")]},
                    "jwt": {"trusted_issuers": {idp.issuer: f"{idp.issuer}/jwks.json"}},
                    "sql": {}},
    })
    yield {"client": Client(make_app(broker)), "idp": idp,
           "auth": {name: (name, key) for name, (key, _) in secrets.items()}}
    idp.server.shutdown()


def test_token_exchange_of_an_external_oidc_token(exchange: dict[str, Any]) -> None:
    issued = grant(exchange, "gateway", grant_type=EXCHANGE, scope=SCOPE,
                   subject_token=exchange["idp"].token(), subject_token_type=JWT_TYPE)
    assert issued["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    claims = pyjwt.decode(issued["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["act"], claims["subject_issuer"]) == (
        "erin@idp", {"sub": "gateway"}, exchange["idp"].issuer)
    assert introspect(exchange, "gateway", issued["access_token"])["sub"] == "erin@idp"


def test_token_exchange_of_this_brokers_own_token(exchange: dict[str, Any]) -> None:
    own = grant(exchange, "ops", grant_type="client_credentials", scope=SCOPE)
    issued = grant(exchange, "gateway", grant_type=EXCHANGE, scope=SCOPE,
                   subject_token=own["access_token"],
                   subject_token_type="urn:ietf:params:oauth:token-type:access_token")
    claims = pyjwt.decode(issued["access_token"], options={"verify_signature": False})
    assert (claims["sub"], claims["act"]) == ("ops", {"sub": "gateway"})
    post(exchange, "/oauth2/revoke", "ops", token=own["access_token"])
    revoked = post(exchange, "/oauth2/token", "gateway", grant_type=EXCHANGE, scope=SCOPE,
                   subject_token=own["access_token"], subject_token_type=JWT_TYPE)
    assert (revoked.status_code, revoked.get_json()["error"]) == (400, "invalid_request")


def test_token_exchange_refusals(exchange: dict[str, Any]) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    idp = exchange["idp"]
    cases = [
        ("stranger", {"subject_token": idp.token()}, 400, "unauthorized_client"),
        ("gateway", {"subject_token": idp.token(aud="https://elsewhere")}, 400,
         "invalid_request"),
        ("gateway", {"subject_token": idp.token(key=ec.generate_private_key(ec.SECP256R1()))},
         400, "invalid_request"),
        ("gateway", {"subject_token": idp.token(exp=int(time.time()) - 600)}, 400,
         "invalid_request"),
        ("gateway", {"subject_token": idp.token(), "subject_token_type": "urn:x"}, 400,
         "invalid_request"),
        ("gateway", {"subject_token": idp.token(), "actor_token": "x"}, 400, "invalid_request"),
    ]
    for who, form, status, error in cases:
        response = post(exchange, "/oauth2/token", who, **{
            "grant_type": EXCHANGE, "scope": SCOPE, "subject_token_type": JWT_TYPE, **form})
        assert (response.status_code, response.get_json()["error"]) == (status, error), form
