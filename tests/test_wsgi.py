"""The WSGI front end: routing, problem+json for every error, /status, /openapi.json."""

from __future__ import annotations

import io
import logging
import uuid
from pathlib import Path

import pytest
from openapi_spec_validator import validate
from werkzeug.test import Client

from credenza import hookimpl
from credenza.broker import Broker
from credenza.errors import BadRequest, ConfigError, Forbidden, Unavailable
from credenza.models import Grant, Health, Principal
from credenza.requestctx import new_request_id
from credenza.wsgi import LazyApplication, make_app
from credenza.wsgi.routes import Route, json_response


class Org:
    """An org plugin adding routes that end in each kind of error."""

    def __init__(self) -> None:
        self.healthy = True

    @hookimpl
    def credenza_identify(self, request):
        if request.basic is None:
            return None
        return Principal(request.basic.username, source="org", groups=["staff"])

    @hookimpl
    def credenza_grants(self, principal):
        return [Grant.aws("prod", "reader", via="staff")]

    @hookimpl
    def credenza_health(self):
        return [Health("org-db", ok=self.healthy, detail="OK" if self.healthy else "refused")]

    @hookimpl
    def credenza_routes(self, add):
        def forbidden(ctx):
            ctx.principal()
            raise Forbidden("only the build bot may deploy")

        def down(ctx):
            raise Unavailable("STS is throttling; try again", retry_after=7)

        def crash(ctx):
            raise RuntimeError("database password is hunter2")

        def echo(ctx):
            return json_response(ctx.json_body())

        def item(ctx, name):
            if name == "bad":
                raise BadRequest(f"{name!r} is not a valid name")
            return json_response({"name": name})

        add(Route("/org/deploy", forbidden, summary="Deploy"))
        add(Route("/org/down", down, summary="Down", authenticated=False))
        add(Route("/org/crash", crash, summary="Crash", authenticated=False))
        add(Route("/org/echo", echo, methods=("POST",), summary="Echo", authenticated=False))
        add(Route("/org/items/<name>", item, summary="Item", authenticated=False))


@pytest.fixture
def org() -> Org:
    return Org()


@pytest.fixture
def client(org: Org) -> Client:
    broker = Broker.from_config(
        {"credenza": {"plugins": []}, "server": {"max_body_bytes": 2048}}, plugins=[org]
    )
    return Client(make_app(broker))


def assert_problem(response, status: int, slug: str, detail: str) -> dict:
    assert response.status_code == status
    assert response.content_type == "application/problem+json"
    body = response.get_json()
    assert body["type"] == f"urn:credenza:problem:{slug}"
    assert body["status"] == status
    assert body["detail"] == detail
    assert body["title"]
    assert body["instance"] == f"urn:uuid:{response.headers['X-Request-Id']}"
    return body


def test_401_with_www_authenticate(client: Client) -> None:
    response = client.get("/v1/whoami")
    assert_problem(response, 401, "unauthenticated", "no valid credentials were presented")
    assert response.headers["WWW-Authenticate"] == 'Basic realm="credenza", Bearer realm="credenza"'


def test_whoami_through_a_plugin(client: Client) -> None:
    response = client.get("/v1/whoami", auth=("alice", "pw"))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.get_json() == {
        "name": "alice", "kind": "user", "source": "org", "groups": ["staff"],
        "grants": [{"kind": "aws", "target": "prod", "role": "reader", "audiences": [],
                    "via": "staff"}],
    }


def test_403(client: Client) -> None:
    assert_problem(client.get("/org/deploy", auth=("alice", "pw")), 403, "forbidden",
                   "only the build bot may deploy")


def test_404_is_json(client: Client) -> None:
    assert_problem(client.get("/no/such/thing"), 404, "not-found", "no endpoint at /no/such/thing")


def test_405_is_json_with_allow(client: Client) -> None:
    response = client.delete("/status")
    assert_problem(response, 405, "method-not-allowed", "DELETE is not allowed here; use GET, HEAD")
    assert response.headers["Allow"] == "GET, HEAD"


def test_matches_are_remembered_per_method_and_path_and_bounded(client: Client) -> None:
    """The app remembers what each method and path matched: the values of one path never
    answer another, a method that is not allowed is refused each time (however often the path
    was matched for another), and so many paths cannot grow the memory without bound."""
    app = client.application
    for _ in range(2):
        assert client.get("/org/items/a").get_json() == {"name": "a"}
        assert client.get("/org/items/b").get_json() == {"name": "b"}
        assert client.delete("/org/items/a").status_code == 405
        assert client.get("/org/items/a/").get_json() == {"name": "a"}  # strict_slashes off
    for number in range(app.MATCHES_KEPT + 10):
        assert client.get(f"/org/items/n{number}").get_json() == {"name": f"n{number}"}
    assert len(app._matched) <= app.MATCHES_KEPT


def test_answers_carry_their_length_and_head_gets_no_body(client: Client) -> None:
    got = client.get("/org/items/a")
    assert got.data == b'{"name":"a"}'
    assert got.headers["Content-Length"] == str(len(got.data))
    assert got.headers["X-Request-Id"] and got.headers["Cache-Control"] == "no-store"
    head = client.head("/org/items/a")
    assert head.status_code == 200 and head.data == b""
    assert head.headers["Content-Length"] == str(len(got.data))
    problem = client.get("/org/items/bad")  # an error answer goes out the same way
    assert problem.headers["Content-Length"] == str(len(problem.data))
    assert problem.get_json()["detail"] == "'bad' is not a valid name"


def test_request_ids_are_random_uuids(client: Client) -> None:
    ids = [client.get("/org/items/a").headers["X-Request-Id"] for _ in range(50)]
    ids += [new_request_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (str(parsed), parsed.version, parsed.variant) == (text, 4, uuid.RFC_4122)


def test_413_by_content_length_and_by_streaming(client: Client) -> None:
    detail = "the request body is larger than the limit of 2048 bytes"
    assert_problem(client.post("/org/echo", data=b"x" * 4096), 413, "payload-too-large", detail)
    # no Content-Length (chunked, as gunicorn passes it on): the limit holds while reading
    chunked = client.post("/org/echo", input_stream=io.BytesIO(b"{" * 4096),
                          headers={"Transfer-Encoding": "chunked"},
                          environ_overrides={"wsgi.input_terminated": True})
    assert_problem(chunked, 413, "payload-too-large", detail)


def test_400_for_bad_json_and_bad_values(client: Client) -> None:
    body = assert_problem(client.post("/org/echo", data=b"{nope"), 400, "bad-request",
                          client.post("/org/echo", data=b"{nope").get_json()["detail"])
    assert body["detail"].startswith("the request body is not valid JSON")
    assert_problem(client.post("/org/echo", json=[1]), 400, "bad-request",
                   "the request body must be a JSON object")
    assert client.post("/org/echo", json={"a": 1}).get_json() == {"a": 1}
    assert_problem(client.get("/org/items/bad"), 400, "bad-request", "'bad' is not a valid name")


def test_503_with_retry_after(client: Client) -> None:
    response = client.get("/org/down")
    assert_problem(response, 503, "unavailable", "STS is throttling; try again")
    assert response.headers["Retry-After"] == "7"


def test_500_hides_the_exception_and_logs_it(client: Client,
                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        response = client.get("/org/crash")
    body = assert_problem(response, 500, "internal-error", "an unexpected error occurred; the "
                          "request id identifies it in the server log")
    assert "hunter2" not in response.get_data(as_text=True)
    assert response.headers["X-Request-Id"] in caplog.text
    assert body["status"] == 500


def test_status_reports_each_check_and_fails_closed(client: Client, org: Org) -> None:
    ok = client.get("/status")
    assert ok.status_code == 200
    assert ok.get_json() == {"status": "200", "message": "OK", "plugins": ["app:Org"],
                             "checks": [{"component": "org-db", "ok": True, "detail": "OK"}]}
    org.healthy = False
    down = client.get("/status")
    assert down.status_code == 503
    assert down.headers["Retry-After"] == "30"
    assert down.get_json()["message"] == "org-db: refused"


def test_openapi_is_valid_and_lists_every_route(client: Client) -> None:
    document = client.get("/openapi.json").get_json()
    validate(document)
    assert {"/status", "/openapi.json", "/v1/whoami", "/org/items/{name}"} <= set(document["paths"])
    item = document["paths"]["/org/items/{name}"]["get"]
    assert item["parameters"][0]["name"] == "name"
    assert document["paths"]["/status"]["get"]["security"] == []
    assert document["paths"]["/v1/whoami"]["get"]["security"]


def test_two_routes_for_one_path_and_method_are_refused() -> None:
    class Clash:
        @hookimpl
        def credenza_routes(self, add):
            add(Route("/status", lambda ctx: json_response({})))

    broker = Broker.from_config({"credenza": {"plugins": []}}, plugins=[Clash()])
    with pytest.raises(ConfigError, match="two routes claim GET /status"):
        make_app(broker)


def test_lazy_application_reads_config_from_the_wsgi_environ(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.delenv("CREDENZA_CONFIG", raising=False)
    config = tmp_path / "c.toml"
    config.write_text("[credenza]\nplugins = ['environ']\n")
    client = Client(LazyApplication())
    response = client.get("/v1/whoami", environ_base={"CREDENZA_CONFIG": str(config),
                                                      "REMOTE_USER": "carol"})
    assert response.get_json()["name"] == "carol"
    assert response.get_json()["source"] == "environ"
