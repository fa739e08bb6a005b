"""An API fuzz test: schemathesis generates requests from the served ``/openapi.json`` and checks
every answer: no server error, a declared status, the declared media type, and a body that
matches the declared schema. It runs against the embedded default configuration and against
one with every family enabled (AWS on moto, tokens, OAuth, PAM, ICA, API keys, upstream OAuth
on a loopback fake), authenticated. The number of requests is printed."""

from __future__ import annotations

import base64
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from credenza import hookimpl
from credenza.broker import Broker
from credenza.models import Principal
from credenza.secrets import new_api_key
from credenza.wsgi import make_app
from credenza.wsgi.routes import Reply, Route, json_response
from tests.aws_fixtures import FakeSignin, FaultProxy
from tests.test_upstream import FakeUpstream

CHECKS = [checks.not_a_server_error, checks.response_schema_conformance,
          checks.status_code_conformance, checks.content_type_conformance]
EXAMPLES_PER_OPERATION = 90
REQUESTS_AT_LEAST = 5000


def fuzz(app: Any, headers: dict[str, str], examples: int = EXAMPLES_PER_OPERATION,
         only: str | None = None) -> int:
    """Send generated requests to every operation of ``app``; returns how many were sent.

    :raises AssertionError: naming each operation whose answers broke a check.
    """
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    sent = 0
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if only is not None and operation.path != only:
            continue

        # the IDaaS instance is the configured one, or every request stops at "unknown instance"
        pinned = {"instance_id": "credenza"} if "{instance_id}" in operation.path else None

        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(path_parameters=pinned))
        def run(case: Any) -> None:
            nonlocal sent
            sent += 1
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # report every operation's failures
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
    return sent


@pytest.fixture(scope="module")
def counted() -> Iterator[list[int]]:
    """The requests each fuzz test sent; the total is printed and checked."""
    total: list[int] = []
    yield total


def test_the_embedded_default(counted: list[int], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    broker = Broker.from_config({"credenza": {"plugins": ["environ", "jwt", "sql"],
                                              "data_dir": str(tmp_path)}})
    _record, key = broker.api_keys.create(Principal("alice", source="fuzz"), "fuzz")
    sent = fuzz(make_app(broker), {"X-API-Key": key})
    counted.append(sent)
    with capsys.disabled():
        print(f"\nfuzz: {sent} requests to the embedded default, 0 failures")


STATIC = """
oauth_clients:
  fuzz:
    sha256: "{digest}"
    grants: ["prod/*", "dev/reader"]
    tokens: {{bot: [], ica: []}}
    admin: ["*"]
    exchange: ["*"]
    oauth: [vendor]
    credentials: [vendor-key]
    attributes: {{refresh_tokens: rotate, tenants: [t1]}}
accounts:
  prod: {{id: "111111111111", max_duration: 43200}}
  dev: {{id: "222222222222"}}
"""


def every_family(directory: Path, sts: FaultProxy, signin: FakeSignin,
                 upstream: FakeUpstream) -> tuple[Any, dict[str, str]]:
    key, digest = new_api_key("fuzz")
    (directory / "static.yaml").write_text(STATIC.format(digest=digest))
    encryption_key = Fernet.generate_key().decode()
    broker = Broker.from_config({
        "credenza": {"plugins": ["static", "aws-sts", "jwt", "sql", "oauth-upstream"],
                     "data_dir": str(directory / "data")},
        "plugins": {
            "static": {"files": [str(directory / "static.yaml")]},
            "aws-sts": {"endpoint_url": sts.url, "access_key_id": "testing",
                        "secret_access_key": "env:CREDENZA_TEST_AWS_SECRET",
                        "signin_url": signin.url, "max_attempts": 1,
                        "callback_urls": ["https://intranet.example.com/aws/"]},
            "jwt": {"providers": {"bot": {}, "ica": {}}},
            "oauth-upstream": {
                "encryption_key": encryption_key,
                "providers": {"vendor": {"token_url": upstream.url, "client_id": "broker",
                                         "client_secret": "upstream-secret"}},
                "api_keys": {"vendor-key": Fernet(encryption_key.encode())
                             .encrypt(b"VENDOR-KEY").decode()},
            },
        },
        "api": {"aws-sdk": {"imds_v1": True}},
    })
    return make_app(broker), {
        "Authorization": "Basic " + base64.b64encode(f"fuzz:{key}".encode()).decode()}


@pytest.fixture
def upstream_fake() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.server.shutdown()


def test_every_family(counted: list[int], sts: FaultProxy, signin: FakeSignin,
                      upstream_fake: FakeUpstream, capsys: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        app, headers = every_family(Path(directory), sts, signin, upstream_fake)
        sent = fuzz(app, headers)
    counted.append(sent)
    total = sum(counted)
    with capsys.disabled():
        print(f"\nfuzz: {sent} requests with every family enabled, 0 failures; "
              f"{total} requests in all")
    if len(counted) == 2:  # both configurations ran
        assert total >= REQUESTS_AT_LEAST


class Liar:
    """A route that answers other than it declares: the fuzz test must notice."""

    class Answer(msgspec.Struct):
        count: int

    @hookimpl
    def credenza_routes(self, add):
        add(Route("/org/liar", lambda ctx: json_response({"count": "many"}), summary="Lies",
                  authenticated=False, responses={200: Reply("A count", Liar.Answer)}))


def test_the_fuzzer_notices_a_route_that_breaks_its_declaration(tmp_path: Path) -> None:
    broker = Broker.from_config({"credenza": {"plugins": [], "data_dir": str(tmp_path)}},
                                plugins=[Liar()])
    with pytest.raises(AssertionError, match="GET /org/liar"):
        fuzz(make_app(broker), {}, examples=5, only="/org/liar")
