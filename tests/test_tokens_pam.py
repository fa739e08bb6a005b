"""The real cloud-idaas-pam-client, unmodified, over TLS through the whole token lifecycle."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import requests
from cryptography.fernet import Fernet

from credenza.secrets import new_api_key
from tests.conftest import Server, running_server
from tests.test_upstream import FakeUpstream
from tests.tls import make_ca_and_server_cert

INSTANCE = "idaas_test"
PROVIDER = "build-bot"


class PamClient:
    """One identity's client process (see tests/pam_driver.py)."""

    def __init__(self, server: Server, config: Path, secret_var: str, secret: str,
                 ca: Path) -> None:
        env = {**os.environ, "CLOUD_IDAAS_CONFIG_PATH": str(config), secret_var: secret,
               "SSL_CERT_FILE": str(ca), "REQUESTS_CA_BUNDLE": str(ca)}
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("pam_driver.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def __call__(self, method: str, **kwargs: Any) -> Any:
        assert self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write(json.dumps({"method": method, "kwargs": kwargs}) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise AssertionError(f"the client process exited ({self.process.poll()}); its "
                                 "stderr is in the captured output")
        answer = json.loads(line)
        if "error" in answer:
            raise ClientFailed(answer["error"], answer["message"])
        return answer["result"]

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(10)


class ClientFailed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


def client_config(tmp: Path, name: str, port: int, secret_var: str) -> Path:
    path = tmp / f"{name}-client-config.json"
    path.write_text(json.dumps({
        "idaasInstanceId": INSTANCE,
        "clientId": name,
        "issuer": "https://credenza.test",
        "tokenEndpoint": f"https://127.0.0.1:{port}/oauth2/token",
        "scope": "urn:cloud:idaas:pam|.all",
        "developerApiEndpoint": f"https://127.0.0.1:{port}",
        "authnConfiguration": {"identityType": "CLIENT", "authnMethod": "CLIENT_SECRET_POST",
                               "clientSecretEnvVarName": secret_var},
    }))
    return path


@pytest.fixture(scope="module")
def pam(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("pam")
    upstream = FakeUpstream()
    encryption_key = Fernet.generate_key()
    vendor_key = Fernet(encryption_key).encrypt(b"VENDOR-KEY-42").decode()
    ca, cert, key = make_ca_and_server_cert(tmp)
    app_secret, app_hash = new_api_key("pam-app")
    admin_secret, admin_hash = new_api_key("pam-admin")
    (tmp / "static.yaml").write_text(f"""
oauth_clients:
  pam-app:
    sha256: "{app_hash}"
    tokens: {{{PROVIDER}: []}}
    oauth: [vendor]
    credentials: [vendor-key]
    exchange: ["https://credenza.test"]
  pam-admin: {{sha256: "{admin_hash}", tokens: {{{PROVIDER}: []}}, admin: [{PROVIDER}]}}
""")
    (tmp / "credenza.toml").write_text(f"""
[credenza]
plugins = ["static", "jwt", "sql", "oauth-upstream"]
data_dir = "data"
[server]
certfile = "{cert}"
keyfile = "{key}"
[api.idaas-pam]
instance_id = "{INSTANCE}"
[plugins.static]
files = ["static.yaml"]
[plugins.jwt]
issuer = "https://credenza.test"
[plugins.jwt.providers.{PROVIDER}]
issuers = ["https://credenza.test", "https://ci.credenza.test"]
audiences = ["https://api.example.com", "https://ci.example.com"]
default_lifetime_seconds = 3600
max_lifetime_seconds = 7200
[plugins.oauth-upstream]
encryption_key = "{encryption_key.decode()}"
[plugins.oauth-upstream.providers.vendor]
token_url = "{upstream.url}"
client_id = "broker"
client_secret = "upstream-secret"
[plugins.oauth-upstream.api_keys]
vendor-key = "{vendor_key}"
""")
    with running_server(tmp, ["--config", str(tmp / "credenza.toml")], scheme="https",
                        verify=str(ca)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        app = PamClient(server, client_config(tmp, "pam-app", port, "APP_SECRET"),
                        "APP_SECRET", app_secret, ca)
        admin = PamClient(server, client_config(tmp, "pam-admin", port, "ADMIN_SECRET"),
                          "ADMIN_SECRET", admin_secret, ca)
        yield {"server": server, "app": app, "admin": admin, "ca": ca}
        app.close()
        admin.close()
        assert server.stop() == 0
    upstream.server.shutdown()


def test_the_whole_lifecycle_with_the_real_client(pam: dict[str, Any]) -> None:
    app, admin = pam["app"], pam["admin"]
    made = app("generate_jwt_authentication_token", credential_provider_identifier=PROVIDER,
               subject="deploy-job-7", audiences=["https://api.example.com"],
               custom_claims={"pipeline": "release"}, expiration=600,
               include_derived_short_token=True)
    token_id, jwt_value = made["authentication_token_id"], made["jwt_content"]["jwt_value"]
    short = made["jwt_content"]["derived_short_token"]
    assert (made["consumer_type"], made["consumer_id"]) == ("application", "pam-app")
    assert short.startswith("st_") and short != jwt_value
    claims = pyjwt.decode(jwt_value, options={"verify_signature": False})
    assert claims["sub"] == "deploy-job-7" and claims["pipeline"] == "release"
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"] == token_id

    assert app("validate_authentication_token", token=jwt_value) is True
    assert app("validate_authentication_token", token=short) is True
    again = app("obtain_jwt_authentication_token", consumer_id="pam-app",
                authentication_token_id=token_id)
    assert pyjwt.decode(again["jwt_value"], options={"verify_signature": False}) == claims
    assert again["derived_short_token"] == short
    by_short = app("obtain_jwt_authentication_token_by_derived_short_token",
                   derived_short_token=short)
    assert pyjwt.decode(by_short["jwt_value"], options={"verify_signature": False})["jti"] \
        == token_id

    app("revoke_authentication_token", token=short)
    assert app("validate_authentication_token", token=jwt_value) is False
    with pytest.raises(ClientFailed) as refused:
        app("reinstate_authentication_token", token=jwt_value)  # reinstating is for admins
    assert refused.value.kind == "ClientException"
    assert "error code: forbidden" in refused.value.message.lower()
    assert "pam-app has no grant for admin build-bot" in refused.value.message
    admin("reinstate_authentication_token", token=jwt_value)
    assert app("validate_authentication_token", token=jwt_value) is True

    app("revoke_authentication_token_by_consumer", consumer_id="pam-app",
        credential_provider_identifier=PROVIDER)
    assert app("validate_authentication_token", token=short) is False
    admin("reinstate_authentication_token_by_consumer", consumer_id="pam-app",
          credential_provider_identifier=PROVIDER)
    assert app("validate_authentication_token", token=short) is True


def test_listing_pages_through_every_token(pam: dict[str, Any]) -> None:
    app = pam["app"]
    made = {app("generate_jwt_authentication_token", credential_provider_identifier=PROVIDER,
                subject=f"job-{i}", audiences=["https://ci.example.com"])
            ["authentication_token_id"] for i in range(7)}
    seen, next_token, pages = [], None, 0
    while True:
        page = app("list_authentication_tokens", consumer_id="pam-app",
                   credential_provider_identifier=PROVIDER, max_results=3,
                   next_token=next_token, revoked=False, expired=False)
        pages += 1
        seen.extend(entity["authentication_token_id"] for entity in page["entities"])
        assert all(e["consumer_id"] == "pam-app" and e["revoked"] is False
                   for e in page["entities"])
        next_token = page["next_token"]
        if not next_token:
            break
    assert made <= set(seen) and len(seen) == len(set(seen)) == page["total_count"]
    assert pages == -(-page["total_count"] // 3)


def test_errors_reach_the_client_as_its_own_exceptions(pam: dict[str, Any]) -> None:
    app = pam["app"]
    cases = [
        ({"audiences": ["urn:cloud:idaas:pam"]}, "reserved prefix"),
        ({"audiences": ["https://elsewhere.example.com"]}, "not allowed for provider"),
        ({"issuer": "https://evil.test"}, "issuer 'https://evil.test' is not allowed"),
        ({"expiration": 999999}, "expiration must be from 1 to 7200 seconds"),
        ({"custom_claims": {"sub": "root"}}, "custom claims cannot set registered claims: sub"),
        ({"credential_provider_identifier": "nosuch"}, "no grant for token nosuch"),
    ]
    for overrides, expected in cases:
        kwargs = {"credential_provider_identifier": PROVIDER, "subject": "s",
                  "audiences": ["https://api.example.com"], **overrides}
        with pytest.raises(ClientFailed) as info:
            app("generate_jwt_authentication_token", **kwargs)
        assert info.value.kind == "ClientException", info.value
        assert expected in info.value.message, (overrides, info.value.message)
    with pytest.raises(ClientFailed) as info:
        app("obtain_jwt_authentication_token", consumer_id="other-app",
            authentication_token_id="at_000")
    assert "no token 'at_000' of consumer 'other-app'" in info.value.message
    assert app("validate_authentication_token", token="not-a-token") is False


def test_oauth_token_endpoint_answers(pam: dict[str, Any]) -> None:
    server, ca = pam["server"], str(pam["ca"])
    url = server.url + "/oauth2/token"
    ok = requests.post(url, data={"grant_type": "client_credentials", "scope":
                                  "urn:cloud:idaas:pam|.all"}, auth=("pam-admin", "wrong"),
                       verify=ca, timeout=5)
    assert ok.status_code == 401
    assert ok.json()["error"] == "invalid_client" and ok.headers["WWW-Authenticate"]
    bad_grant = requests.post(url, data={"grant_type": "password"}, verify=ca, timeout=5)
    assert (bad_grant.status_code, bad_grant.json()["error"]) == (400, "unsupported_grant_type")
    assert requests.get(server.url + "/.well-known/jwks.json", verify=ca,
                        timeout=5).json()["keys"][0]["kid"]
    discovery = requests.get(server.url + "/.well-known/openid-configuration", verify=ca,
                             timeout=5).json()
    assert discovery["issuer"] == "https://credenza.test"


def test_api_keys_upstream_tokens_and_token_exchange(pam: dict[str, Any]) -> None:
    app = pam["app"]
    assert app("get_api_key", credential_identifier="vendor-key") == "VENDOR-KEY-42"
    with pytest.raises(ClientFailed) as refused:
        app("get_api_key", credential_identifier="someone-elses")
    assert "pam-app has no grant for api-key someone-elses" in refused.value.message
    first = app("fetch_oauth_authentication_token", credential_provider_identifier="vendor")
    second = app("fetch_oauth_authentication_token", credential_provider_identifier="vendor")
    assert first == second == "up-1"  # fetched once, shared until it nears expiry
    made = app("generate_jwt_authentication_token", credential_provider_identifier=PROVIDER,
               subject="workload-9", audiences=["https://api.example.com"])
    exchanged = app("token_exchange", subject_token=made["jwt_content"]["jwt_value"],
                    subject_token_type="urn:ietf:params:oauth:token-type:jwt")
    token = next(value for key, value in exchanged.items()
                 if key.endswith("access_token") and isinstance(value, str))
    claims = pyjwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["act"]) == ("workload-9", {"sub": "pam-app"})
