"""The audit trail: a line for every issue, revocation, reinstatement, refusal and sign-in of
every API family, with credentials only as HMACs; failing closed when it cannot write."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.config import Config
from credenza.secrets import new_api_key
from credenza.wsgi import make_app
from tests.aws_fixtures import FakeSignin, FaultProxy

PROVIDER = "build-bot"
INSTANCE = "idaas-1"
CLIENT = "203.0.113.9"
HMAC_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes


class Audited:
    """A broker with every family enabled, its app, and the lines of its audit file."""

    def __init__(self, tmp: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
                 **audit: Any) -> None:
        self.tmp = tmp
        self.container_key, container_hash = new_api_key("container-app")
        self.client_secret, client_hash = new_api_key("pam-app")
        self.admin_secret, admin_hash = new_api_key("pam-admin")
        (tmp / "static.yaml").write_text(f"""
users:
  alice: {{password: "{password_hash}", grants: ["prod/admin"], tokens: {{cli: [], ica: []}}}}
  bob: {{password: "{password_hash}", grants: ["dev/reader"]}}
api_keys:
  container-app: {{sha256: "{container_hash}", principal: build-container, grants: ["prod/app"]}}
oauth_clients:
  pam-app: {{sha256: "{client_hash}", tokens: {{{PROVIDER}: []}}}}
  pam-admin: {{sha256: "{admin_hash}", tokens: {{{PROVIDER}: []}},
              admin: [{PROVIDER}]}}
accounts:
  prod: {{id: "111111111111"}}
  dev: {{id: "222222222222"}}
""")
        self.path = tmp / "audit.log"
        config = {
            "credenza": {"plugins": ["static", "aws-sts", "jwt", "sql", "audit"],
                         "data_dir": str(tmp / "data")},
            "api": {"idaas-pam": {"instance_id": INSTANCE}},
            "plugins": {
                "static": {"files": [str(tmp / "static.yaml")]},
                "aws-sts": {"endpoint_url": sts.url, "access_key_id": "testing",
                            "secret_access_key": "env:CREDENZA_TEST_AWS_SECRET",
                            "signin_url": signin.url, "max_attempts": 1},
                "jwt": {"issuer": "https://credenza.test",
                        "providers": {PROVIDER: {"audiences": ["https://api.test"]},
                                      "ica": {"audiences": ["ica"]}}},
                "sql": {},
                "audit": {"path": str(self.path), "hmac_key": HMAC_KEY, **audit},
            },
        }
        self.broker = Broker.from_config(config)
        app = make_app(self.broker)
        self.client = Client(lambda environ, start: app({**environ, "REMOTE_ADDR": CLIENT}, start))
        self.seen = 0

    def new_lines(self) -> list[dict[str, Any]]:
        """The lines written since the last call."""
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        fresh, self.seen = lines[self.seen:], len(lines)
        return [json.loads(line) for line in fresh]

    def events(self) -> list[tuple[str, Any]]:
        """(type, what was asked or acted on) of the new lines, sign-ins left out."""
        return [(line["type"], line.get("asked") or line.get("token_ids"))
                for line in self.new_lines() if line["type"] != "sign-in"]


@pytest.fixture
def audited(tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str):
    made = Audited(tmp_path, sts, signin, password_hash)
    yield made
    made.broker.close()


ALICE = ("alice", "PASSWORD")
BOB = ("bob", "PASSWORD")


def asked(kind: str, target: str, role: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "target": target, "role": role}


def test_a_line_is_complete_and_names_the_credential_only_by_its_hmac(audited: Audited) -> None:
    response = audited.client.get("/v1/container-credentials/prod/app",
                                  headers={"Authorization": audited.container_key})
    assert response.status_code == 200
    sign_in, issued = audited.new_lines()
    request_id = response.headers["X-Request-Id"]
    for line in (sign_in, issued):
        assert line["request_id"] == request_id
        assert line["client"] == CLIENT
        assert line["request"] == {"method": "GET", "path": "/v1/container-credentials/prod/app"}
        assert line["caller"] == {"name": "build-container", "kind": "machine",
                                  "source": "static", "token_id": None}
        assert line["credential"]["type"] == "api-key"
        assert line["time"].endswith("Z")
    assert (sign_in["type"], sign_in["outcome"]) == ("sign-in", "signed-in")
    assert (issued["type"], issued["outcome"]) == ("issued", "issued")
    assert issued["asked"] == asked("aws", "prod", "app")
    assert issued["expires_at"].startswith(response.get_json()["Expiration"].rstrip("Z"))
    # An auditor finds the key's lines with `credenza audit hash`, run here for real.
    config = audited.tmp / "credenza.toml"
    config.write_text(f"""
[credenza]
plugins = ["audit"]
data_dir = "data"
[plugins.audit]
hmac_key = "{HMAC_KEY}"
""")
    hashed = subprocess.run([sys.executable, "-m", "credenza", "--config", str(config), "audit",
                             "hash", "-"], input=audited.container_key + "\n",
                            capture_output=True, text=True, check=True, timeout=60)
    assert hashed.stdout.strip() == issued["credential"]["hmac"]
    assert hashed.stdout.startswith("hmac-sha256:")
    assert audited.container_key.split(".")[1] not in audited.path.read_text()
    assert oct(audited.path.stat().st_mode & 0o777) == "0o600"


def test_afp_and_aws_sdk_families(audited: Audited) -> None:
    client = audited.client
    assert client.get("/account/prod/admin/credentials", auth=ALICE).status_code == 200
    assert audited.events() == [("issued", asked("aws", "prod", "admin"))]
    assert client.get("/account/prod/admin/credentials", auth=BOB).status_code == 403
    (kind, what), = audited.events()
    assert (kind, what) == ("denied", asked("aws", "prod", "admin"))
    assert client.get("/v1/container-credentials/dev/reader",
                      headers={"Authorization": audited.container_key}).status_code == 403
    assert audited.events() == [("denied", asked("aws", "dev", "reader"))]
    wrong = "container-app.not-the-secret"
    assert client.get("/v1/container-credentials/prod/app",
                      headers={"Authorization": wrong}).status_code == 401
    refused, = audited.new_lines()
    assert (refused["type"], refused["outcome"], refused["caller"]) == ("denied", "refused", None)
    assert refused["asked"] == asked("identity", CLIENT)
    assert refused["reason"] == "invalid API key"
    assert refused["credential"]["hmac"] == audited.broker.plugin_manager.get_plugin(
        "audit").hash(wrong)
    assert "not-the-secret" not in audited.path.read_text()


def test_a_failed_password_sign_in_shows_the_user_name_hashed(audited: Audited) -> None:
    assert audited.client.get("/v1/whoami", auth=("alice", "wrong")).status_code == 401
    refused, = audited.new_lines()
    assert refused["credential"] == {
        "type": "password",
        "hmac": audited.broker.plugin_manager.get_plugin("audit").hash("alice")}
    assert "wrong" not in audited.path.read_text()


def test_oauth_family(audited: Audited) -> None:
    client = audited.client
    auth = ("pam-app", audited.client_secret)
    scope = "urn:cloud:idaas:pam|.all"
    granted = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                  "scope": scope}, auth=auth)
    assert granted.status_code == 200, granted.get_json()
    (kind, what), = audited.events()
    assert kind == "issued" and what["kind"] == "token"
    token = granted.get_json()["access_token"]
    assert client.post("/oauth2/revoke", data={"token": token}, auth=auth).status_code == 200
    (kind, ids), = audited.events()
    assert kind == "revoked" and len(ids) == 1
    assert client.post("/oauth2/token", data={"grant_type": "client_credentials", "scope": scope},
                       auth=("pam-app", "wrong-secret")).status_code == 401
    assert [kind for kind, _ in audited.events()] == ["denied"]


def test_idaas_pam_family_with_reinstatement(audited: Audited) -> None:
    client = audited.client
    app = ("pam-app", audited.client_secret)
    admin = ("pam-admin", audited.admin_secret)
    base = f"/v2/{INSTANCE}/authenticationTokens/_/actions"
    made = client.post(f"{base}/generateJwt", auth=app, json={
        "credentialProviderIdentifier": PROVIDER, "subject": "job-1",
        "audiences": ["https://api.test"]})
    assert made.status_code == 200, made.get_json()
    token_id = made.get_json()["authenticationTokenId"]
    assert audited.events() == [("issued", asked("token", PROVIDER))]
    jwt_value = made.get_json()["jwtContent"]["jwtValue"]
    assert client.post(f"{base}/revoke", auth=app, json={"token": jwt_value}).status_code == 200
    assert audited.events() == [("revoked", [token_id])]
    assert client.post(f"{base}/reinstate", auth=app,
                       json={"token": jwt_value}).status_code == 403
    assert audited.events() == [("denied", asked("admin", PROVIDER))]
    assert client.post(f"{base}/reinstate", auth=admin,
                       json={"token": jwt_value}).status_code == 200
    assert audited.events() == [("reinstated", [token_id])]
    assert jwt_value not in audited.path.read_text()


def test_ica_family(audited: Audited) -> None:
    made = audited.client.post("/ica/rest/api/tokens", auth=ALICE)
    assert made.status_code in (200, 201), made.get_json()
    assert audited.events() == [("issued", asked("token", "ica"))]
    assert audited.client.post("/ica/rest/api/tokens", auth=BOB).status_code == 403
    assert audited.events() == [("denied", asked("token", "ica"))]


def test_api_keys_family(audited: Audited) -> None:
    client = audited.client
    made = client.post("/v1/api-keys", auth=ALICE, json={"name": "laptop"})
    assert made.status_code == 200, made.get_json()
    key = made.get_json()
    assert audited.events() == [("issued", asked("api-key", "laptop"))]
    assert client.delete(f"/v1/api-keys/{key['id']}", auth=BOB).status_code == 403
    assert [kind for kind, _ in audited.events()] == ["denied"]
    assert client.delete(f"/v1/api-keys/{key['id']}", auth=ALICE).status_code == 200
    assert audited.events() == [("revoked", [key["id"]])]
    assert key["key"] not in audited.path.read_text()


def test_an_unwritable_sink_fails_requests_closed(tmp_path: Path, sts: FaultProxy,
                                                  signin: FakeSignin, password_hash: str) -> None:
    audited = Audited(tmp_path, sts, signin, password_hash)
    assert audited.client.get("/account/prod/admin/credentials", auth=ALICE).status_code == 200
    audited.path.unlink()
    audited.path.mkdir()  # appending to a directory fails, even as root
    refused = audited.client.get("/account/prod/admin/credentials", auth=ALICE)
    assert refused.status_code == 503
    assert "the audit trail cannot be written" in refused.get_json()["detail"]
    status = audited.client.get("/status")
    assert status.status_code == 503
    assert any(check["component"] == "audit" and not check["ok"]
               for check in status.get_json()["checks"])
    audited.path.rmdir()
    assert audited.client.get("/account/prod/admin/credentials", auth=ALICE).status_code == 200
    audited.broker.close()


def test_fail_open_and_event_selection(tmp_path: Path, sts: FaultProxy, signin: FakeSignin,
                                       password_hash: str) -> None:
    audited = Audited(tmp_path, sts, signin, password_hash, fail_closed=False,
                      events=["issued", "denied"])
    assert audited.client.get("/account/prod/admin/credentials", auth=ALICE).status_code == 200
    assert [line["type"] for line in audited.new_lines()] == ["issued"]  # no sign-in
    audited.path.unlink()
    audited.path.mkdir()
    assert audited.client.get("/account/prod/admin/credentials", auth=ALICE).status_code == 200
    audited.broker.close()


def test_syslog_and_stdout_sinks(tmp_path: Path, sts: FaultProxy, signin: FakeSignin,
                                 password_hash: str) -> None:
    address = str(tmp_path / "log.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        audited = Audited(tmp_path, sts, signin, password_hash, sink="syslog",
                          syslog_address=address, events=["issued"])
        assert audited.client.get("/account/prod/admin/credentials",
                                  auth=ALICE).status_code == 200
        datagram = listener.recv(65536).decode()
        audited.broker.close()
    assert datagram.startswith("<86>credenza-audit: {")  # authpriv.info
    assert json.loads(datagram.split(": ", 1)[1])["asked"] == asked("aws", "prod", "admin")
    os.unlink(address)
    refused = Audited(tmp_path, sts, signin, password_hash, sink="syslog",
                      syslog_address=address)
    assert refused.client.get("/v1/whoami", auth=ALICE).status_code == 503
    refused.broker.close()


def test_settings_are_checked(tmp_path: Path, sts: FaultProxy, signin: FakeSignin,
                              password_hash: str) -> None:
    from credenza.errors import ConfigError
    with pytest.raises(ConfigError, match=r"\[plugins.audit\] events: unknown event 'login'"):
        Audited(tmp_path, sts, signin, password_hash, events=["login"])
    with pytest.raises(ConfigError, match=r"hmac_key: expected the base64 of 32 random bytes"):
        Audited(tmp_path, sts, signin, password_hash, hmac_key="short")


def test_the_guide_finds_a_leaked_keys_lines(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/guides/audit.md: its configuration, and its commands run as written."""
    monkeypatch.setenv("CREDENZA_AUDIT_HMAC_KEY", HMAC_KEY)
    guide = Path(__file__).resolve().parent.parent / "docs" / "guides" / "audit"
    (tmp_path / "credenza.toml").write_text((guide / "credenza.toml").read_text())
    environ = {**os.environ, "CREDENZA_AUDIT_HMAC_KEY": HMAC_KEY,
               "CREDENZA__CREDENZA__DATA_DIR": str(tmp_path / "data"),
               "CREDENZA__PLUGINS__AUDIT__PATH": str(tmp_path / "audit.log"),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    broker = Broker.from_config(Config.load(tmp_path / "credenza.toml", environ))
    app = make_app(broker)
    client = Client(lambda env, start: app({**env, "REMOTE_USER": env.get("HTTP_X_AS", "")},
                                           start))
    key = client.post("/v1/api-keys", headers={"X-As": "alice"},
                      json={"name": "laptop"}).get_json()["key"]
    assert client.get("/v1/whoami", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/v1/whoami", headers={"X-As": "bob"}).status_code == 200
    broker.close()
    page = (guide.parent / "audit.md").read_text()
    block = page.split("```sh\n")[1].split("```")[0].splitlines()
    assert len(block) == 2
    outputs = [subprocess.run(["bash", "-c", command], env={**environ, "LEAKED_KEY": key},
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
               for command in block]
    assert all(ran.returncode == 0 for ran in outputs), [ran.stderr for ran in outputs]
    found = [json.loads(line) for line in outputs[1].stdout.splitlines()]
    assert [(line["type"], line["caller"]["name"]) for line in found] == [("sign-in", "alice")]
    assert found[0]["credential"]["hmac"] == outputs[0].stdout.strip()
