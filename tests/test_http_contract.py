"""The HTTP contract: what every route accepts and answers, whatever the plugin order."""

from __future__ import annotations

import base64
import json
import re
import sys
import types
import urllib.parse
from pathlib import Path
from typing import Any

import attrs
import msgspec
import pytest
from werkzeug.test import Client

from credenza import hookimpl
from credenza.broker import Broker
from credenza.models import Principal
from credenza.secrets import new_api_key
from credenza.wsgi import make_app
from credenza.wsgi.app import CredenzaApp
from credenza.wsgi.routes import FORM, Route, json_response


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(params=[["static", "jwt", "sql"], ["jwt", "sql", "static"]],
                ids=["static-first", "static-last"])
def several(request: pytest.FixtureRequest, tmp_path: Path, password_hash: str):
    alice_key, alice_digest = new_api_key("alice-key")
    bob_key, bob_digest = new_api_key("bob-key")
    (tmp_path / "static.yaml").write_text(f"""
users:
  alice: {{password: "{password_hash}"}}
  bob: {{password: "{password_hash}"}}
api_keys:
  alice-key: {{sha256: "{alice_digest}", principal: alice, kind: user}}
  bob-key: {{sha256: "{bob_digest}", principal: bob, kind: user}}
""")
    broker = Broker.from_config({
        "credenza": {"plugins": request.param, "data_dir": str(tmp_path / "data")},
        "plugins": {"static": {"files": [str(tmp_path / "static.yaml")]}},
    })
    _record, store_key = broker.api_keys.create(Principal("alice", source="test"), "laptop")
    return Client(make_app(broker)), {"alice": alice_key, "bob": bob_key, "store": store_key}


@pytest.mark.parametrize(("headers", "status"), [
    ({"X-API-Key": "{alice}"}, 200),
    ({"X-API-Key": "{alice}", "Authorization": basic("alice", "PASSWORD")}, 200),
    ({"X-API-Key": "{store}", "Authorization": basic("alice", "PASSWORD")}, 200),
    ({"X-API-Key": "{alice}", "Authorization": basic("alice", "wrong")}, 401),
    ({"X-API-Key": "{store}", "Authorization": basic("alice", "wrong")}, 401),
    ({"X-API-Key": "{alice}", "Authorization": "Bearer not.a.token"}, 401),
    ({"X-API-Key": "{alice}", "Authorization": "Bearer garbage"}, 401),
    ({"X-API-Key": "{store}", "Authorization": "Bearer garbage"}, 401),
    ({"X-API-Key": "{alice}", "Authorization": basic("bob", "PASSWORD")}, 401),
    ({"X-API-Key": "{bob}", "Authorization": basic("alice", "PASSWORD")}, 401),
    ({"X-API-Key": "nobody.knows", "Authorization": basic("alice", "PASSWORD")}, 401),
    ({"X-API-Key": "{alice}x"}, 401),
])
def test_every_credential_presented_is_checked(several, headers: dict[str, str],
                                               status: int) -> None:
    client, keys = several
    sent = {name: value.format(**keys) for name, value in headers.items()}
    answer = client.get("/v1/whoami", headers=sent)
    assert answer.status_code == status, answer.get_json()
    if status == 200:
        assert answer.get_json()["name"] == "alice"
    else:
        assert answer.headers["WWW-Authenticate"].startswith("Basic realm=")


# -- bad input is a 400 that names the field, never a 500 ----------------------------------------

INSTANCE = "/v2/credenza/authenticationTokens"


@pytest.fixture
def pam(tmp_path: Path) -> tuple[Client, dict[str, str]]:
    key, digest = new_api_key("app")
    (tmp_path / "static.yaml").write_text(f"""
oauth_clients:
  app: {{sha256: "{digest}", tokens: {{bot: []}}, admin: [bot]}}
""")
    broker = Broker.from_config({
        "credenza": {"plugins": ["static", "jwt", "sql"], "data_dir": str(tmp_path / "data")},
        "plugins": {"static": {"files": [str(tmp_path / "static.yaml")]},
                    "jwt": {"providers": {"bot": {}}}},
    })
    client = Client(make_app(broker))
    access = client.post("/oauth2/token", data={"grant_type": "client_credentials",
                                                "scope": "urn:cloud:idaas:pam|.all"},
                         auth=("app", key))
    assert access.status_code == 200, access.get_json()
    return client, {"Authorization": f"Bearer {access.get_json()['access_token']}"}


GOOD_JWT = {"credentialProviderIdentifier": "bot", "subject": "job",
            "audiences": ["https://api.test"]}


@pytest.mark.parametrize(("path", "body", "field"), [
    *[("generateJwt", {**GOOD_JWT, key: value}, key)
      for key in ("subject", "credentialProviderIdentifier")
      for value in ("a\x01", "a\x7f", "a\u2028")],
    ("generateJwt", {**GOOD_JWT, "expiration": 1000000000000000}, "expiration"),
    ("generateJwt", {**GOOD_JWT, "expiration": True}, "expiration"),
    ("generateJwt", {**GOOD_JWT, "audiences": []}, "audiences"),
    ("generateJwt", {**GOOD_JWT, "audiences": ["x" * 257]}, "audiences[0]"),
    ("generateJwt", {**GOOD_JWT, "subject": "\ud800"}, "subject"),
    ("obtainJwt", {"consumerId": "\ud800", "authenticationTokenId": "x"}, "consumerId"),
    ("revokeByConsumer", {"consumerId": "\ud800", "credentialProviderIdentifier": "bot"},
     "consumerId"),
    ("reinstateByConsumer", {"consumerId": "app", "credentialProviderIdentifier": "\ud800"},
     "credentialProviderIdentifier"),
    ("fetchOAuthAccessToken", {"credentialProviderIdentifier": "up", "scope": "\ud800"},
     "scope"),
])
def test_malformed_bodies_are_400_naming_the_field(pam, path: str, body: dict, field: str
                                                   ) -> None:
    client, bearer = pam
    answer = client.post(f"{INSTANCE}/_/actions/{path}", headers=bearer,
                         data=json.dumps(body), content_type="application/json")
    assert answer.status_code == 400, answer.get_json()
    assert f"`{field}`" in answer.get_json()["error_description"] or \
        f"$.{field} holds a lone UTF-16 surrogate" in answer.get_json()["error_description"]


@pytest.mark.parametrize(("query", "field"), [
    ({"maxResults": "²"}, "maxResults"),
    ({"maxResults": "0"}, "maxResults"),
    ({"consumerId": "a\x01"}, "consumerId"),
    ({"credentialProviderIdentifier": "a\u2028"}, "credentialProviderIdentifier"),
    ({"revoked": "maybe"}, "revoked"),
])
def test_malformed_queries_are_400_naming_the_parameter(pam, query: dict[str, str],
                                                        field: str) -> None:
    client, bearer = pam
    answer = client.get(INSTANCE, headers=bearer, query_string={
        "consumerId": "app", "credentialProviderIdentifier": "bot", **query})
    assert answer.status_code == 400, answer.get_json()
    assert f"parameter `{field}`" in answer.get_json()["error_description"]


def test_a_lone_surrogate_in_a_token_request_is_400(pam) -> None:
    client, _ = pam
    answer = client.post("/token", data=b'{"client_id": "\\ud800", "grant_type": '
                         b'"refresh_token", "refresh_token": "x"}',
                         content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["error"] == "invalid_request"
    assert "$.client_id holds a lone UTF-16 surrogate" in answer.get_json()["error_description"]


def test_good_requests_still_work(pam) -> None:
    client, bearer = pam
    made = client.post(f"{INSTANCE}/_/actions/generateJwt", headers=bearer, json={
        **GOOD_JWT, "expiration": 60, "includeDerivedShortToken": True,
        "customClaims": {"team": "a"}})
    assert made.status_code == 200, made.get_json()
    listed = client.get(INSTANCE, headers=bearer, query_string={
        "consumerId": "app", "credentialProviderIdentifier": "bot", "maxResults": "5",
        "revoked": "False"})
    assert listed.status_code == 200 and listed.get_json()["totalCount"] == 1


# -- a route declared authenticated never runs for an unidentified caller --------------------------


def sample(kind: msgspec.inspect.Type) -> Any:
    """A smallest valid value of a declared type (for a body that passes decoding)."""
    if isinstance(kind, msgspec.inspect.StructType):
        return {field.encode_name: sample(field.type) for field in kind.fields
                if field.required}
    if isinstance(kind, msgspec.inspect.UnionType):
        return sample(next(t for t in kind.types if not isinstance(t, msgspec.inspect.NoneType)))
    if isinstance(kind, msgspec.inspect.ListType):
        return [sample(kind.item_type)]
    if isinstance(kind, msgspec.inspect.IntType):
        return kind.ge or 1
    if isinstance(kind, msgspec.inspect.BoolType):
        return True
    if isinstance(kind, msgspec.inspect.DictType):
        return {}
    return "x"


class OrgRoutes:
    """A plugin's own routes: one authenticated, one open."""

    @hookimpl
    def credenza_routes(self, add):
        add(Route("/org/deploy", lambda ctx: json_response({}), summary="Deploy"))
        add(Route("/org/open", lambda ctx: json_response({}), summary="Open",
                  authenticated=False))


def test_no_authenticated_handler_runs_for_an_unidentified_caller(tmp_path: Path) -> None:
    broker = Broker.from_config({
        "credenza": {"plugins": ["environ", "jwt", "sql"], "data_dir": str(tmp_path)},
    }, plugins=[OrgRoutes()])
    built = make_app(broker)
    ran: list[str] = []

    def never(route: Route) -> Any:
        def handler(ctx, **values):
            ran.append(route.rule)
            return json_response({})
        return handler

    guarded = [route for route in built.routes if route.authenticated]
    assert {"/org/deploy", "/v1/whoami", "/account", "/oauth2/token",
            "/v2/<instance_id>/authenticationTokens/_/actions/generateJwt", "/ica/rest/api/tokens",
            "/latest/meta-data/iam/security-credentials/<role>"} <= {r.rule for r in guarded}
    app = Client(CredenzaApp(broker, [attrs.evolve(route, handler=never(route))
                                      if route.authenticated else route
                                      for route in built.routes]))
    for route in guarded:
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", "credenza", route.rule)
        for method in route.methods:
            kwargs: dict[str, Any] = {}
            if route.query is not None:
                kwargs["query_string"] = sample(msgspec.inspect.type_info(route.query))
            if route.body is not None and route.body_media_type == FORM:
                # the token endpoint names a supported grant before it asks who the client is
                form = {"grant_type": "client_credentials"} if route.rule == "/oauth2/token" \
                    else sample(msgspec.inspect.type_info(route.body))
                kwargs.update(data=urllib.parse.urlencode(form), content_type=FORM)
            elif route.body is not None:
                kwargs["json"] = sample(msgspec.inspect.type_info(route.body))
            answer = app.open(path, method=method, **kwargs)
            assert answer.status_code == 401, (route.rule, answer.get_json())
    assert ran == []


def test_the_plugin_guide_route_example_works(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (Path(__file__).resolve().parent.parent / "docs" / "plugins.md").read_text()
    example = next(block for block in readme.split("```python\n")[1:]
                   if "class Deploy(msgspec.Struct)" in block).split("```")[0]
    plugin = types.ModuleType("plugin_guide_example")  # a plugin module, as a distribution has one
    plugin.hookimpl = hookimpl
    monkeypatch.setitem(sys.modules, plugin.__name__, plugin)
    exec(compile(example, "docs/plugins.md", "exec"), plugin.__dict__)  # noqa: S102 - ours
    broker = Broker.from_config({"credenza": {"plugins": ["environ"], "data_dir": str(tmp_path)}},
                                plugins=[plugin])
    client = Client(make_app(broker))
    done = client.post("/acme/deploy", json={"service": "web"},
                       environ_base={"REMOTE_USER": "alice"})
    assert done.status_code == 200 and done.get_json() == {"service": "web", "by": "alice"}
    bad = client.post("/acme/deploy", json={"service": "web", "replicas": "two"},
                      environ_base={"REMOTE_USER": "alice"})
    assert bad.status_code == 400 and "`replicas`" in bad.get_json()["detail"]
    assert client.post("/acme/deploy", json={"service": "web"}).status_code == 401
    document = client.get("/openapi.json").get_json()
    operation = document["paths"]["/acme/deploy"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Deploy"}


@pytest.mark.parametrize(("method", "path", "headers", "status", "detail"), [
    ("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "²"}, 400,
     "header `X-aws-ec2-metadata-token-ttl-seconds`"),
    ("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "21601"}, 400,
     "Expected `int` <= 21600"),
    ("PUT", "/latest/api/token", {}, 400, "missing required field "
                                          "`X-aws-ec2-metadata-token-ttl-seconds`"),
    ("PUT", "/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60",
                                  "X-Forwarded-For": "10.0.0.1"}, 403, "through a proxy"),
    ("GET", "/latest/meta-data/iam/security-credentials/", {"X-aws-ec2-metadata-token": "²."},
     400, "header `X-aws-ec2-metadata-token`"),
    ("GET", "/latest/meta-data/iam/security-credentials/",
     {"X-aws-ec2-metadata-token": "1.forged"}, 401, "session token is required"),
])
def test_declared_headers_are_checked(tmp_path: Path, method: str, path: str,
                                      headers: dict[str, str], status: int, detail: str) -> None:
    broker = Broker.from_config({"credenza": {"plugins": ["environ"], "data_dir": str(tmp_path)}})
    answer = Client(make_app(broker)).open(path, method=method, headers=headers)
    assert answer.status_code == status
    assert detail in answer.get_json()["detail"]
