"""/metrics: the Prometheus text format, what each subsystem counts, who may scrape, and the sum
over the workers of `credenza serve`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from credenza.broker import Broker
from credenza.errors import ConfigError
from credenza.metrics import exposition
from credenza.models import BasicCredentials, IdentityRequest
from credenza.secrets import new_api_key
from credenza.wsgi import make_app
from tests.aws_fixtures import FakeSignin, FaultProxy
from tests.conftest import running_server
from tests.ldap_fixtures import Slapd
from tests.test_ldap import broker as ldap_broker

SCRAPE_TOKEN = "scrape-token-0123456789abcdef"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value of a scrape."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


class Scraper:
    """An app with every subsystem that counts, and scrapes of its /metrics."""

    def __init__(self, tmp: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str,
                 metrics: dict[str, Any] | None = None) -> None:
        self.container_key, key_hash = new_api_key("container-app")
        (tmp / "static.yaml").write_text(f"""
users:
  alice: {{password: "{password_hash}", grants: ["prod/admin"], tokens: {{cli: []}}}}
api_keys:
  container-app: {{sha256: "{key_hash}", principal: build-container, grants: ["prod/app"]}}
accounts:
  prod: {{id: "111111111111"}}
""")
        self.broker = Broker.from_config({
            "credenza": {"plugins": ["static", "aws-sts", "jwt", "sql"],
                         "data_dir": str(tmp / "data")},
            "api": {"metrics": {"access": "open"} if metrics is None else metrics},
            "plugins": {"static": {"files": [str(tmp / "static.yaml")]},
                        "aws-sts": {"endpoint_url": sts.url, "access_key_id": "testing",
                                    "secret_access_key": "env:CREDENZA_TEST_AWS_SECRET",
                                    "signin_url": signin.url, "max_attempts": 1},
                        "jwt": {"issuer": "https://credenza.test",
                                "providers": {"cli": {"audiences": ["https://api.test"]}}},
                        "sql": {}},
        })
        self.client = Client(make_app(self.broker))

    def scrape(self) -> dict:
        response = self.client.get("/metrics")
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        return samples(response.get_data(as_text=True))


@pytest.fixture
def scraper(tmp_path: Path, sts: FaultProxy, signin: FakeSignin, password_hash: str):
    made = Scraper(tmp_path, sts, signin, password_hash)
    yield made
    made.broker.close()


def test_requests_issuance_refusals_sts_cache_and_store_are_counted(scraper: Scraper) -> None:
    before = scraper.scrape()
    container = {"Authorization": scraper.container_key}
    for _ in range(3):  # one STS call, then two hits of the memory tier
        assert scraper.client.get("/v1/container-credentials/prod/app",
                                  headers=container).status_code == 200
    assert scraper.client.get("/v1/container-credentials/prod/admin",
                              headers=container).status_code == 403
    assert scraper.client.get("/v1/whoami", headers={"Authorization": "nope"}).status_code == 401
    assert scraper.client.get("/no/such/path/ck_secret").status_code == 404
    after = scraper.scrape()

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    route = "/v1/container-credentials/<account>/<role>"
    assert delta("credenza_http_requests_total", family="aws-sdk", route=route, method="GET",
                 status="200") == 3
    assert delta("credenza_http_requests_total", family="aws-sdk", route=route, method="GET",
                 status="403") == 1
    assert delta("credenza_http_requests_total", family="core", route="unmatched",
                 method="other", status="404") == 1
    assert delta("credenza_http_request_duration_seconds_count", family="aws-sdk",
                 route=route) == 4
    assert delta("credenza_credentials_issued_total", kind="aws", provider="") == 3
    assert delta("credenza_refusals_total", reason="grant", kind="aws") == 1
    assert delta("credenza_refusals_total", reason="identity", kind="identity") == 1
    assert delta("credenza_sts_calls_total", operation="AssumeRole", outcome="ok") == 1
    assert delta("credenza_sts_call_duration_seconds_count", operation="AssumeRole") == 1
    assert delta("credenza_credential_cache_lookups_total", result="miss") == 1
    assert delta("credenza_credential_cache_lookups_total", result="memory") == 2
    # The shared tier in the token store was written and read through the store.
    assert delta("credenza_store_operation_duration_seconds_count", operation="cache_put") == 1
    text = scraper.client.get("/metrics").get_data(as_text=True)
    assert "ck_secret" not in text and "alice" not in text  # no client-chosen label values


def test_sts_errors_are_counted_by_class(scraper: Scraper, sts: FaultProxy) -> None:
    before = scraper.scrape()
    sts.mode = "error"
    assert scraper.client.get("/v1/container-credentials/prod/app", headers={
        "Authorization": scraper.container_key}).status_code == 503
    after = scraper.scrape()
    labels = {"operation": "AssumeRole", "outcome": "unavailable"}
    assert value(after, "credenza_sts_calls_total", **labels) - value(
        before, "credenza_sts_calls_total", **labels) == 1


def test_signing_keys_and_their_ages(scraper: Scraper) -> None:
    scraped = scraper.scrape()
    assert value(scraped, "credenza_signing_keys", alg="ES256", state="active") == 1
    assert value(scraped, "credenza_signing_keys", alg="ES256", state="next") == 0
    assert 0 <= value(scraped, "credenza_signing_key_age_seconds", alg="ES256") < 600


def test_ldap_binds_are_counted(slapd: Slapd) -> None:
    broker = ldap_broker(slapd)
    before = samples(exposition().decode())
    broker.identify(IdentityRequest(basic=BasicCredentials("alice", "alice-pw")))
    with pytest.raises(Exception, match="invalid user name or password"):
        broker.identify(IdentityRequest(basic=BasicCredentials("bob", "wrong")))
    after = samples(exposition().decode())
    broker.close()
    assert value(after, "credenza_ldap_binds_total", outcome="refused") - value(
        before, "credenza_ldap_binds_total", outcome="refused") == 1
    assert value(after, "credenza_ldap_binds_total", outcome="ok") > value(
        before, "credenza_ldap_binds_total", outcome="ok")


def test_access_off_open_and_token(tmp_path: Path, sts: FaultProxy, signin: FakeSignin,
                                   password_hash: str, monkeypatch: pytest.MonkeyPatch) -> None:
    off = Scraper(tmp_path, sts, signin, password_hash, metrics={})
    refused = off.client.get("/metrics")
    assert refused.status_code == 404
    assert refused.get_json()["detail"] == "metrics are off ([api.metrics] access)"
    off.broker.close()
    monkeypatch.setenv("SCRAPE_TOKEN", SCRAPE_TOKEN)
    guarded = Scraper(tmp_path, sts, signin, password_hash,
                      metrics={"access": "token", "token": "env:SCRAPE_TOKEN"})
    for headers in ({}, {"Authorization": "Bearer wrong"},
                    {"Authorization": f"Basic {SCRAPE_TOKEN}"}):
        response = guarded.client.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="credenza"'
    assert guarded.client.get("/metrics", headers={
        "Authorization": f"Bearer {SCRAPE_TOKEN}"}).status_code == 200
    guarded.broker.close()
    with pytest.raises(ConfigError, match=r"\[api.metrics\] token: is required with access"):
        Scraper(tmp_path, sts, signin, password_hash, metrics={"access": "token"})


def test_a_scrape_sums_both_workers_exactly(tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    (tmp_path / "m.toml").write_text('[credenza]\nplugins = []\n[server]\nworkers = 2\n'
                                     '[api.metrics]\naccess = "open"\n')
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    def one_status(_: object) -> int:
        return requests.get(server.url + "/status", timeout=5,
                            headers={"Connection": "close"}).status_code

    def counting_workers() -> set[str]:
        return {path.name.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}

    with running_server(tmp_path, ["--config", str(tmp_path / "m.toml")], env) as server, \
            ThreadPoolExecutor(16) as pool:
        def status_count() -> float:
            text = requests.get(server.url + "/metrics", timeout=5,
                                headers={"Connection": "close"}).text
            return value(samples(text), "credenza_http_requests_total", family="core",
                         route="/status", method="GET", status="200")
        before, sent = status_count(), 0
        # Concurrent connections, until both workers have answered some (which worker accepts
        # is the kernel's choice); then the scrape must hold every request, whoever answered.
        while len(counting_workers()) < 2 and sent < 2000:
            assert set(pool.map(one_status, range(64))) == {200}
            sent += 64
        after = status_count()
        assert server.stop() == 0
    assert len(counting_workers()) == 2, "one worker answered everything: the sum proves nothing"
    assert after - before == sent


def test_serve_makes_and_removes_its_own_metrics_directory(tmp_path: Path) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR, serve makes a private one and removes it on exit."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    environ = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    (tmp_path / "m.toml").write_text('[credenza]\nplugins = []\n[api.metrics]\naccess = "open"\n')
    with running_server(tmp_path, ["--config", str(tmp_path / "m.toml")],
                        {**environ, "TMPDIR": str(tmp)}) as server:
        assert "credenza_http_requests_total" in requests.get(server.url + "/metrics",
                                                              timeout=5).text
        made = list(tmp.glob("credenza-metrics-*"))
        assert len(made) == 1 and list(made[0].glob("*.db"))
        assert server.stop() == 0
    assert not made[0].exists()


def test_the_metrics_module_loads_in_a_fresh_process_without_the_server() -> None:
    """`credenza aws creds` (a credential_process) must not pay for prometheus_client."""
    ran = subprocess.run([sys.executable, "-c", "import credenza.cli, sys; "
                          "print('prometheus_client' in sys.modules)"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert ran.stdout.strip() == "False"


def test_the_monitoring_guide_checks_out(tmp_path: Path) -> None:
    """docs/guides/monitoring.md: its commands run as written (promtool checks the scrape
    configuration and runs the alerts' unit tests), and its alerts name real metrics."""
    guide = Path(__file__).resolve().parent.parent / "docs" / "guides" / "monitoring"
    for path in guide.iterdir():
        (tmp_path / path.name).write_text(path.read_text())
    (tmp_path / "credenza-metrics-token").write_text("metrics-token\n")
    page = (guide.parent / "monitoring.md").read_text()
    commands = page.split("```sh\n")[1].split("```")[0].splitlines()
    assert [command.split()[0] for command in commands] == ["promtool", "promtool"]
    for command in commands:
        ran = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60)
        assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
    suffixes = re.compile(r"_(total|bucket|count|sum)$")
    exposed = {family.name for family in text_string_to_metric_families(exposition().decode())
               if family.name.startswith("credenza_") and not family.name.endswith("_created")}
    named = set(re.findall(r"credenza_[a-z_]+", (guide / "credenza-alerts.yml").read_text()))
    assert named and {suffixes.sub("", name) for name in named} <= exposed
    documented = {suffixes.sub("", name) for name in re.findall(r"\| `(credenza_[a-z_]+)`", page)}
    assert documented == exposed  # the table lists every metric, and nothing else
