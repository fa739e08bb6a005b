"""The client's AWS side against the bundled server, moto's STS and real boto3 processes:
``credenza accounts``, ``aws creds|console|exec|profile`` and ``credenza.client.aws_session``."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from credenza.client import (
    Auth,
    BrokerError,
    OAuthError,
    aws_credentials,
    aws_session,
    console_url,
    list_accounts,
)
from tests.aws_fixtures import FakeSignin, FaultProxy, write_aws_config
from tests.conftest import QuietHandler, make_api_token, running_server, serve_on_loopback

CLIENT = "credenza-cli"
JWT = f"""
issuer = "https://credenza.test"
[plugins.jwt.providers.cli]
audiences = ["{CLIENT}"]
identity = true
"""


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, _sts_proxy: FaultProxy,
           _signin: FakeSignin, password_hash: str,
           container_key: tuple[str, str]) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("client-aws")
    # one worker: one credential cache, so separate calls may be compared
    config = write_aws_config(tmp, _sts_proxy, _signin, password_hash, container_key, jwt=JWT,
                              server="workers = 1")
    with running_server(tmp, ["--config", str(config)]) as server:
        made = make_api_token(config, "alice", CLIENT, "cli", server.url)
        yield {"url": server.url, "secret": made.secret, "blob": made.blob, "config": config}
        assert server.stop() == 0


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """A client's environment: its own token_info file and AWS config, no AWS credentials."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CREDENZA_", "AWS_"))}
    return {**env, "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
            "CREDENZA_TOKEN_INFO_PATH": str(tmp_path / ".credenza" / "token_info.json"),
            "AWS_CONFIG_FILE": str(tmp_path / ".aws" / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / ".aws" / "credentials")}


def credenza(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "credenza", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def logged_in(home: dict[str, str], broker: dict[str, Any]) -> dict[str, str]:
    done = credenza(home, "login", stdin=broker["blob"] + "\n")
    assert done.returncode == 0, done.stderr
    return home


def test_accounts_are_the_callers(logged_in: dict[str, str]) -> None:
    listed = credenza(logged_in, "accounts", "--json")
    assert listed.returncode == 0, listed.stderr
    # alice's group grants prod/admin, prod/viewer, dev/* (a wildcard names no role to list),
    # cn/admin and ghost/admin (not in the catalogue)
    assert json.loads(listed.stdout) == {
        "cn": {"id": "333333333333", "roles": ["admin"]},
        "prod": {"id": "111111111111", "roles": ["admin", "viewer"]}}
    table = credenza(logged_in, "accounts").stdout.splitlines()
    assert [line.split() for line in table] == [["cn", "333333333333", "admin"],
                                                 ["prod", "111111111111", "admin,", "viewer"]]


def test_creds_formats(logged_in: dict[str, str], sts: FaultProxy) -> None:
    env_out = credenza(logged_in, "aws", "creds", "prod", "admin", "--format", "env")
    assert env_out.returncode == 0, env_out.stderr
    shell = subprocess.run(["bash", "-c", env_out.stdout + "\nenv"], capture_output=True,
                           text=True, check=True, env={"PATH": os.environ["PATH"]})
    exported = dict(line.split("=", 1) for line in shell.stdout.splitlines() if "=" in line)
    process = json.loads(credenza(logged_in, "aws", "creds", "prod", "admin", "--format",
                                  "process").stdout)
    assert set(process) == {"Version", "AccessKeyId", "SecretAccessKey", "SessionToken",
                            "Expiration", "AccountId"}
    assert process["AccessKeyId"] == exported["AWS_ACCESS_KEY_ID"]
    assert process["SessionToken"] == exported["AWS_SESSION_TOKEN"]
    assert process["Expiration"] == exported["AWS_CREDENTIAL_EXPIRATION"]
    expires = dt.datetime.strptime(process["Expiration"], "%Y-%m-%dT%H:%M:%SZ")
    # at least 30 minutes left, so botocore does not come straight back for more
    assert expires - dt.datetime.now(dt.UTC).replace(tzinfo=None) > dt.timedelta(minutes=30)
    assert process["AccountId"] == "111111111111"
    # the session is named after the user the token identifies
    names = [call["RoleSessionName"] for call in sts.assume_role_calls()]
    assert names and set(names) == {"alice"}


def test_a_real_boto3_process_uses_the_written_profile(logged_in: dict[str, str],
                                                       tmp_path: Path, sts: FaultProxy) -> None:
    config = Path(logged_in["AWS_CONFIG_FILE"])
    config.parent.mkdir()
    config.write_text("# mine\n[profile other]\nregion = us-east-1\n\n"
                      "[profile prod-admin]\nregion = ap-south-1\ncredential_process = old\n")
    written = credenza(logged_in, "aws", "profile", "prod", "admin", "--region", "eu-west-1")
    assert written.returncode == 0, written.stderr
    text = config.read_text()
    assert text.startswith("# mine\n[profile other]\nregion = us-east-1\n")
    assert text.count("[profile prod-admin]") == 1 and "old" not in text
    assert config.stat().st_mode & 0o777 == 0o600
    script = textwrap.dedent(f"""
        import boto3, json
        session = boto3.Session(profile_name="prod-admin")
        identity = session.client("sts", endpoint_url="{sts.url}").get_caller_identity()
        credentials = session.get_credentials()
        print(json.dumps({{"arn": identity["Arn"], "method": credentials.method,
                          "region": session.region_name}}))
    """)
    run = subprocess.run([sys.executable, "-c", script], env=logged_in, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == {
        "arn": "arn:aws:sts::111111111111:assumed-role/admin/alice",
        "method": "custom-process", "region": "eu-west-1"}


def test_exec_puts_credentials_in_the_childs_environment(logged_in: dict[str, str]) -> None:
    env = {**logged_in, "AWS_PROFILE": "somewhere-else"}
    child = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in ("
             "'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN', "
             "'AWS_CREDENTIAL_EXPIRATION', 'AWS_PROFILE')})); raise SystemExit(7)")
    ran = credenza(env, "aws", "exec", "prod", "admin", "--", sys.executable, "-c", child)
    assert ran.returncode == 7, ran.stderr  # the child's exit status
    seen = json.loads(ran.stdout)
    expected = json.loads(credenza(logged_in, "aws", "creds", "prod", "admin").stdout)
    assert seen == {"AWS_ACCESS_KEY_ID": expected["AccessKeyId"],
                    "AWS_SECRET_ACCESS_KEY": expected["SecretAccessKey"],
                    "AWS_SESSION_TOKEN": expected["SessionToken"],
                    "AWS_CREDENTIAL_EXPIRATION": expected["Expiration"], "AWS_PROFILE": None}
    missing = credenza(logged_in, "aws", "exec", "prod", "admin", "--", "no-such-command-x")
    assert missing.returncode == 127 and "cannot run 'no-such-command-x'" in missing.stderr


def test_console_prints_or_opens_the_sign_in_url(logged_in: dict[str, str], signin: FakeSignin,
                                                 tmp_path: Path) -> None:
    printed = credenza(logged_in, "aws", "console", "prod", "admin")
    assert printed.returncode == 0, printed.stderr
    url = urllib.parse.urlsplit(printed.stdout.strip())
    assert f"{url.scheme}://{url.netloc}{url.path}" == signin.url
    assert dict(urllib.parse.parse_qsl(url.query))["Action"] == "login"
    # --open hands it to the browser ($BROWSER) and prints no secret
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(0o700)
    done = credenza({**logged_in, "BROWSER": str(browser)}, "aws", "console", "prod", "admin",
                    "--open")
    assert done.returncode == 0, done.stderr
    assert "SigninToken" in opened.read_text() and "SigninToken" not in done.stdout + done.stderr
    assert done.stderr.strip() == "Opened the AWS console for admin in prod."


@pytest.mark.parametrize(("args", "error"), [
    (["../prod", "admin"], "'../prod' is not a valid account name"),
    (["prod", ".."], "'..' is not a valid IAM role name"),
    (["prod", "admin%2f..%2fx"], "is not a valid IAM role name"),
    (["prod", "a/b"], "'a/b' is not a valid IAM role name"),
])
def test_names_are_checked_before_any_request(home: dict[str, str], args: list[str],
                                              error: str) -> None:
    # not even logged in: the name is refused before anything is asked of anyone
    refused = credenza(home, "aws", "creds", *args)
    assert refused.returncode == 2 and error in refused.stderr


def test_refusals_say_what_was_wrong(logged_in: dict[str, str], home: dict[str, str],
                                     sts: FaultProxy, tmp_path: Path) -> None:
    forbidden = credenza(logged_in, "aws", "creds", "prod", "app")
    assert (forbidden.returncode, forbidden.stderr.strip()) == (
        1, "credenza: 403 Forbidden: alice has no grant for aws prod role app")
    unknown = credenza(logged_in, "aws", "console", "nowhere", "admin")
    assert unknown.stderr.strip() == "credenza: 404 Not Found: unknown account 'nowhere'"
    sts.mode = "error"
    down = credenza({**logged_in, "CREDENZA_RETRIES": "0"}, "aws", "creds", "cn", "admin")
    assert down.returncode == 1 and down.stderr.startswith("credenza: 503 Service Unavailable:")
    assert down.stdout == ""
    nobody = credenza({**home, "CREDENZA_TOKEN_INFO_PATH": str(tmp_path / "none.json")},
                      "aws", "creds", "prod", "admin")
    assert nobody.returncode == 1 and "credenza login" in nobody.stderr


def test_aws_session_refreshes_its_credentials(broker: dict[str, Any], sts: FaultProxy) -> None:
    auth = Auth(broker["url"], CLIENT, broker["secret"], token_info_path=None)
    session = aws_session("prod", "viewer", auth=auth, region_name="eu-west-1")
    client = session.client("sts", endpoint_url=sts.url)
    assert client.get_caller_identity()["Arn"].endswith(":assumed-role/viewer/alice")
    credentials = session.get_credentials()
    assert credentials.method == "credenza"
    # Time passing (here: the expiry moved near): botocore asks the broker again.
    credentials._expiry_time = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    frozen = credentials.get_frozen_credentials()
    assert credentials._expiry_time > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)
    assert frozen.access_key == aws_credentials("prod", "viewer", auth).access_key_id
    with pytest.raises(BrokerError, match="403 Forbidden: alice has no grant"):
        aws_session("prod", "app", auth=auth).get_credentials()
    with pytest.raises(ValueError, match="not a valid IAM role name"):
        aws_session("prod", "../admin", auth=auth)


def test_a_refused_token_is_replaced_once(broker: dict[str, Any], tmp_path: Path) -> None:
    info = tmp_path / "token_info.json"
    now = int(dt.datetime.now(dt.UTC).timestamp())
    # Looks valid to the client (right audience, not expired); the broker never signed it.
    forged = pyjwt.encode({"sub": "alice", "aud": CLIENT, "exp": now + 3600, "iat": now,
                           "iss": "https://credenza.test", "jti": "at_forged"},
                          ec.generate_private_key(ec.SECP256R1()), algorithm="ES256",
                          headers={"kid": "unknown"})
    info.write_text(json.dumps({"client_id": CLIENT, "refresh_token": broker["secret"],
                                "jwt_token": forged, "url": broker["url"]}))
    auth = Auth(token_info_path=info)
    assert auth.token == forged
    assert aws_credentials("prod", "admin", auth).account_id == "111111111111"
    assert auth.token != forged and json.loads(info.read_text())["jwt_token"] == auth.token
    # Without a refresh token there is nothing to replace it with: the refusal stands.
    stuck = Auth(broker["url"], jwt_token=forged, token_info_path=None)
    with pytest.raises(BrokerError, match="401 Unauthorized: token signed with an unknown key"):
        aws_credentials("prod", "admin", stuck)


def test_answers_that_are_not_credentials_are_errors(tmp_path: Path) -> None:
    """A proxy's HTML page or a hostile console "URL" never becomes credentials or a browser
    target."""
    answers = {"/v1/container-credentials/prod/admin": (b"<html>login</html>", "text/html"),
               "/account/prod/admin/consoleurl": (b"javascript:alert(1)", "text/plain"),
               "/account?withid": (b"[]", "application/json")}

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            body, kind = answers[self.path]
            self.reply(200, body, kind)

    server, url = serve_on_loopback(Handler)
    token = pyjwt.encode({"sub": "alice", "exp": int(dt.datetime.now(dt.UTC).timestamp()) + 600},
                         "k" * 32)
    auth = Auth(url, jwt_token=token, token_info_path=None)
    try:
        with pytest.raises(BrokerError, match="502 Bad Gateway: the broker answered credentials "
                                              "with something that is not a JSON object"):
            aws_credentials("prod", "admin", auth)
        with pytest.raises(BrokerError, match="console URL that is not a web address"):
            console_url("prod", "admin", auth)
        with pytest.raises(BrokerError, match="the account list with something that is not"):
            list_accounts(auth)
    finally:
        server.shutdown()


def test_revoking_the_api_token_ends_its_jwts_at_once(broker: dict[str, Any]) -> None:
    secret = make_api_token(broker["config"], "alice", CLIENT, "cli", broker["url"]).secret
    auth = Auth(broker["url"], CLIENT, secret, token_info_path=None)
    assert aws_credentials("prod", "admin", auth).account_id == "111111111111"
    revoked = requests.post(
        f"{broker['url']}/v2/credenza/authenticationTokens/_/actions/revoke",
        json={"token": secret}, auth=("alice", "PASSWORD"), timeout=10)
    assert revoked.status_code == 200, revoked.text
    # The JWT has most of its hour left; the broker refuses it, and no new one can be had.
    assert auth.payload["exp"] > dt.datetime.now(dt.UTC).timestamp() + 1800
    with pytest.raises(OAuthError, match="401 invalid client_id or refresh token"):
        aws_credentials("prod", "admin", auth)
    stuck = Auth(broker["url"], jwt_token=auth.token, token_info_path=None)
    with pytest.raises(BrokerError, match="401 Unauthorized: its API token has been revoked"):
        aws_credentials("prod", "admin", stuck)


TRACED = ("import atexit, sys\n"
          "atexit.register(lambda: print('answered by the', 'full client' if 'credenza.cli' in "
          "sys.modules else 'quick path', file=sys.stderr))\n"
          "sys.argv = ['credenza', *sys.argv[1:]]\n"
          "from credenza.entry import main\n"
          "main()\n")


def traced(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """``credenza ARGS`` through the console script's entry point, saying who answered."""
    return subprocess.run([sys.executable, "-c", TRACED, *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_a_warm_credential_process_call_is_answered_without_the_client(
        logged_in: dict[str, str], tmp_path: Path) -> None:
    process = ("aws", "creds", "prod", "admin", "--format", "process")
    full = credenza(logged_in, *process)  # logs the JWT into token_info, warms the cache
    quick = traced(logged_in, *process)
    assert quick.returncode == 0 and "answered by the quick path" in quick.stderr
    assert json.loads(quick.stdout).keys() == json.loads(full.stdout).keys()
    assert json.loads(quick.stdout)["Version"] == 1

    # Whatever it cannot answer as the client would goes to the client, which explains it.
    refused = traced(logged_in, "aws", "creds", "prod", "app", "--format", "process")
    assert refused.returncode == 1 and "answered by the full client" in refused.stderr
    assert "403 Forbidden: alice has no grant for aws prod role app" in refused.stderr
    proxied = traced({**logged_in, "HTTPS_PROXY": "http://127.0.0.1:9", "CREDENZA_RETRIES": "0",
                      "NO_PROXY": "127.0.0.1"}, *process)
    assert proxied.returncode == 0 and "answered by the full client" in proxied.stderr
    info_path = Path(logged_in["CREDENZA_TOKEN_INFO_PATH"])
    info = json.loads(info_path.read_text())
    claims = pyjwt.decode(info["jwt_token"], options={"verify_signature": False})
    stale = pyjwt.encode({**claims, "exp": int(dt.datetime.now(dt.UTC).timestamp()) + 60},
                         "not-the-brokers-key-" * 2, algorithm="HS256")  # expires soon
    info_path.write_text(json.dumps({**info, "jwt_token": stale}))
    refreshed = traced(logged_in, *process)
    assert refreshed.returncode == 0 and "answered by the full client" in refreshed.stderr
    assert json.loads(info_path.read_text())["jwt_token"] != stale  # the client refreshed it
    again = traced(logged_in, *process)
    assert "answered by the quick path" in again.stderr
