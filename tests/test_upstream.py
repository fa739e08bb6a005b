"""oauth-upstream: upstream access tokens (cached, shared by permitted callers) and managed API
keys, through the IDaaS PAM API."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.errors import ConfigError
from credenza.secrets import new_api_key
from credenza.wsgi import make_app
from tests.conftest import QuietHandler, serve_on_loopback


class FakeUpstream:
    """An upstream OAuth token endpoint (the external provider cannot run here)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []
        self.failing = False
        self.lifetime = 3600
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                form["authorization"] = self.headers.get("Authorization", "")
                fake.calls.append(form)
                if fake.failing:
                    self.reply(500)
                    return
                body = json.dumps({"access_token": f"up-{len(fake.calls)}",
                                   "expires_in": fake.lifetime, "token_type": "Bearer",
                                   "scope": form.get("scope", "")})
                self.reply(200, body.encode())

        self.server, base = serve_on_loopback(Handler)
        self.url = f"{base}/token"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.server.shutdown()


def config(tmp_path: Path, upstream: FakeUpstream, key: str, ciphertext: str) -> dict[str, Any]:
    return {
        "credenza": {"plugins": ["static", "jwt", "sql", "oauth-upstream"],
                     "data_dir": str(tmp_path / "data")},
        "plugins": {
            "static": {"files": [str(tmp_path / "static.yaml")]}, "jwt": {}, "sql": {},
            "oauth-upstream": {
                "encryption_key": key,
                "providers": {"vendor": {"token_url": upstream.url, "client_id": "broker",
                                         "client_secret": "upstream-secret",
                                         "scope": "read"}},
                "api_keys": {"vendor-key": ciphertext},
            },
        },
    }


@pytest.fixture
def pam(tmp_path: Path, upstream: FakeUpstream) -> dict[str, Any]:
    key = Fernet.generate_key().decode()
    ciphertext = Fernet(key.encode()).encrypt(b"VENDOR-API-KEY-123").decode()
    app, app_hash = new_api_key("app")
    other, other_hash = new_api_key("other")
    (tmp_path / "static.yaml").write_text(f"""
oauth_clients:
  app: {{sha256: "{app_hash}", oauth: [vendor, ghost], credentials: [vendor-key, nothing]}}
  other: {{sha256: "{other_hash}"}}
""")
    settings = config(tmp_path, upstream, key, ciphertext)
    client = Client(make_app(Broker.from_config(settings)))

    def bearer(name: str, secret: str) -> dict[str, str]:
        token = client.post("/oauth2/token", auth=(name, secret), data={
            "grant_type": "client_credentials", "scope": "urn:cloud:idaas:pam"}).get_json()
        return {"Authorization": f"Bearer {token['access_token']}"}

    return {"client": client, "app": bearer("app", app), "other": bearer("other", other),
            "config": settings}


def fetched(client: Client, headers: dict[str, str], **fields: Any) -> str:
    response = client.post(FETCH, json={"credentialProviderIdentifier": "vendor", **fields},
                           headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["oauthAccessTokenContent"]["accessTokenValue"]


FETCH = "/v2/credenza/authenticationTokens/_/actions/fetchOAuthAccessToken"
OBTAIN = "/v2/credenza/credentials/_/actions/obtain"


def test_upstream_tokens_are_fetched_once_and_shared(pam: dict[str, Any],
                                                     upstream: FakeUpstream) -> None:
    client = pam["client"]
    first = client.post(FETCH, json={"credentialProviderIdentifier": "vendor"},
                        headers=pam["app"])
    assert first.status_code == 200
    content = first.get_json()["oauthAccessTokenContent"]
    assert (content["accessTokenValue"], content["tokenType"], content["scope"]) == (
        "up-1", "Bearer", "read")
    again = client.post(FETCH, json={"credentialProviderIdentifier": "vendor"},
                        headers=pam["app"]).get_json()
    assert again["oauthAccessTokenContent"]["accessTokenValue"] == "up-1"
    assert len(upstream.calls) == 1
    call = upstream.calls[0]
    assert call["grant_type"] == "client_credentials" and call["scope"] == "read"
    assert call["authorization"] == "Basic " + base64.b64encode(
        b"broker:upstream-secret").decode()
    forced = client.post(FETCH, json={"credentialProviderIdentifier": "vendor",
                                      "forceAuthentication": True}, headers=pam["app"])
    assert forced.get_json()["oauthAccessTokenContent"]["accessTokenValue"] == "up-2"


def test_workers_sharing_a_store_fetch_once(pam: dict[str, Any], upstream: FakeUpstream,
                                           tmp_path: Path) -> None:
    # A second broker on the same data directory is what another gunicorn worker is.
    other_worker = Client(make_app(Broker.from_config(pam["config"])))
    assert fetched(pam["client"], pam["app"]) == "up-1"
    assert fetched(other_worker, pam["app"]) == "up-1"
    assert len(upstream.calls) == 1
    # A forced fetch renews the shared copy: a worker that had none in memory gets the new one.
    assert fetched(other_worker, pam["app"], forceAuthentication=True) == "up-2"
    third_worker = Client(make_app(Broker.from_config(pam["config"])))
    assert fetched(third_worker, pam["app"]) == "up-2"
    assert len(upstream.calls) == 2
    key = tmp_path / "data" / "upstream-cache.key"
    assert key.stat().st_mode & 0o777 == 0o600
    sealed = sqlite3.connect(tmp_path / "data" / "tokens.sqlite3").execute(
        "SELECT value FROM credenza_cache").fetchall()
    assert sealed and all(b"up-2" not in row[0] for row in sealed)


def test_a_cached_token_outlives_an_upstream_outage_until_half_the_margin(
        pam: dict[str, Any], upstream: FakeUpstream) -> None:
    upstream.lifetime = 45  # inside refresh_before_seconds (60): every call fetches anew
    assert fetched(pam["client"], pam["app"]) == "up-1"
    upstream.failing = True
    assert fetched(pam["client"], pam["app"]) == "up-1"  # 45 s left: more than 30
    assert len(upstream.calls) == 2
    upstream.failing, upstream.lifetime = False, 20
    assert fetched(pam["client"], pam["app"], forceAuthentication=True) == "up-3"
    upstream.failing = True
    down = pam["client"].post(FETCH, json={"credentialProviderIdentifier": "vendor"},
                              headers=pam["app"])
    assert down.status_code == 503  # 20 s left: too short to hand out


def test_upstream_refusals_and_failures(pam: dict[str, Any], upstream: FakeUpstream) -> None:
    client = pam["client"]
    ungranted = client.post(FETCH, json={"credentialProviderIdentifier": "vendor"},
                            headers=pam["other"])
    assert ungranted.status_code == 403
    assert ungranted.get_json()["error_description"] == "other has no grant for oauth vendor"
    unknown = client.post(FETCH, json={"credentialProviderIdentifier": "ghost"},
                          headers=pam["app"])
    assert unknown.status_code == 404
    upstream.failing = True
    down = client.post(FETCH, json={"credentialProviderIdentifier": "vendor",
                                    "forceAuthentication": True}, headers=pam["app"])
    assert down.status_code == 503
    assert down.get_json()["error_description"] == "upstream provider vendor answered HTTP 500"


def test_managed_api_keys(pam: dict[str, Any]) -> None:
    client = pam["client"]
    got = client.get(f"{OBTAIN}?credentialIdentifier=vendor-key", headers=pam["app"])
    assert got.status_code == 200
    assert got.get_json()["credentialContent"]["apiKeyContent"]["apiKey"] == "VENDOR-API-KEY-123"
    assert client.get(f"{OBTAIN}?credentialIdentifier=vendor-key",
                      headers=pam["other"]).status_code == 403
    assert client.get(f"{OBTAIN}?credentialIdentifier=nothing",
                      headers=pam["app"]).status_code == 404
    assert client.get(OBTAIN, headers=pam["app"]).status_code == 400


def test_configuration_errors(tmp_path: Path, upstream: FakeUpstream) -> None:
    (tmp_path / "static.yaml").write_text("{}")
    key = Fernet.generate_key().decode()
    wrong = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    with pytest.raises(ConfigError, match=r"\[plugins.oauth-upstream.api_keys\] vendor-key: "
                                          "cannot be decrypted with encryption_key"):
        Broker.from_config(config(tmp_path, upstream, key, wrong))
    with pytest.raises(ConfigError, match=r"encryption_key: not a Fernet key"):
        Broker.from_config(config(tmp_path, upstream, "short", wrong))
    right = Fernet(key.encode()).encrypt(b"x").decode()
    settings = config(tmp_path, upstream, key, right)
    settings["plugins"]["oauth-upstream"]["cache_key"] = "c2hvcnQ="
    with pytest.raises(ConfigError, match=r"\[plugins.oauth-upstream\] cache_key: expected the "
                                          "base64 of 32 random bytes"):
        Broker.from_config(settings)


def test_cli_makes_keys_and_encrypts(tmp_path: Path) -> None:
    def cli(*args: str, stdin: str = "") -> str:
        return subprocess.run([sys.executable, "-m", "credenza", "--config",
                               str(tmp_path / "c.toml"), "upstream", *args], input=stdin,
                              capture_output=True, text=True, check=True, timeout=60).stdout

    (tmp_path / "c.toml").write_text("[credenza]\nplugins = ['oauth-upstream']\n")
    key = cli("new-key").strip()
    (tmp_path / "c.toml").write_text("[credenza]\nplugins = ['oauth-upstream']\n"
                                     f"[plugins.oauth-upstream]\nencryption_key = '{key}'\n")
    ciphertext = cli("encrypt", stdin="top-secret\n").strip()
    assert Fernet(key.encode()).decrypt(ciphertext.encode()) == b"top-secret"
