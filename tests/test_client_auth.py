"""credenza.client.Auth against the bundled server (through a counting fault proxy)."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest

from credenza.client import Auth, AuthError, OAuthError
from tests.conftest import (
    QuietHandler,
    Server,
    make_api_token,
    running_server,
    serve_on_loopback,
    write_token_server_config,
)

CLIENT = "cli-app"


class FaultProxy:
    """Forwards to the server; can answer 503 (with Retry-After) for the next N /token calls."""

    def __init__(self, target: str) -> None:
        self.host, self.port = target.split("//")[1].split(":")
        self.token_calls = 0
        self.fail_next = 0
        proxy = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/token":
                    proxy.token_calls += 1
                    if proxy.fail_next:
                        proxy.fail_next -= 1
                        self.reply(503, headers={"Retry-After": "1"})
                        return
                upstream = http.client.HTTPConnection(proxy.host, int(proxy.port), timeout=30)
                upstream.request("POST", self.path, body, dict(self.headers))
                reply = upstream.getresponse()
                self.reply(reply.status, reply.read(), reply.getheader("Content-Type", ""))

        self.server, self.url = serve_on_loopback(Handler)


@pytest.fixture(scope="module")
def broker_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("client")
    config = write_token_server_config(tmp, """
        users:
          alice:
            groups: ["acme:org-admin", ops]
            tokens: {dl: []}
            attributes: {name: Alice, email: Alice@Example.com, org: acme}
        """, "[plugins.jwt.providers.dl]\ndefault_lifetime_seconds = 3600\n")
    with running_server(tmp, ["--config", str(config)]) as server:
        made = make_api_token(config, "alice", CLIENT, "dl")
        yield {"server": server, "secret": made.secret, "blob": made.blob}
        assert server.stop() == 0


@pytest.fixture
def proxy(broker_server: dict[str, Any]) -> Iterator[FaultProxy]:
    server: Server = broker_server["server"]
    made = FaultProxy(server.url)
    yield made
    made.server.shutdown()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CREDENZA_URL", "CREDENZA_TOKEN", "CREDENZA_CLIENT_ID", "CREDENZA_CLIENT_SECRET",
                "CREDENZA_REFRESH_TOKEN", "CREDENZA_TOKEN_INFO_PATH"):
        monkeypatch.delenv(var, raising=False)


def test_token_payload_subjects_and_the_token_info_file(proxy: FaultProxy, tmp_path: Path,
                                                        broker_server: dict[str, Any]) -> None:
    info = tmp_path / "home" / ".credenza" / "token_info.json"
    auth = Auth(proxy.url, CLIENT, broker_server["secret"], token_info_path=info)
    assert auth.payload["aud"] == CLIENT and auth.payload["sub"] == "alice"
    assert auth.all_acl_subjects == [f"user:{auth.namespace}", "email:alice@example.com",
                                     "org:acme", "group:acme:org-admin", "group:ops"]
    assert auth.all_owner_acl_subjects == [f"user:{auth.namespace}", "org:acme"]
    assert info.stat().st_mode & 0o777 == 0o600
    assert info.parent.stat().st_mode & 0o777 == 0o700
    stored = json.loads(info.read_text())
    assert stored["client_id"] == CLIENT and stored["jwt_token"] == auth.token
    assert proxy.token_calls == 1
    # Another Auth with just the file: credentials and the cached token come from it.
    again = Auth(proxy.url, token_info_path=info)
    assert again.token == auth.token and proxy.token_calls == 1


def test_environment_precedence_and_conflicting_files(proxy: FaultProxy, tmp_path: Path,
                                                      broker_server: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "token_info.json"
    info.write_text(json.dumps({"client_id": "other", "refresh_token": "old",
                                "jwt_token": "stale"}))
    monkeypatch.setenv("CREDENZA_URL", proxy.url)
    monkeypatch.setenv("CREDENZA_CLIENT_ID", CLIENT)
    monkeypatch.setenv("CREDENZA_REFRESH_TOKEN", broker_server["secret"])
    monkeypatch.setenv("CREDENZA_TOKEN_INFO_PATH", str(info))
    auth = Auth()
    assert auth.payload["aud"] == CLIENT  # the file's conflicting credentials were not used
    assert json.loads(info.read_text())["client_id"] == CLIENT  # and were overwritten
    with pytest.warns(UserWarning, match="refresh_token and client_secret differ"):
        Auth(proxy.url, CLIENT, client_secret="a", refresh_token="b", token_info_path=None)


def test_leeway_retries_and_transient_failures(proxy: FaultProxy,
                                               broker_server: dict[str, Any]) -> None:
    slept: list[float] = []
    auth = Auth(proxy.url, CLIENT, broker_server["secret"], token_info_path=None,
                sleep=slept.append)
    proxy.fail_next = 2
    first = auth.token
    assert slept == [1.0, 1.0] and proxy.token_calls == 3  # Retry-After honoured
    assert auth.token == first and proxy.token_calls == 3  # cached within the leeway
    auth.leeway = 4000  # longer than the token lives: every access refreshes
    second = auth.token
    assert second != first and proxy.token_calls == 4
    proxy.fail_next = 100
    assert auth.token == second  # the broker is down, the token still valid: kept
    assert proxy.token_calls == 4 + auth.retries + 1


def test_errors(proxy: FaultProxy, broker_server: dict[str, Any]) -> None:
    with pytest.raises(OAuthError, match="could not get a token: 401 invalid client_id or "
                                         "refresh token"):
        _ = Auth(proxy.url, CLIENT, "ak_nope.x", token_info_path=None).token
    with pytest.raises(AuthError, match="no valid token and no client id"):
        _ = Auth(proxy.url, token_info_path=None).token
    proxy.fail_next = 100
    with pytest.raises(AuthError, match="could not get a token after 2 attempts: 503"):
        _ = Auth(proxy.url, CLIENT, broker_server["secret"], token_info_path=None, retries=1,
                 sleep=lambda _: None).token
    proxy.fail_next = 0
    valid = Auth(proxy.url, CLIENT, broker_server["secret"], token_info_path=None).token
    alone = Auth(proxy.url, jwt_token=valid, token_info_path=None)  # no refresh possible
    assert alone.token == valid
    expired = pyjwt.encode({"sub": "x", "exp": 1}, "k" * 32, algorithm="HS256")
    with pytest.raises(AuthError, match="no valid token"):
        _ = Auth(proxy.url, jwt_token=expired, token_info_path=None).token


def test_retries_from_the_environment(proxy: FaultProxy, broker_server: dict[str, Any],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENZA_RETRIES", "2")
    proxy.fail_next = 100
    with pytest.raises(AuthError, match="could not get a token after 3 attempts: 503"):
        _ = Auth(proxy.url, CLIENT, broker_server["secret"], token_info_path=None,
                 sleep=lambda _: None).token
    assert proxy.token_calls == 3
    monkeypatch.setenv("CREDENZA_RETRIES", "many")
    with pytest.raises(AuthError, match="CREDENZA_RETRIES must be a whole number, got 'many'"):
        Auth(proxy.url, token_info_path=None)


RACE = """
import sys
from credenza.client import Auth
auth = Auth(sys.argv[1], sys.argv[2], sys.argv[3], token_info_path=sys.argv[4])
print(auth.token)
"""


def test_two_processes_refreshing_one_file_make_one_request(proxy: FaultProxy, tmp_path: Path,
                                                            broker_server: dict[str, Any]) -> None:
    info = tmp_path / "shared" / "token_info.json"
    args = [sys.executable, "-c", RACE, proxy.url, CLIENT, broker_server["secret"], str(info)]
    processes = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True,
                                  env={**os.environ}) for _ in range(2)]
    tokens = [process.communicate(timeout=60)[0].strip() for process in processes]
    assert tokens[0] == tokens[1] and tokens[0]
    assert proxy.token_calls == 1
    assert json.loads(info.read_text())["jwt_token"] == tokens[0]


def credenza_cli(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDENZA_")}
    return subprocess.run([sys.executable, "-m", "credenza", *args], input=stdin,
                          capture_output=True, text=True, timeout=60,
                          env={**env, "HOME": str(home)})


def test_login_token_and_logout(broker_server: dict[str, Any], tmp_path: Path) -> None:
    logged_in = credenza_cli(tmp_path, "login", "--url", broker_server["server"].url,
                             stdin=broker_server["blob"] + "\n")
    assert logged_in.returncode == 0, logged_in.stderr
    assert logged_in.stdout.strip() == "Welcome, Alice!"
    info = tmp_path / ".credenza" / "token_info.json"
    assert info.stat().st_mode & 0o777 == 0o600
    assert json.loads(info.read_text())["url"] == broker_server["server"].url
    printed = credenza_cli(tmp_path, "token")  # the URL comes from the stored file
    assert printed.returncode == 0, printed.stderr
    assert pyjwt.decode(printed.stdout.strip(), options={"verify_signature": False})["aud"] \
        == CLIENT
    assert credenza_cli(tmp_path, "logout").stdout.strip() == "Logged out."
    assert not info.exists()
    assert credenza_cli(tmp_path, "logout").stdout.strip() == "Not logged in."
    missing = credenza_cli(tmp_path, "token")
    assert missing.returncode == 1 and "no valid token and no client id" in missing.stderr


def test_login_refusals(broker_server: dict[str, Any], tmp_path: Path) -> None:
    garbled = credenza_cli(tmp_path, "login", stdin="not a blob\n")
    assert garbled.returncode == 2 and "that is not an API token blob" in garbled.stderr
    wrong = credenza_cli(tmp_path, "login", "--url", broker_server["server"].url,
                         "--client-id", CLIENT, stdin="ak_wrong.secret\n")
    assert wrong.returncode == 1
    assert "login failed: could not get a token: 401" in wrong.stderr
    assert not (tmp_path / ".credenza" / "token_info.json").exists()
