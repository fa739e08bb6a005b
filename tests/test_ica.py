"""The ICA compatible token API with the real libica (v2 and v3 TokenApi), unmodified."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import pytest
import requests
from libica.openapi import v2, v3
from libica.openapi.v2.api.token_api import TokenApi as TokenApiV2

from credenza.secrets import new_api_key
from tests.conftest import Server, running_server, write_token_server_config


@pytest.fixture(scope="module")
def ica(tmp_path_factory: pytest.TempPathFactory, password_hash: str) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ica")
    key, key_hash = new_api_key("alice-bot")
    client_secret, client_hash = new_api_key("portal")
    write_token_server_config(tmp, f"""
users:
  alice: {{password: "{password_hash}", tokens: {{ica: []}}, attributes: {{tenants: [genomics]}}}}
  bob:
    password: "{password_hash}"
    tokens: {{ica: []}}
    attributes: {{tenants: [genomics, oncology]}}
  carol-sso: {{tokens: {{ica: []}}}}
  dave: {{password: "{password_hash}"}}
api_keys:
  alice-bot: {{sha256: "{key_hash}", principal: alice-bot, tokens: {{ica: []}}}}
oauth_clients:
  portal: {{sha256: "{client_hash}", tokens: {{ica: []}}}}
""", '[plugins.jwt.providers.ica]\naudiences = ["ica"]\n')
    with running_server(tmp, ["--config", str(tmp / "credenza.toml")]) as server:
        yield {"server": server, "key": key, "client_secret": client_secret}
        assert server.stop() == 0


def create(version: str, server: Server, tenant: str | None = None, **auth: Any) -> str:
    module = v3 if version == "v3" else v2
    config = module.Configuration(host=server.url + "/ica/rest", **auth)
    with module.ApiClient(config) as client:
        api = v3.TokenApi(client) if version == "v3" else TokenApiV2(client)
        answer = api.create_jwt_token(tenant=tenant) if tenant else api.create_jwt_token()
    return answer.token


def refresh(version: str, server: Server, token: str) -> str:
    module = v3 if version == "v3" else v2
    with module.ApiClient(module.Configuration(host=server.url + "/ica/rest",
                                               access_token=token)) as client:
        api = v3.TokenApi(client) if version == "v3" else TokenApiV2(client)
        return api.refresh_jwt_token().token


def claims(token: str) -> dict[str, Any]:
    return pyjwt.decode(token, options={"verify_signature": False})


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_api_key_basic_and_refresh(ica: dict[str, Any], version: str) -> None:
    server = ica["server"]
    by_key = claims(create(version, server, api_key={"ApiKeyAuth": ica["key"]}))
    assert (by_key["sub"], by_key["origin"]) == ("alice-bot", "api-key")
    by_password = create(version, server, username="alice", password="PASSWORD")
    assert (claims(by_password)["sub"], claims(by_password)["tenant"]) == ("alice", "genomics")
    refreshed = claims(refresh(version, server, by_password))
    assert refreshed["sub"] == "alice" and refreshed["jti"] != claims(by_password)["jti"]
    assert refreshed["tenant"] == "genomics" and refreshed["exp"] >= claims(by_password)["exp"]


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_tenants_sso_users_and_wrong_credentials(ica: dict[str, Any], version: str) -> None:
    server, module = ica["server"], (v3 if version == "v3" else v2)
    with pytest.raises(module.ApiException) as ambiguous:
        create(version, server, username="bob", password="PASSWORD")
    assert ambiguous.value.status == 400
    assert "name one with the tenant parameter" in str(ambiguous.value.body)
    chosen = claims(create(version, server, tenant="oncology", username="bob",
                           password="PASSWORD"))
    assert chosen["tenant"] == "oncology"
    with pytest.raises(module.ApiException) as outsider:
        create(version, server, tenant="finance", username="bob", password="PASSWORD")
    assert outsider.value.status == 403
    for auth in ({"username": "carol-sso", "password": "anything"},  # SSO: no password here
                 {"username": "alice", "password": "wrong"},
                 {"api_key": {"ApiKeyAuth": "alice-bot.wrong"}}):
        with pytest.raises(module.ApiException) as refused:
            create(version, server, **auth)
        assert refused.value.status == 401, auth
    with pytest.raises(module.ApiException) as ungranted:
        create(version, server, username="dave", password="PASSWORD")
    assert ungranted.value.status == 403


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_tokens_from_api_keys_are_not_refreshable(ica: dict[str, Any], version: str) -> None:
    server, module = ica["server"], (v3 if version == "v3" else v2)
    token = create(version, server, api_key={"ApiKeyAuth": ica["key"]})
    with pytest.raises(module.ApiException) as refused:
        refresh(version, server, token)
    assert refused.value.status == 403
    assert "created with an API key cannot be refreshed" in str(refused.value.body)
    with pytest.raises(module.ApiException) as forged:
        refresh(version, server, token[:-4] + "AAAA")
    assert forged.value.status == 401


def test_api_key_wins_when_the_sdk_sends_several(ica: dict[str, Any]) -> None:
    token = create("v3", ica["server"], api_key={"ApiKeyAuth": ica["key"]}, username="bob",
                   password="PASSWORD")
    assert claims(token)["sub"] == "alice-bot"
    # ... but every credential sent is checked: a wrong password beside the key is refused.
    refused = requests.post(ica["server"].url + "/ica/rest/api/tokens", timeout=5,
                            headers={"X-API-Key": ica["key"]}, auth=("bob", "wrong"))
    assert refused.status_code == 401


def test_bearer_access_token_and_problem_bodies(ica: dict[str, Any]) -> None:
    server = ica["server"]
    access = requests.post(server.url + "/oauth2/token", auth=("portal", ica["client_secret"]),
                           data={"grant_type": "client_credentials",
                                 "scope": "urn:cloud:idaas:pam"}, timeout=5).json()
    token = create("v3", server, access_token=access["access_token"])
    assert claims(token)["sub"] == "portal"
    refused = requests.post(server.url + "/ica/rest/api/tokens", timeout=5,
                            headers={"Accept": "application/vnd.illumina.v3+json"})
    assert refused.status_code == 401
    assert refused.headers["Content-Type"] == "application/problem+json"
    assert refused.json()["detail"].startswith("an API key (X-API-Key), HTTP Basic or a bearer")


def test_refresh_of_a_revoked_token_is_refused(ica: dict[str, Any]) -> None:
    server = ica["server"]
    token = create("v3", server, username="alice", password="PASSWORD")
    assert refresh("v3", server, token)
    access = requests.post(server.url + "/oauth2/token", auth=("portal", ica["client_secret"]),
                           data={"grant_type": "client_credentials",
                                 "scope": "urn:cloud:idaas:pam"}, timeout=5).json()
    # The consumer is alice; only she or an admin may revoke: the portal may not.
    revoke_url = server.url + "/v2/credenza/authenticationTokens/_/actions/revoke"
    refused = requests.post(revoke_url, json={"token": token}, timeout=5,
                            headers={"Authorization": f"Bearer {access['access_token']}"})
    assert refused.status_code == 403
    assert requests.post(revoke_url, json={"token": token}, auth=("alice", "PASSWORD"),
                         timeout=5).status_code == 200
    with pytest.raises(v3.ApiException) as revoked:
        refresh("v3", server, token)
    assert revoked.value.status == 401
