"""AWS federation through the afp-compatible API, against moto's STS (through a fault proxy)."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.errors import ConfigError
from credenza.models import Account
from credenza.plugins.aws_sts import PARTITION_HOSTS, session_name
from credenza.wsgi import make_app
from tests.aws_fixtures import FakeSignin, FaultProxy, write_aws_config
from tests.conftest import running_server

ALICE = ("alice", "PASSWORD")
BOB = ("bob", "PASSWORD")


@pytest.fixture
def make_client(tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
                container_key: tuple[str, str]):
    def make(**options: str) -> Client:
        config = write_aws_config(tmp_path, sts, signin, password_hash, container_key, **options)
        return Client(make_app(Broker.from_config(config)))
    return make


@pytest.fixture
def client(make_client) -> Client:
    return make_client()


def test_accounts_lists_catalogue_roles_with_username_header(client: Client) -> None:
    response = client.get("/account", auth=ALICE)
    assert response.status_code == 200
    assert response.headers["X-Username"] == "alice"
    # dev/* names no role to list; "ghost" is granted but not in the catalogue
    assert response.get_json() == {"cn": ["admin"], "prod": ["admin", "viewer"]}
    with_id = client.get("/account?withid", auth=ALICE).get_json()
    assert with_id["prod"] == {"id": "111111111111", "roles": ["admin", "viewer"]}


def test_credentials_come_from_sts_in_afp_shape(client: Client, sts: FaultProxy) -> None:
    response = client.get("/account/prod/admin/credentials", auth=ALICE)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert set(body) == {"Code", "Type", "AccessKeyId", "SecretAccessKey", "Token", "Expiration",
                         "LastUpdated"}
    assert (body["Code"], body["Type"]) == ("Success", "AWS-HMAC")
    assert body["AccessKeyId"].startswith("ASIA")
    assert body["Expiration"].endswith("Z") and len(body["Expiration"]) == 20
    call, = sts.assume_role_calls()
    assert call["RoleArn"] == "arn:aws:iam::111111111111:role/admin"
    assert call["RoleSessionName"] == "alice"
    assert call["DurationSeconds"] == "3600"


def test_partition_role_path_external_id_duration_and_wildcard(client: Client,
                                                               sts: FaultProxy) -> None:
    assert client.get("/account/cn/admin/credentials", auth=ALICE).status_code == 200
    assert client.get("/account/dev/deployer/credentials?duration=1800",
                      auth=ALICE).status_code == 200  # via dev/*
    cn, dev = sts.assume_role_calls()
    assert cn["RoleArn"] == "arn:aws-cn:iam::333333333333:role/team/admin"
    assert "ExternalId" not in cn
    assert dev["RoleArn"] == "arn:aws:iam::222222222222:role/deployer"
    assert dev["ExternalId"] == "ext-dev-42"
    assert dev["DurationSeconds"] == "1800"


def test_session_tags_and_source_identity(make_client, sts: FaultProxy) -> None:
    client = make_client(aws_sts='source_identity = true\n'
                                 '[plugins.aws-sts.session_tags]\nDepartment = "department"\n'
                                 'Email = "email"\nMissing = "nothing"\n')
    assert client.get("/account/prod/admin/credentials", auth=ALICE).status_code == 200
    call, = sts.assume_role_calls()
    assert call["SourceIdentity"] == "alice"
    tags = {call[f"Tags.member.{i}.Key"]: call[f"Tags.member.{i}.Value"] for i in (1, 2)}
    assert tags == {"Department": "platform", "Email": "alice@example.com"}
    assert "Tags.member.3.Key" not in call


@pytest.mark.parametrize("name", ["alice", "a.b@c", "x" * 64, "ab"])
def test_valid_session_names_are_kept(name: str) -> None:
    assert session_name(name) == name


def test_derived_session_names_are_valid_deterministic_and_distinct() -> None:
    names = ["a", "a b", "a-b", "jörg", "x" * 65, "x" * 66, "CN=Bob,OU=People", "a=b", "🙂"]
    derived = [session_name(name) for name in names]
    assert all(len(d) <= 64 and "=" in d for d in derived[:2] + derived[3:])
    assert derived[2] == "a-b"  # valid as it is
    assert len(set(derived)) == len(names)
    assert derived == [session_name(name) for name in names]
    import re
    assert all(re.fullmatch(r"[\w+=,.@-]{2,64}", d, re.ASCII) for d in derived)


def test_cache_serves_repeats_and_refreshes_for_a_longer_need(client: Client,
                                                              sts: FaultProxy) -> None:
    first = client.get("/account/prod/admin/credentials", auth=ALICE).get_json()
    second = client.get("/account/prod/admin/credentials", auth=ALICE).get_json()
    assert first["AccessKeyId"] == second["AccessKeyId"]
    assert len(sts.assume_role_calls()) == 1
    # Another principal, another duration: separate entries.
    client.get("/account/prod/admin/credentials?duration=7200", auth=ALICE)
    assert len(sts.assume_role_calls()) == 2


def test_short_credentials_are_served_again(client: Client, sts: FaultProxy) -> None:
    """900 s credentials never outlived the 900 s refresh margin: every request called STS."""
    url = "/account/prod/admin/credentials?duration=900"
    first, second = (client.get(url, auth=ALICE).get_json() for _ in range(2))
    assert first["AccessKeyId"] == second["AccessKeyId"]
    assert len(sts.assume_role_calls()) == 1


def test_single_flight_many_concurrent_requests_cause_one_sts_call(client: Client,
                                                                    sts: FaultProxy) -> None:
    sts.delay = 0.3  # every concurrent request arrives while the first is in flight
    results: list[str] = []

    def fetch() -> None:
        body = client.get("/account/prod/viewer/credentials", auth=ALICE).get_json()
        results.append(body["AccessKeyId"])

    threads = [threading.Thread(target=fetch) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 16 and len(set(results)) == 1
    assert len(sts.assume_role_calls()) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_replicas_sharing_a_store_make_one_sts_call(
        request: pytest.FixtureRequest, tmp_path: Path, sts: FaultProxy, signin: FakeSignin,
        password_hash: str, container_key: tuple[str, str], backend: str) -> None:
    """Two servers of two workers each: on SQLite they share a data directory (the workers of
    one host); on PostgreSQL each has its own, with the cache key from the configuration."""
    key = base64.b64encode(b"r" * 32).decode()
    url = request.getfixturevalue("postgres").database() if backend == "postgresql" else None
    with contextlib.ExitStack() as stack:
        servers = []
        for name in ("one", "two"):
            directory = tmp_path if url is None else tmp_path / name
            directory.mkdir(exist_ok=True)
            config = write_aws_config(
                directory, sts, signin, password_hash, container_key,
                server="workers = 2", sql=f'url = "{url}"' if url else "",
                aws_sts=f'cache_key = "{key}"' if url else "")
            servers.append(stack.enter_context(running_server(directory,
                                                              ["--config", str(config)])))
        sts.delay = 0.3  # every request arrives while the first call is in flight
        with ThreadPoolExecutor(20) as pool:
            bodies = list(pool.map(lambda i: requests.get(
                f"{servers[i % 2].url}/account/prod/viewer/credentials", auth=ALICE,
                timeout=30).json(), range(20)))
    assert len({body["AccessKeyId"] for body in bodies}) == 1
    assert len(sts.assume_role_calls()) == 1


@pytest.mark.parametrize(("mode", "status", "detail"), [
    ("throttle", 503, "STS is unavailable (Throttling) after 2 attempts"),
    ("error", 503, "STS is unavailable (InternalFailure) after 2 attempts"),
    ("hang", 503, "cannot reach STS: ReadTimeoutError"),
    ("deny", 403, "AWS denied AssumeRole arn:aws:iam::111111111111:role/admin: User is not "
                  "authorized to perform sts:AssumeRole"),
    ("invalid", 400, "STS refused AssumeRole arn:aws:iam::111111111111:role/admin: "
                     "ValidationError: The requested DurationSeconds exceeds the "
                     "MaxSessionDuration set for this role."),
])
def test_sts_faults_become_clear_errors_never_partial_answers(client: Client, sts: FaultProxy,
                                                              mode: str, status: int,
                                                              detail: str) -> None:
    sts.mode = mode
    response = client.get("/account/prod/admin", auth=ALICE)
    assert response.status_code == status
    body = response.get_json()
    assert body["detail"] == detail and body["message"] == detail
    assert "AccessKeyId" not in body and "ConsoleUrl" not in body
    if status == 503:
        assert int(response.headers["Retry-After"]) > 0
    retried = mode in ("throttle", "error", "hang")
    assert len(sts.assume_role_calls()) == (2 if retried else 1)


def test_cached_credentials_are_served_while_sts_is_down(client: Client, sts: FaultProxy) -> None:
    first = client.get("/account/prod/admin/credentials", auth=ALICE).get_json()
    sts.mode = "error"
    # The metadata endpoints need 30 minutes more than the cache holds after a refresh margin
    # of 15: the refresh fails, and the still-valid credentials are served.
    again = client.get("/account/prod/admin/credentials", auth=ALICE)
    assert again.status_code == 200
    assert again.get_json()["AccessKeyId"] == first["AccessKeyId"]


def test_identity_authorization_and_names(client: Client, sts: FaultProxy) -> None:
    unauthenticated = client.get("/account/prod/admin")
    assert unauthenticated.status_code == 401
    assert unauthenticated.get_json()["message"] == "no valid credentials were presented"
    wrong = client.get("/account", auth=("alice", "wrong"))
    assert wrong.status_code == 401
    assert wrong.get_json()["detail"] == "invalid user name or password"
    stranger = client.get("/account", auth=("mallory", "PASSWORD"))
    assert stranger.get_json()["detail"] == "invalid credentials"
    forbidden = client.get("/account/prod/admin", auth=BOB)
    assert forbidden.status_code == 403
    assert forbidden.get_json()["message"] == "bob has no grant for aws prod role admin"
    unknown = client.get("/account/staging/admin", auth=ALICE)
    assert unknown.status_code == 404
    assert unknown.get_json()["message"] == "unknown account 'staging'"
    too_long = client.get("/account/prod/admin?duration=50000", auth=ALICE)
    assert too_long.status_code == 400
    assert sts.assume_role_calls() == []


@pytest.mark.parametrize("path", [
    "/account/../admin",
    "/account/prod/..",
    "/account/%2e%2e/admin",
    "/account/pr\u043ed/admin",          # Cyrillic o
    "/account/prod/\uff41dmin",          # fullwidth a
    "/account/prod/admin%00/credentials",
    "/account/prod\\dev/admin",
])
def test_path_traversal_and_look_alikes_are_refused(client: Client, sts: FaultProxy,
                                                    path: str) -> None:
    response = client.get(path, auth=ALICE)
    assert response.status_code == 400, (path, response.status_code, response.get_data())
    assert response.get_json()["message"]
    assert sts.assume_role_calls() == []


def test_encoded_slash_is_refused_before_routing(client: Client, sts: FaultProxy) -> None:
    # A server decodes %2F before routing; credenza reads the raw URI the server keeps.
    response = client.get("/account/prod/admin/credentials", auth=ALICE,
                          environ_overrides={"RAW_URI": "/account/prod%2Fdev/admin/credentials"})
    assert response.status_code == 400
    assert response.get_json()["message"] == ("the path contains an encoded slash, a backslash "
                                              "or a NUL character")
    assert sts.assume_role_calls() == []


def test_console_url_uses_credentials_and_allowed_callback(client: Client,
                                                           signin: FakeSignin) -> None:
    callback = "https://intranet.example.com/aws/portal?x=1"
    response = client.get(f"/account/prod/admin?callbackurl={urllib.parse.quote(callback)}",
                          auth=ALICE)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    request, = signin.requests
    session = json.loads(request["Session"])
    assert session == {"sessionId": body["AccessKeyId"], "sessionKey": body["SecretAccessKey"],
                       "sessionToken": body["Token"]}
    assert request["SessionDuration"] == "3600"
    url = urllib.parse.urlsplit(body["ConsoleUrl"])
    query = dict(urllib.parse.parse_qsl(url.query))
    assert f"{url.scheme}://{url.netloc}{url.path}" == signin.url
    assert query == {"Action": "login", "Issuer": callback, "SigninToken": "SIGNIN-TOKEN-1",
                     "Destination": "https://console.aws.amazon.com/"}
    text = client.get("/account/prod/admin/consoleurl", auth=ALICE)
    assert text.content_type.startswith("text/plain")
    assert "Issuer" not in text.get_data(as_text=True)
    redirect = client.get("/account/prod/admin/console", auth=ALICE)
    assert redirect.status_code == 302
    assert redirect.headers["Location"].startswith(signin.url + "?Action=login")


@pytest.mark.parametrize("callback", [
    "http://intranet.example.com/aws/",
    "javascript:alert(1)",
    "https://evil.example.com/aws/",
    "https://intranet.example.com.evil.com/aws/",
    "https://intranet.example.com@evil.com/aws/",
    "https://intranet.example.com:8443/aws/",
    "https://intranet.example.com/awsx/",
    "https://intranet.example.com/aws/\r\nSet-Cookie: x",
    "//evil.example.com/aws/",
    # dot segments a browser resolves outside /aws/, in every spelling
    "https://intranet.example.com/aws/../admin",
    "https://intranet.example.com/aws/%2e%2e/admin",
    "https://intranet.example.com/aws/%2E./admin",
    "https://intranet.example.com/aws/./../admin",
    "https://intranet.example.com/aws/..%2fadmin",
    "https://intranet.example.com/aws\\..\\admin",
])
def test_callbacks_outside_the_allowlist_are_refused(client: Client, signin: FakeSignin,
                                                     sts: FaultProxy, callback: str) -> None:
    response = client.get(f"/account/prod/admin?callbackurl={urllib.parse.quote(callback)}",
                          auth=ALICE)
    assert response.status_code == 400
    message = response.get_json()["message"]
    if callback.isprintable():
        assert message == f"callbackurl {callback!r} is not an allowed callback URL"
    else:  # refused as the query is read, before any allowlist is consulted
        assert message == ("invalid query parameter: Expected `str` of printable characters - "
                           "at parameter `callbackurl`")
    assert signin.requests == []
    assert sts.calls == []  # refused before anything was issued: no AssumeRole at all


def test_an_allowed_callback_is_normalised(client: Client, signin: FakeSignin) -> None:
    answer = client.get("/account/prod/admin/consoleurl?callbackurl=" + urllib.parse.quote(
        "https://intranet.example.com/aws/%7Euser/%41pp"), auth=ALICE)
    assert answer.status_code == 200
    issuer = urllib.parse.parse_qs(urllib.parse.urlsplit(answer.get_data(as_text=True)).query)[
        "Issuer"][0]
    assert issuer == "https://intranet.example.com/aws/~user/App"


def test_sign_in_endpoint_down_is_503(client: Client, signin: FakeSignin) -> None:
    signin.down = True
    response = client.get("/account/prod/admin/consoleurl", auth=ALICE)
    assert response.status_code == 503
    assert response.get_json()["message"] == "the AWS sign-in endpoint answered HTTP 500"


def test_partitions_have_their_own_sign_in_and_console_hosts() -> None:
    assert {p: urllib.parse.urlsplit(hosts[0]).hostname for p, hosts in PARTITION_HOSTS.items()} \
        == {"aws": "signin.aws.amazon.com", "aws-us-gov": "signin.amazonaws-us-gov.com",
            "aws-cn": "signin.amazonaws.cn"}
    assert Account("x", partition="aws-cn").partition in PARTITION_HOSTS


def test_metadata_endpoints_need_exactly_one_role(make_client, sts: FaultProxy) -> None:
    client = make_client(environ_field="REMOTE_ADDR")

    def get(path: str, **kwargs: object):
        return client.get(path, environ_base={"REMOTE_ADDR": "127.0.0.1"}, **kwargs)

    assert get("/meta-data/iam/security-credentials/").get_data(as_text=True) == "app"
    creds = get("/meta-data/iam/security-credentials/app")
    assert creds.status_code == 200 and creds.get_json()["AccessKeyId"].startswith("ASIA")
    other = get("/meta-data/iam/security-credentials/admin")
    assert other.status_code == 404
    many = get("/meta-data/iam/security-credentials/", auth=ALICE)
    assert many.status_code == 404
    assert many.get_json()["message"] == ("alice has 3 account/role pairs; the metadata endpoint "
                                          "serves callers with exactly one")
    assert len(sts.assume_role_calls()) == 1  # listing the role assumed nothing


def test_status_checks_sts(make_client, sts: FaultProxy) -> None:
    assert make_client().get("/status").get_json()["checks"] == [
        {"component": "sts", "ok": True, "detail": "OK"}]
    sts.mode = "error"
    down = make_client().get("/status")
    assert down.status_code == 503
    expected = "sts: STS is unavailable (InternalFailure) after 2 attempts"
    assert down.get_json()["message"] == expected


def test_no_secret_reaches_the_logs(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        body = client.get("/account/prod/admin", auth=ALICE).get_json()
        client.get("/account/prod/admin?callbackurl=javascript:x", auth=ALICE)
    logged = caplog.text
    assert logged  # botocore logs plenty at DEBUG; none of it may be a secret
    for secret in (body["SecretAccessKey"], body["Token"], "SIGNIN-TOKEN", "PASSWORD"):
        assert secret not in logged


@pytest.mark.parametrize(("path", "status"), [
    ("/account", 200),
    ("/account/prod/admin", 200),
    ("/account/prod/admin/credentials", 200),
    ("/account/prod/admin/consoleurl", 200),
    ("/account/prod/admin/console", 302),
    ("/account/prod/nope", 403),
    ("/account/ghost/admin", 404),
])
def test_every_afp_answer_names_the_user(client: Client, signin: FakeSignin, path: str,
                                         status: int) -> None:
    answer = client.get(path, auth=ALICE)
    assert answer.status_code == status
    assert answer.headers["X-Username"] == "alice"
    assert "X-Username" not in client.get(path).headers  # nobody identified: nobody named


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"16 bytes only...").decode()])
def test_a_cache_key_that_is_not_32_bytes_stops_startup(make_client, key: str) -> None:
    with pytest.raises(ConfigError, match=r"cache_key.*base64 of 32 random bytes"):
        make_client(aws_sts=f'cache_key = "{key}"')


def test_the_generated_cache_key_is_private_to_the_broker(
        tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
        container_key: tuple[str, str]) -> None:
    config = write_aws_config(tmp_path, sts, signin, password_hash, container_key, sql="")
    client = Client(make_app(Broker.from_config(config)))
    assert client.get("/account/prod/admin/credentials", auth=ALICE).status_code == 200
    key_path = tmp_path / "data" / "aws-cache.key"
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert len(base64.b64decode(key_path.read_bytes())) == 32
