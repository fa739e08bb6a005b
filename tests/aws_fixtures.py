"""AWS on loopback: moto's STS server, a fault proxy in front of it, a fake sign-in endpoint.

moto is the real local STS. The fault proxy forwards to it unchanged (Host header included) or
answers like a failing STS (throttling, 5xx, AccessDenied, a hang) and records every call, so
tests can count AssumeRole calls. The sign-in endpoint (getSigninToken) is the one part of AWS
that cannot run here: a small fake answers it and records what it was sent.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from credenza.secrets import hash_password, new_api_key
from tests.conftest import QuietHandler, serve_on_loopback

STS_ERROR = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
             "<Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>"
             "<RequestId>credenza-test</RequestId></ErrorResponse>")
FAULTS = {
    "throttle": (400, "Sender", "Throttling", "Rate exceeded"),
    "error": (500, "Receiver", "InternalFailure", "An internal error occurred"),
    "deny": (403, "Sender", "AccessDenied", "User is not authorized to perform sts:AssumeRole"),
    "invalid": (400, "Sender", "ValidationError", "The requested DurationSeconds exceeds the "
                "MaxSessionDuration set for this role."),
}


class FaultProxy:
    """A loopback proxy to STS whose behaviour a test sets: ``mode`` and ``delay``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.calls: list[dict[str, str]] = []
        #: for each call, whether it carried an AWS signature
        self.signed: list[bool] = []
        self.mode = "pass"
        self.delay = 0.0
        self._lock = threading.Lock()
        proxy = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                params = dict(urllib.parse.parse_qsl(body.decode()))
                with proxy._lock:
                    proxy.calls.append(params)
                    proxy.signed.append("Authorization" in self.headers)
                    mode, delay = proxy.mode, proxy.delay
                time.sleep(delay)
                if mode == "hang":
                    time.sleep(3)
                    return
                if mode in FAULTS:
                    status, kind, code, message = FAULTS[mode]
                    payload = STS_ERROR.format(kind=kind, code=code, message=message).encode()
                    self.reply(status, payload, "text/xml")
                    return
                upstream = http.client.HTTPConnection(*proxy.target, timeout=10)
                upstream.request("POST", self.path, body, dict(self.headers))
                reply = upstream.getresponse()
                data = reply.read()
                self.send_response(reply.status)
                for name, value in reply.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server, self.url = serve_on_loopback(Handler)

    def reset(self) -> None:
        """Back to forwarding everything, with no calls recorded."""
        with self._lock:
            self.calls.clear()
            self.signed.clear()
            self.mode, self.delay = "pass", 0.0

    def assume_role_calls(self) -> list[dict[str, str]]:
        """The AssumeRole requests received so far."""
        with self._lock:
            return [call for call in self.calls if call.get("Action") == "AssumeRole"]


class FakeSignin:
    """AWS's federation endpoint: getSigninToken, and the login a browser is sent to (a page
    saying whether its sign-in token is one this fake issued)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.down = False
        self.issued: set[str] = set()
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
                fake.requests.append(query)
                if not fake.down and query.get("Action") == "login":
                    valid = query.get("SigninToken") in fake.issued
                    page = (f"<h1>AWS Management Console</h1><p id=signin>"
                            f"{'valid' if valid else 'invalid'} sign-in token</p>")
                    self.reply(200 if valid else 400, page.encode(), "text/html")
                    return
                if fake.down or query.get("Action") != "getSigninToken":
                    self.reply(500 if fake.down else 400)
                    return
                token = f"SIGNIN-TOKEN-{len(fake.requests)}"
                fake.issued.add(token)
                self.reply(200, json.dumps({"SigninToken": token}).encode())

        self.server, base = serve_on_loopback(Handler)
        self.url = f"{base}/federation"


@contextlib.contextmanager
def local_aws() -> Iterator[tuple[FaultProxy, FakeSignin]]:
    """moto's STS behind a fault proxy, and the fake sign-in endpoint, for a script (the
    benchmarks); the fixtures below give tests the same with their own scopes."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    proxy, signin = FaultProxy(moto.get_host_and_port()), FakeSignin()
    try:
        yield proxy, signin
    finally:
        proxy.server.shutdown()
        signin.server.shutdown()
        moto.stop()


@pytest.fixture(scope="session")
def moto_sts() -> Iterator[tuple[str, int]]:
    """moto's server on loopback, for the whole session."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield server.get_host_and_port()
    server.stop()


@pytest.fixture(scope="session")
def _sts_proxy(moto_sts: tuple[str, int]) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_sts)
    yield proxy
    proxy.server.shutdown()


@pytest.fixture
def sts(_sts_proxy: FaultProxy) -> FaultProxy:
    """The STS fault proxy, reset for this test."""
    _sts_proxy.reset()
    return _sts_proxy


@pytest.fixture(scope="session")
def _signin() -> Iterator[FakeSignin]:
    fake = FakeSignin()
    yield fake
    fake.server.shutdown()


@pytest.fixture
def signin(_signin: FakeSignin) -> FakeSignin:
    """The fake sign-in endpoint, reset for this test."""
    _signin.requests.clear()
    _signin.down = False
    return _signin


@pytest.fixture(scope="session")
def password_hash() -> str:
    """The scrypt hash of afp-cli's testing password, made once (scrypt is slow on purpose)."""
    return hash_password("PASSWORD")


@pytest.fixture(scope="session")
def container_key() -> tuple[str, str]:
    """An API key for the container credentials endpoint and its stored hash."""
    return new_api_key("container-app")


STATIC_YAML = """
users:
  alice:
    password: "{password}"
    groups: [ops]
    tokens: {{cli: []}}
    attributes: {{department: platform, email: alice@example.com}}
  bob:
    password: "{password}"
    grants: ["dev/reader"]
  "127.0.0.1":
    kind: machine
    grants: ["prod/app"]
api_keys:
  container-app:
    sha256: "{key_hash}"
    principal: build-container
    grants: ["prod/app", "dev/reader"]
groups:
  ops:
    grants: ["prod/admin", "prod/viewer", "dev/*", "cn/admin", "ghost/admin"]
accounts:
  prod: {{id: "111111111111", region: eu-west-1, default_duration: 3600, max_duration: 43200}}
  dev: {{id: "222222222222", external_id: "ext-dev-42"}}
  cn: {{id: "333333333333", partition: aws-cn, role_path: /team/}}
"""


def write_aws_config(tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
                     container_key: tuple[str, str], *, environ_field: str | None = None,
                     aws_sts: str = "", server: str = "", jwt: str = "",
                     sql: str | None = None) -> Path:
    """A configuration with static users/keys/accounts and aws-sts pointed at the fault proxy;
    with ``jwt`` (the body of ``[plugins.jwt]``), the jwt and sql plugins too; with ``sql``
    (the body of ``[plugins.sql]``), the sql plugin."""
    (tmp_path / "static.yaml").write_text(STATIC_YAML.format(
        password=password_hash, key_hash=container_key[1]))
    plugins = ["static", *(["environ"] if environ_field else []), "aws-sts",
               *(["jwt"] if jwt else []), *(["sql"] if jwt or sql is not None else [])]
    environ = (f'[plugins.environ]\nfield = "{environ_field}"\nkind = "machine"\n'
               if environ_field else "")
    config = tmp_path / "credenza.toml"
    config.write_text(f"""
[credenza]
plugins = {json.dumps(plugins)}
data_dir = "data"

[server]
{server}

[plugins.static]
files = ["static.yaml"]

{environ}
[plugins.aws-sts]
endpoint_url = "{sts.url}"
access_key_id = "testing"
secret_access_key = "env:CREDENZA_TEST_AWS_SECRET"
signin_url = "{signin.url}"
callback_urls = ["https://intranet.example.com/aws/"]
max_attempts = 2
timeout_seconds = 1
{aws_sts}
{"[plugins.jwt]" if jwt else ""}
{jwt}
{"[plugins.sql]" if sql is not None else ""}
{sql or ""}
""")
    return config
