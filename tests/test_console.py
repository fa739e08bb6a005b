"""The web console (/ui/) in a real browser: sign in, filter the accounts, open the AWS console
(a loopback fake of AWS's sign-in endpoint), show and copy credentials, create and revoke an API
key, an admin's view of a consumer's tokens, sign out; a forged cross-site POST, an idle,
revoked or ended session; the sign-in limits, the pages' headers, a path prefix."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.models import BasicCredentials, IdentityRequest
from credenza.opaque import API_KEY, SESSION
from credenza.wsgi import make_app
from credenza.wsgi.console import LIMITS, keyed_mac
from tests.aws_fixtures import FakeSignin, FaultProxy
from tests.conftest import QuietHandler, free_port, serve_on_loopback
from tests.ldap_fixtures import PASSWORDS, SERVICE_DN, SUFFIX, Slapd

ROOT = Path(__file__).resolve().parent.parent
SESSION_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes
KEY = base64.b64decode(SESSION_KEY)


class Console:
    """A credenza instance with the console, served over HTTP on loopback in this process."""

    def __init__(self, tmp: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
                 environ_field: str | None = None,
                 ldap: dict[str, Any] | None = None) -> None:
        (tmp / "static.yaml").write_text(f"""
users:
  alice: {{password: "{password_hash}", grants: ["prod/admin", "dev/reader"],
          admin: [{API_KEY.provider}]}}
  bob: {{password: "{password_hash}", grants: ["dev/reader"]}}
accounts:
  prod: {{id: "111111111111"}}
  dev: {{id: "222222222222"}}
""")
        origin = signin.url.rsplit("/", 1)[0]
        plugins = ["static", "aws-sts", "jwt", "sql"] + (["environ"] if environ_field else []) \
            + (["ldap"] if ldap else [])
        self.broker = Broker.from_config({
            "credenza": {"plugins": plugins, "data_dir": str(tmp / "data")},
            "api": {"console": {"session_key": SESSION_KEY, "signin_origins": [origin],
                                "session_idle_seconds": 600}},
            "plugins": {"static": {"files": [str(tmp / "static.yaml")]},
                        "aws-sts": {"endpoint_url": sts.url, "access_key_id": "testing",
                                    "secret_access_key": "env:CREDENZA_TEST_AWS_SECRET",
                                    "signin_url": signin.url, "max_attempts": 1},
                        "jwt": {}, "sql": {}, **({"ldap": ldap} if ldap else {})},
        })
        self.app = make_app(self.broker)
        self.client = Client(self.app)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.broker.close()

    def sessions(self, user: str) -> list[Any]:
        return self.broker.tokens.of_consumer(user, SESSION.provider)


@pytest.fixture
def console(tmp_path: Path, sts: FaultProxy, signin: FakeSignin,
            password_hash: str) -> Iterator[Console]:
    LIMITS.__init__()  # each test starts with no failed sign-ins counted
    made = Console(tmp_path, sts, signin, password_hash)
    yield made
    made.close()


def sign_in(page: Any, console: Console, user: str = "alice",
            password: str = "PASSWORD") -> None:  # noqa: S107 - the tests' password
    page.goto(console.url + "/ui/")
    assert page.url.endswith("/ui/signin")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_the_whole_visit(page: Any, console: Console, signin: FakeSignin) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.url)
    sign_in(page, console)
    page.wait_for_url(console.url + "/ui/")
    assert page.get_by_role("heading", level=1).inner_text() == "Your accounts and roles"
    rows = page.locator("#roles tbody tr")
    assert rows.count() == 2
    # The filter box leaves the matching rows.
    page.get_by_label("Filter").fill("2222")
    assert [row.inner_text().split("\t")[:3] for row in rows.all() if row.is_visible()] == [
        ["dev", "222222222222", "reader"]]
    page.get_by_label("Filter").fill("")
    if os.environ.get("CREDENZA_DOCS_SCREENSHOTS"):  # how docs/images/console.png is made
        page.set_viewport_size({"width": 900, "height": 380})
        page.screenshot(path=str(ROOT / "docs" / "images" / "console.png"))

    # Open console: the browser lands on AWS's sign-in with a token AWS issued; the URL was
    # never in a page.
    page.get_by_role("button", name="Open console: prod admin").click()
    page.wait_for_url("**/federation?Action=login**")
    assert page.locator("#signin").inner_text() == "valid sign-in token"
    login = next(r for r in reversed(signin.requests) if r.get("Action") == "login")
    assert login["SigninToken"] in signin.issued

    # Credentials, on request, with copy buttons and the expiry counting down.
    page.goto(console.url + "/ui/")
    page.get_by_label("Duration").select_option("3600")
    page.get_by_role("button", name="Credentials: prod admin").click()
    page.wait_for_url(console.url + "/ui/credentials")
    env = page.locator("#env").inner_text()
    assert env.startswith("export AWS_ACCESS_KEY_ID=ASIA")
    page.get_by_role("button", name="Copy: JSON (credential_process output)").click()
    copied = json.loads(page.evaluate("navigator.clipboard.readText()"))
    assert copied["Version"] == 1 and copied["AccessKeyId"] in env
    assert "left" in page.locator("#remaining").inner_text()
    assert "credential_process = credenza aws creds prod admin --format process" in \
        page.locator("#profile").inner_text()

    # Sign out ends the session server-side.
    session, = console.sessions("alice")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(console.url + "/ui/signin")
    assert console.broker.tokens.store.get(session.token_id).revoked
    page.goto(console.url + "/ui/")
    assert page.url.endswith("/ui/signin")


def whoami(console: Console, key: str) -> int:
    return console.client.get("/v1/whoami", headers={"X-API-Key": key}).status_code


def test_create_copy_and_revoke_an_api_key(page: Any, console: Console) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=console.url)
    sign_in(page, console, "bob")
    page.wait_for_url(console.url + "/ui/")
    page.get_by_role("link", name="Tokens and API keys").click()
    page.wait_for_url(console.url + "/ui/tokens")
    assert page.locator("#keys tbody").inner_text().strip() == "You have no API keys."
    session, = console.sessions("bob")
    assert f"{session.token_id} (this session)" in page.locator("table.tokens").inner_text()
    assert not page.get_by_role("link", name="Consumers").count()  # bob administers nothing

    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Lifetime").select_option("30")
    page.get_by_role("button", name="Create API key").click()
    page.wait_for_url(console.url + "/ui/api-keys")
    key = page.locator("#key").inner_text()
    assert key.startswith("ck_") and whoami(console, key) == 200
    page.get_by_role("button", name="Copy: the API key").click()
    assert page.evaluate("navigator.clipboard.readText()") == key
    record, = console.broker.tokens.of_consumer("bob", API_KEY.provider)
    assert (record.expires_at - record.issued_at).days == 30

    # Listed by name, never again with its secret; revoked, it stops working at once.
    page.get_by_role("link", name="Back to your tokens and API keys").click()
    row = page.locator("#keys tbody tr")
    assert row.inner_text().split("\t")[:2] == ["laptop", record.token_id]
    assert key.split(".")[1] not in page.content()
    page.get_by_role("button", name="Revoke API key laptop").click()
    page.wait_for_url(console.url + "/ui/tokens")
    assert row.inner_text().split("\t")[4] == "revoked"
    assert whoami(console, key) == 401


def test_an_admin_revokes_and_reinstates_a_consumers_tokens(page: Any,
                                                           console: Console) -> None:
    bob = console.broker.identify(IdentityRequest(basic=BasicCredentials("bob", "PASSWORD")))
    record, key = console.broker.api_keys.create(bob, "ci")
    SESSION.mint(console.broker.tokens.store, bob, consumer_id="bob", consumer_type="user",
                 claims={"name": "bob", "source": "static", "kind": "user"})
    sign_in(page, console)  # alice administers API keys, not sessions
    page.wait_for_url(console.url + "/ui/")
    page.get_by_role("link", name="Consumers").click()
    page.get_by_label("Consumer").fill("bob")
    page.get_by_label("Consumer").press("Enter")
    page.wait_for_url(console.url + "/ui/consumers?consumer=bob")
    rows = page.locator("table.tokens tbody tr")
    assert rows.count() == 1 and record.token_id in rows.inner_text()  # not bob's session

    page.get_by_role("button", name=f"Revoke {record.token_id}").click()
    page.wait_for_url(console.url + "/ui/consumers?consumer=bob")
    assert rows.inner_text().split("\t")[5] == "revoked" and whoami(console, key) == 401
    page.get_by_role("button", name=f"Reinstate {record.token_id}").click()
    page.wait_for_url(console.url + "/ui/consumers?consumer=bob")
    assert rows.inner_text().split("\t")[5] == "live" and whoami(console, key) == 200


def signed_in_client(console: Console, user: str,
                     password: str = "PASSWORD") -> tuple[Client, str]:  # noqa: S107
    """A werkzeug client with a session of ``user``, and its CSRF token."""
    client = Client(console.app)
    form = client.get("/ui/signin")
    token = form.headers["Set-Cookie"].split("credenza_signin=")[1].split(";")[0]
    assert client.post("/ui/signin", data={"username": user, "password": password,
                                           "csrf": token}).status_code == 303
    page = client.get("/ui/tokens").get_data(as_text=True)
    return client, page.split('name="csrf" value="')[1].split('"')[0]


def test_tokens_of_others_need_an_admin_grant(console: Console) -> None:
    alice = console.broker.identify(IdentityRequest(basic=BasicCredentials("alice",
                                                                           "PASSWORD")))
    record, _key = console.broker.api_keys.create(alice, "deploy")
    client, csrf = signed_in_client(console, "bob")
    assert client.get("/ui/consumers?consumer=alice").status_code == 403
    for action in ("revoke", "reinstate"):
        answer = client.post(f"/ui/tokens/{action}", data={"token_id": record.token_id,
                                                           "csrf": csrf})
        assert answer.status_code == 403
        assert "no grant for admin credenza-api-key" in answer.get_data(as_text=True)
    assert not console.broker.tokens.store.get(record.token_id).revoked
    # Wrong input is a page naming what was wrong, not a 500.
    assert client.post("/ui/tokens/revoke", data={"token_id": "ck_nope",
                                                  "csrf": csrf}).status_code == 404
    bad = client.post("/ui/api-keys", data={"name": "x", "days": "7", "csrf": csrf})
    assert bad.status_code == 400 and "days" in bad.get_data(as_text=True)
    assert client.post("/ui/api-keys", data={"name": "x", "days": "30"}).status_code == 400
    assert client.post("/ui/api-keys", data={"name": "x", "days": "30",
                                              "csrf": "forged"}).status_code == 403
    assert not console.broker.tokens.of_consumer("bob", API_KEY.provider)


def test_under_a_path_prefix_links_and_redirects_keep_it(console: Console) -> None:
    base = "http://localhost/credenza"  # as WSGIScriptAlias /credenza sets SCRIPT_NAME
    answer = console.client.get("/ui/", base_url=base)
    assert answer.status_code == 303 and answer.headers["Location"] == "/credenza/ui/signin"
    form = console.client.get("/ui/signin", base_url=base)
    text = form.get_data(as_text=True)
    assert 'action="/credenza/ui/signin"' in text
    assert 'src="/credenza/ui/static/console.js"' in text
    token = form.headers["Set-Cookie"].split("credenza_signin=")[1].split(";")[0]
    signed = console.client.post("/ui/signin", base_url=base, data={
        "username": "bob", "password": "PASSWORD", "csrf": token})
    assert signed.headers["Location"] == "/credenza/ui/"
    page = console.client.get("/ui/", base_url=base).get_data(as_text=True)
    assert 'href="/credenza/ui/tokens"' in page and '"/ui/' not in page


def test_wrong_password_and_keyboard_only_sign_in(page: Any, console: Console) -> None:
    sign_in(page, console, password="wrong")
    assert page.locator("#signin-error").inner_text() == "Invalid user name or password."
    # Tab order: user name, password, button; Enter submits.
    page.get_by_label("User name").fill("")
    page.get_by_label("User name").focus()
    page.keyboard.type("alice")
    page.keyboard.press("Tab")
    page.keyboard.type("PASSWORD")
    page.keyboard.press("Enter")
    page.wait_for_url(console.url + "/ui/")
    assert console.sessions("alice")


def test_a_forged_cross_site_post_is_refused(page: Any, console: Console) -> None:
    sign_in(page, console)
    page.wait_for_url(console.url + "/ui/")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")

    class Attacker(QuietHandler):
        def do_GET(self) -> None:
            form = (f'<form method="post" action="{console.url}/ui/credentials">'
                    f'<input name="account" value="prod"><input name="role" value="admin">'
                    f'<input name="csrf" value="{csrf}"><button>Win a prize</button></form>')
            self.reply(200, form.encode(), "text/html")

    server, url = serve_on_loopback(Attacker)
    try:
        page.goto(url.replace("127.0.0.1", "localhost") + "/")  # another site
        with page.expect_response(console.url + "/ui/credentials") as answer:
            page.get_by_role("button", name="Win a prize").click()
        assert answer.value.status == 403
        assert "cross-site requests are refused" in page.content()
        assert "AWS_ACCESS_KEY_ID" not in page.content()
    finally:
        server.shutdown()


def test_idle_and_revoked_sessions_go_back_to_sign_in(page: Any, console: Console) -> None:
    sign_in(page, console)
    page.wait_for_url(console.url + "/ui/")
    cookie, = [c for c in page.context.cookies() if c["name"] == "credenza_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    value = cookie["value"].split("|")[0]
    # A cookie last used 11 minutes ago (idle limit 10), correctly MACed: too old.
    stamp = str(int(time.time()) - 660)
    page.context.add_cookies([{**cookie, "value": f"{value}|{stamp}|"
                               f"{keyed_mac(KEY, 'session', value, stamp)}"}])
    page.goto(console.url + "/ui/")
    assert page.url.endswith("/ui/signin")
    # Signed in again, then the session is revoked (as an admin would, in the token store).
    sign_in(page, console)
    page.wait_for_url(console.url + "/ui/")
    sessions = console.sessions("alice")
    console.broker.tokens.store.set_revoked([record.token_id for record in sessions], True,
                                            sessions[0].issued_at)
    page.reload()
    assert page.url.endswith("/ui/signin")


def test_failed_sign_ins_are_limited_per_user_and_address(console: Console) -> None:
    def attempt(user: str, password: str, address: str = "198.51.100.7") -> int:
        client = Client(console.app)  # a new browser: no session
        form = client.get("/ui/signin", environ_base={"REMOTE_ADDR": address})
        token = form.headers["Set-Cookie"].split("credenza_signin=")[1].split(";")[0]
        return client.post("/ui/signin", data={"username": user, "password": password,
                                               "csrf": token},
                           environ_base={"REMOTE_ADDR": address}).status_code

    assert [attempt("alice", "wrong") for _ in range(5)] == [401] * 5
    assert attempt("alice", "PASSWORD") == 429  # even the right password, for a while
    assert attempt("bob", "PASSWORD") == 303  # another user is not affected
    assert {attempt(f"nobody-{i}", "wrong", "203.0.113.50") for i in range(20)} == {401}
    assert attempt("bob", "PASSWORD", "203.0.113.50") == 429  # 20 failures from that address


def test_pages_carry_the_security_headers(console: Console) -> None:
    for path in ("/ui/signin", "/ui/nowhere"):
        response = console.client.get(path)
        policy = response.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
        assert "frame-ancestors 'none'" in policy
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["Content-Type"].startswith("text/html")
    assert console.client.get("/ui/static/console.js").status_code == 200
    assert console.client.get("/ui/static/..%2Fconsole.py").status_code in (400, 404)
    assert console.client.post("/ui/credentials", data={
        "account": "prod", "role": "admin", "csrf": "x"}).status_code == 401


def test_behind_a_front_end_remote_user_needs_no_sign_in(tmp_path: Path, sts: FaultProxy,
                                                        signin: FakeSignin,
                                                        password_hash: str) -> None:
    console = Console(tmp_path, sts, signin, password_hash, environ_field="REMOTE_USER")
    try:
        page = console.client.get("/ui/", environ_base={"REMOTE_USER": "bob"})
        assert page.status_code == 200 and "reader" in page.get_data(as_text=True)
        assert "Sign out" not in page.get_data(as_text=True)
    finally:
        console.close()




def test_standalone_with_ldap_people_sign_in_with_their_directory_password(
        tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
        slapd: Slapd) -> None:
    console = Console(tmp_path, sts, signin, password_hash, ldap={
        "url": slapd.url, "bind_dn": SERVICE_DN, "bind_password": PASSWORDS["service"],
        "user_base": f"ou=people,{SUFFIX}", "group_base": f"ou=groups,{SUFFIX}",
        "group_patterns": [r"aws-(?P<account>[a-z]+)-(?P<role>[a-z]+)"]})
    try:
        LIMITS.__init__()
        client, _csrf = signed_in_client(console, "carol", PASSWORDS["carol"])
        page = client.get("/ui/").get_data(as_text=True)
        assert "<td>prod</td><td>111111111111</td><td>viewer</td>" in page  # group aws-prod-viewer
        session, = console.sessions("carol")
        assert session.claims["source"] == "ldap"
        stranger = Client(console.app)
        form = stranger.get("/ui/signin")
        token = form.headers["Set-Cookie"].split("credenza_signin=")[1].split(";")[0]
        assert stranger.post("/ui/signin", data={"username": "carol", "password": "wrong",
                                                 "csrf": token}).status_code == 401
    finally:
        console.close()


def test_the_guides_apache_configuration_shows_the_front_end_user(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/guides/console/apache.toml: REMOTE_USER is the visitor, without a sign-in."""
    from credenza.config import Config
    guide = ROOT / "docs" / "guides" / "console"
    for name in ("apache.toml", "users.yaml"):
        (tmp_path / name).write_text((guide / name).read_text())
    for name, value in {"CREDENZA_CONSOLE_KEY": SESSION_KEY, "AFP_AWS_ACCESS_KEY_ID": "AKIA",
                        "AFP_AWS_SECRET_ACCESS_KEY": "secret"}.items():
        monkeypatch.setenv(name, value)
    broker = Broker.from_config(Config.load(tmp_path / "apache.toml", {
        "CREDENZA__CREDENZA__DATA_DIR": str(tmp_path / "data")}))
    client = Client(make_app(broker))
    alice = broker.identify(IdentityRequest(environ={"REMOTE_USER": "alice"}))
    record, _key = broker.api_keys.create(alice, "laptop")
    page = client.get("/ui/", environ_base={"REMOTE_USER": "alice"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert all(role in text for role in ("admin", "developer", "reader"))
    assert 'href="/ui/consumers"' not in text  # alice administers nothing
    # ops-lead administers API keys and sessions: alice's key is in their view.
    lead = client.get("/ui/consumers?consumer=alice", environ_base={"REMOTE_USER": "ops-lead"})
    assert lead.status_code == 200 and record.token_id in lead.get_data(as_text=True)
    assert client.get("/ui/consumers?consumer=ops-lead",
                      environ_base={"REMOTE_USER": "alice"}).status_code == 403
    broker.close()
