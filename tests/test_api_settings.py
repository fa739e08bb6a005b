"""API families read their own settings from ``[api.NAME]``; the old ``[server]`` keys are errors
that name the new place; ``ck_`` API keys are the broker's, whatever store is enabled; callers
cannot set the claims the broker gives a meaning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from werkzeug.test import Client

from credenza import hookimpl
from credenza.broker import Broker
from credenza.config import Config
from credenza.errors import ConfigError
from credenza.models import Principal
from credenza.plugins.sql import SqlTokenStore
from credenza.wsgi import make_app


@pytest.mark.parametrize(("old", "new"), [
    ("imds_token_key = 'k'", "[api.aws-sdk] imds_token_key"),
    ("imds_v1 = true", "[api.aws-sdk] imds_v1"),
    ("idaas_instance_id = 'x'", "[api.idaas-pam] instance_id"),
    ("ica_token_provider = 'x'", "[api.ica] token_provider"),
    ("ica_audience = 'x'", "[api.ica] audience"),
])
def test_an_old_server_key_names_its_new_place(tmp_path: Path, old: str, new: str) -> None:
    path = tmp_path / "credenza.toml"
    path.write_text(f"[server]\n{old}\n")
    with pytest.raises(ConfigError, match=rf"\[server\] {old.split()[0]}: this setting moved "
                                          rf"to {new.replace('[', '.').replace(']', '.')}"):
        Config.from_file(path, {})


@pytest.mark.parametrize(("table", "expected"), [
    ("[api.icaa]\naudience = 'x'\n",
     "[api.icaa]: unknown API family (known: afp, aws-sdk, console, core, "),
    ("[api.ica]\naudiance = 'x'\n", "[api.ica] audiance: unknown key (known keys: audience, "
                                    "token_provider)"),
    ("[api.idaas-pam]\ninstance_id = 7\n", "[api.idaas-pam] instance_id: expected a non-empty "
                                           "string, got an integer 7"),
    ("[api]\nica = 1\n", "[api] ica: expected a table [api.ica], got an integer"),
])
def test_family_settings_are_checked_by_the_server_and_config_check(
        tmp_path: Path, table: str, expected: str) -> None:
    path = tmp_path / "credenza.toml"
    path.write_text(f"[credenza]\nplugins = []\ndata_dir = 'data'\n{table}")
    with pytest.raises(ConfigError) as info:
        make_app(Broker.from_config(Config.from_file(path, {})))
    assert expected in str(info.value)
    checked = subprocess.run([sys.executable, "-m", "credenza", "config", "check", str(path)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 1 and expected in checked.stderr


def test_family_settings_reach_the_family(tmp_path: Path) -> None:
    app = make_app(Broker.from_config({
        "credenza": {"plugins": [], "data_dir": str(tmp_path)},
        "api": {"idaas-pam": {"instance_id": "acme"}},
    }))
    client = Client(app)
    other = client.post("/v2/credenza/authenticationTokens/_/actions/validate",
                        json={"token": "x"})
    assert other.status_code == 404 and "unknown instance 'credenza'" in other.get_json()[
        "error_description"]
    ours = client.post("/v2/acme/authenticationTokens/_/actions/validate", json={"token": "x"})
    assert ours.status_code == 200 and ours.get_json() == {"active": False}


class StoreOnly:
    """A store provided by some other plugin than ``sql`` (an embedding application's)."""

    def __init__(self, store: SqlTokenStore) -> None:
        self.store = store

    @hookimpl
    def credenza_token_store(self, config):
        return self.store


def test_api_keys_work_with_any_token_store(tmp_path: Path) -> None:
    config = Config.from_mapping({"credenza": {"plugins": [], "data_dir": str(tmp_path)}})
    store = SqlTokenStore(config.section("sql"))
    store.migrate()
    broker = Broker.from_config(config, plugins=[StoreOnly(store)])
    assert "sql" not in broker.plugin_names()
    _record, key = broker.api_keys.create(Principal("alice", source="test"), "laptop")
    me = Client(make_app(broker)).get("/v1/whoami", headers={"X-API-Key": key})
    assert me.status_code == 200 and (me.get_json()["name"], me.get_json()["source"]) == (
        "alice", "api-key")
    forged = Client(make_app(broker)).get("/v1/whoami", headers={"X-API-Key": key[:-2] + "xx"})
    assert forged.status_code == 401 and forged.get_json()["detail"] == "invalid API key"


def test_generate_jwt_refuses_claims_the_broker_reserves(tmp_path: Path) -> None:
    (tmp_path / "static.yaml").write_text("""
oauth_clients:
  app: {sha256: "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b",
        tokens: {bot: []}}
""")
    broker = Broker.from_config({
        "credenza": {"plugins": ["static", "jwt", "sql"], "data_dir": str(tmp_path)},
        "plugins": {"static": {"files": [str(tmp_path / "static.yaml")]},
                    "jwt": {"providers": {"bot": {}}}},
    })
    client = Client(make_app(broker))
    access = client.post("/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": "app",
        "client_secret": "app.secret", "scope": "urn:cloud:idaas:pam|.all"})
    assert access.status_code == 200, access.get_json()
    bearer = {"Authorization": f"Bearer {access.get_json()['access_token']}"}
    body = {"credentialProviderIdentifier": "bot", "subject": "job",
            "audiences": ["https://api.test"]}
    url = "/v2/credenza/authenticationTokens/_/actions/generateJwt"
    assert client.post(url, json=body, headers=bearer).status_code == 200
    for claim in ("external", "token_use", "api_token_id", "family", "origin"):
        refused = client.post(url, json={**body, "customClaims": {claim: True}},
                              headers=bearer)
        assert refused.status_code == 400, claim
        assert claim in refused.get_json()["error_description"]
